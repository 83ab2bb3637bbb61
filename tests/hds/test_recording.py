"""dataSend recording streams over loopback TCP, with the example camera recording."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import os
import socket
from typing import Any

import pytest

from custom_components.hksv.hds import (
    DataSendCloseReason,
    DataStreamServer,
    HDSProtocolError,
    HDSSendStalledError,
    RecordingPacket,
    connection as connection_module,
    datasend,
    send_flow,
)
from custom_components.hksv.hds.datasend import MAX_CHUNK_SIZE
from custom_components.hksv.hds.frame import encode_payload
from custom_components.hksv.hds.messages import event_header, request_header
from tests.hub.hds_client import HDSClient, Recording

from .common import FakeDelegate, fixture_chunk_sizes, fixture_fragments, packets_from
from .conftest import ConnectFactory
from .test_server import until

OPEN_OK = {"status": 0}


def busy(reason: DataSendCloseReason) -> dict[str, int]:
    """Return the message of a rejected open."""
    return {"status": int(reason)}


async def open_ok(client: HDSClient, stream_id: int = 1) -> None:
    """Open a stream and check it was accepted."""
    response = await client.open_recording(stream_id)
    assert (response.status, response.message) == (0, OPEN_OK)


async def barrier(client: HDSClient) -> None:
    """Round-trip a hello so everything the accessory sent before has arrived."""
    assert (await client.hello()).status == 0


def check_metadata(recording: Recording, packets: list[RecordingPacket]) -> None:
    """Check numbering and metadata of every chunk against the packets sent (§5.3)."""
    expected: list[dict[str, Any]] = []
    ends: list[bool | None] = []
    sequence = 0
    for packet in packets:
        if not packet.data:
            continue
        sequence += 1
        total = len(packet.data)
        count = max(1, -(-total // MAX_CHUNK_SIZE))
        for chunk in range(1, count + 1):
            metadata: dict[str, Any] = {
                "dataType": "mediaInitialization" if sequence == 1 else "mediaFragment",
                "dataSequenceNumber": sequence,
                "dataChunkSequenceNumber": chunk,
                "isLastDataChunk": chunk == count,
            }
            if chunk == 1:
                metadata["dataTotalSize"] = total
            expected.append(metadata)
            ends.append(packet.is_last if chunk == count else None)
    assert [chunk.metadata for chunk in recording.chunks] == expected
    assert [chunk.end_of_stream for chunk in recording.chunks] == ends


async def test_example_recording_chunk_for_chunk(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """The example camera recording arrives exactly as the real camera's chunks, then ack."""
    fragments = fixture_fragments()
    delegate.packets = packets_from(fragments)
    client = await connect()
    await open_ok(client)
    recording = await client.receive_recording(1)
    assert recording.packets == fragments
    sizes = [
        [len(c.data) for c in recording.chunks if c.metadata["dataSequenceNumber"] == n + 1]
        for n in range(len(fragments))
    ]
    assert sizes == fixture_chunk_sizes()
    check_metadata(recording, delegate.packets)
    assert server.diagnostics()["recording_stream_active"]
    client.ack(1)
    await delegate.ended.wait()
    assert delegate.calls == [("handleRecordingStreamRequest", 1), ("acknowledgeStream", 1)]
    assert not server.recording_stream_active
    assert delegate.closed_generators == 1
    # Nothing is sent back for an ack (HN), and the camera is free again.
    await barrier(client)
    assert [m.topic for m in client.messages].count("close") == 0
    delegate.ended.clear()
    await open_ok(client, 2)


async def test_chunking_boundaries(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """2·0x40000+5 bytes go as 262144 + 262144 + 5; exact multiples add no empty chunk."""
    delegate.packets = packets_from(
        [b"init", os.urandom(2 * MAX_CHUNK_SIZE + 5), os.urandom(MAX_CHUNK_SIZE), b"\x01"]
    )
    client = await connect()
    await open_ok(client)
    recording = await client.receive_recording(1)
    assert [len(c.data) for c in recording.chunks] == [4, 262144, 262144, 5, 262144, 1]
    assert recording.packets == [bytes(p.data) for p in delegate.packets]
    check_metadata(recording, delegate.packets)


async def test_large_init_segment_keeps_its_type(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """Every chunk of the first packet is mediaInitialization (HN flips after one slice)."""
    delegate.packets = packets_from([os.urandom(MAX_CHUNK_SIZE + 1), b"frag"])
    client = await connect()
    await open_ok(client)
    recording = await client.receive_recording(1)
    assert [c.metadata["dataType"] for c in recording.chunks] == [
        "mediaInitialization",
        "mediaInitialization",
        "mediaFragment",
    ]


async def test_memoryview_and_empty_packets(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """memoryview packets are sent without copies; empty packets produce no event."""
    fragments = fixture_fragments()
    delegate.packets = [
        RecordingPacket(memoryview(fragments[0]), False),
        RecordingPacket(b"", False),
        RecordingPacket(memoryview(bytearray(fragments[1]))[0:], False),
        RecordingPacket(fragments[2], True),
    ]
    client = await connect()
    await open_ok(client)
    recording = await client.receive_recording(1)
    assert recording.packets == fragments[:3]
    assert [c.metadata["dataSequenceNumber"] for c in recording.chunks] == [1, 2, 2, 3, 3]
    check_metadata(recording, delegate.packets)


@pytest.mark.parametrize("reason", [*range(10), 42])
async def test_hub_close_each_reason(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate, reason: int
) -> None:
    """A hub close releases the stream, tells the delegate its reason, and gets no reply."""
    delegate.packets = packets_from(fixture_fragments()[:2], last=False)
    client = await connect()
    await open_ok(client)
    await client.wait_until(lambda: len(client.recordings[1].chunks) == 3)
    client.close_stream(1, reason)
    await delegate.ended.wait()
    ((_, stream_id, got),) = [c for c in delegate.calls if c[0] == "closeRecordingStream"]
    assert stream_id == 1
    assert isinstance(got, DataSendCloseReason)
    assert got == reason
    if reason == 42:
        assert got.name == "UNKNOWN_42"
    await barrier(client)
    assert not any(m.topic == "close" for m in client.messages)
    assert not server.recording_stream_active
    await until(lambda: delegate.closed_generators == 1)
    await open_ok(client, 2)


async def test_hub_close_uspec_status_key(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """USPEC's example writes the close reason as 'status'; it is accepted too."""
    delegate.packets = packets_from([b"init"], last=False)
    client = await connect()
    await open_ok(client)
    client.send_event("dataSend", "close", {"streamId": 1, "status": 6})
    await delegate.ended.wait()
    assert delegate.calls[-1] == ("closeRecordingStream", 1, DataSendCloseReason.TIMEOUT)


async def test_hub_close_without_reason(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """A close without a usable reason still releases the stream (reason None)."""
    delegate.packets = packets_from([b"init"], last=False)
    client = await connect()
    await open_ok(client)
    client.send_event("dataSend", "close", {"streamId": 1, "reason": "bye"})
    await delegate.ended.wait()
    assert delegate.calls[-1] == ("closeRecordingStream", 1, None)


@pytest.mark.parametrize(
    "message",
    [{"streamId": 99, "reason": 0}, {"streamId": "1", "reason": 0}, {"streamId": [1]}, {}],
)
@pytest.mark.parametrize("topic", ["close", "ack"])
async def test_close_or_ack_for_unknown_stream_ignored(
    server: DataStreamServer,
    connect: ConnectFactory,
    delegate: FakeDelegate,
    topic: str,
    message: dict[str, Any],
) -> None:
    """A close or ack for a stream that is not ours changes nothing."""
    delegate.packets = packets_from([b"init"], last=False)
    client = await connect()
    await open_ok(client)
    client.send_event("dataSend", topic, {**message, "endOfStream": True})
    await barrier(client)
    assert server.recording_stream_active
    assert delegate.calls == [("handleRecordingStreamRequest", 1)]


async def test_stream_ids_are_per_connection(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """Another hub closing 'its' stream 1 does not touch ours (streams keyed by connection)."""
    delegate.packets = packets_from([b"init"], last=False)
    first = await connect()
    second = await connect()
    await open_ok(first)
    second.close_stream(1, 0)
    second.ack(1)
    await barrier(second)
    assert server.recording_stream_active
    assert delegate.calls == [("handleRecordingStreamRequest", 1)]


async def test_second_open_same_connection_is_busy(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """A second open on the same connection gets BUSY (HN stays silent, §5.4)."""
    delegate.packets = packets_from([b"init"], last=False)
    client = await connect()
    await open_ok(client)
    response = await client.open_recording(2)
    assert (response.status, response.message) == (6, busy(DataSendCloseReason.BUSY))
    response = await client.open_recording(1)
    assert response.message == busy(DataSendCloseReason.BUSY)
    assert delegate.calls == [("handleRecordingStreamRequest", 1)]


async def test_second_open_other_connection_is_busy(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """An open from another hub while a stream runs gets BUSY."""
    delegate.packets = packets_from([b"init"], last=False)
    first = await connect()
    second = await connect("hap-2")
    await open_ok(first)
    response = await second.open_recording(1)
    assert (response.status, response.message) == (6, busy(DataSendCloseReason.BUSY))
    first.close_stream(1, 0)
    await delegate.ended.wait()
    await open_ok(second, 1)


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        (({}, {"target": "home hub"}), DataSendCloseReason.UNEXPECTED_FAILURE),
        (({}, {"type": "ipcamera.snapshot"}), DataSendCloseReason.UNEXPECTED_FAILURE),
        (({}, {"streamId": "1"}), DataSendCloseReason.UNEXPECTED_FAILURE),
        (({}, {"streamId": True}), DataSendCloseReason.UNEXPECTED_FAILURE),
        (({}, {"streamId": None}), DataSendCloseReason.UNEXPECTED_FAILURE),
        (({"recording_active": False}, {"target": "x"}), DataSendCloseReason.UNEXPECTED_FAILURE),
        (({"recording_active": False}, {}), DataSendCloseReason.NOT_ALLOWED),
        (({"camera_active": False}, {}), DataSendCloseReason.NOT_ALLOWED),
        (
            ({"camera_active": False, "has_selected_configuration": False}, {}),
            DataSendCloseReason.NOT_ALLOWED,
        ),
        (({"has_selected_configuration": False}, {}), DataSendCloseReason.INVALID_CONFIGURATION),
    ],
)
async def test_open_rejections(
    server: DataStreamServer,
    connect: ConnectFactory,
    delegate: FakeDelegate,
    case: tuple[dict[str, bool], dict[str, Any]],
    reason: DataSendCloseReason,
) -> None:
    """Each failed check answers header status 6 with {status: reason}, in HN's order."""
    attributes, overrides = case
    for name, value in attributes.items():
        setattr(delegate, name, value)
    client = await connect()
    message = {**client.open_message(1), **overrides}
    response = await client.request("dataSend", "open", message)
    assert (response.status, response.message) == (6, busy(reason))
    assert delegate.calls == []
    # Well-formed opens that were refused are reported (Last recording shows some of them).
    reported = [] if reason is DataSendCloseReason.UNEXPECTED_FAILURE else [(1, reason)]
    assert delegate.refusals == reported
    assert not server.recording_stream_active
    assert server.diagnostics()["opens_rejected"] == 1


async def test_open_missing_stream_id(server: DataStreamServer, connect: ConnectFactory) -> None:
    """An open without streamId is refused with UNEXPECTED_FAILURE."""
    client = await connect()
    response = await client.request(
        "dataSend", "open", {"target": "controller", "type": "ipcamera.recording"}
    )
    assert response.message == busy(DataSendCloseReason.UNEXPECTED_FAILURE)


async def test_busy_checked_before_configuration(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """BUSY comes before INVALID_CONFIGURATION."""
    delegate.packets = packets_from([b"init"], last=False)
    client = await connect()
    await open_ok(client)
    delegate.has_selected_configuration = False
    response = await (await connect("hap-2")).open_recording(1)
    assert response.message == busy(DataSendCloseReason.BUSY)


async def test_camera_turned_off_mid_stream(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """close_recording_streams(NOT_ALLOWED) sends close reason 1 and tells the delegate."""
    delegate.packets = packets_from(fixture_fragments()[:2], last=False)
    client = await connect()
    await open_ok(client)
    await client.wait_until(lambda: len(client.recordings[1].chunks) == 3)
    server.close_recording_streams(DataSendCloseReason.NOT_ALLOWED)
    close = await client.event("dataSend", "close")
    assert close.message == {"streamId": 1, "reason": 1}
    assert delegate.calls[-1] == ("closeRecordingStream", 1, DataSendCloseReason.NOT_ALLOWED)
    assert not server.recording_stream_active
    await until(lambda: delegate.closed_generators == 1)
    server.close_recording_streams(DataSendCloseReason.NOT_ALLOWED)  # nothing left to close
    assert len(delegate.calls) == 2


@pytest.mark.parametrize(
    ("failure", "reason"),
    [
        (RuntimeError("camera gone"), DataSendCloseReason.UNEXPECTED_FAILURE),
        (HDSProtocolError(DataSendCloseReason.BAD_DATA, "bad"), DataSendCloseReason.BAD_DATA),
    ],
)
async def test_delegate_failure_closes_stream(
    server: DataStreamServer,
    connect: ConnectFactory,
    delegate: FakeDelegate,
    failure: BaseException,
    reason: DataSendCloseReason,
) -> None:
    """A generator that raises ends the stream with its reason (default UNEXPECTED_FAILURE)."""
    delegate.packets = packets_from([b"init", b"frag"], last=False)
    delegate.fail_after = 1
    delegate.failure = failure
    client = await connect()
    await open_ok(client)
    close = await client.event("dataSend", "close")
    assert close.message == {"streamId": 1, "reason": int(reason)}
    assert client.recordings[1].packets == [b"init"]
    assert delegate.calls[-1] == ("closeRecordingStream", 1, reason)
    await until(lambda: delegate.closed_generators == 1)
    assert not server.recording_stream_active


class _RaisingDelegate(FakeDelegate):
    """A delegate whose stream request itself raises."""

    def handle_recording_stream_request(self, stream_id: int) -> AsyncIterator[RecordingPacket]:
        self.calls.append(("handleRecordingStreamRequest", stream_id))
        raise HDSProtocolError(DataSendCloseReason.UNSUPPORTED, "no")


class _BadPacketDelegate(FakeDelegate):
    """A delegate yielding something that is not a packet."""

    async def _generate(self, stream_id: int) -> AsyncIterator[Any]:
        yield "not a packet"


@pytest.mark.parametrize(
    ("delegate_class", "reason"),
    [
        (_RaisingDelegate, DataSendCloseReason.UNSUPPORTED),
        (_BadPacketDelegate, DataSendCloseReason.UNEXPECTED_FAILURE),
    ],
)
async def test_delegate_misbehaviour(
    socket_enabled: None, delegate_class: type[FakeDelegate], reason: DataSendCloseReason
) -> None:
    """A delegate failing to start or yielding junk closes the stream, never the server."""
    delegate = delegate_class()
    server = DataStreamServer(
        host="127.0.0.1", delegate=delegate, log_name="cam", salt_factory=bytes
    )
    await server.async_start()
    salt = server.prepare_session("hap", bytes(32), bytes(32))
    client = HDSClient.from_shared_secret("127.0.0.1", server.port, bytes(32), bytes(32), salt)
    await client.connect()
    await client.hello()
    await open_ok(client)
    close = await client.event("dataSend", "close")
    assert close.message == {"streamId": 1, "reason": int(reason)}
    assert delegate.calls[-1] == ("closeRecordingStream", 1, reason)
    assert not server.recording_stream_active
    client.abort()
    await server.async_stop()


@pytest.mark.parametrize("variant", ["is_last", "no_is_last", "empty_last"])
async def test_cancelled_after_end_without_hub_close(
    server: DataStreamServer,
    connect: ConnectFactory,
    delegate: FakeDelegate,
    monkeypatch: pytest.MonkeyPatch,
    variant: str,
) -> None:
    """CLOSING_TIMEOUT after the generator finished, an unacknowledged stream is CANCELLED."""
    monkeypatch.setattr(datasend, "CLOSING_TIMEOUT", 0.05)
    packets = [b"init", b"frag", b""] if variant == "empty_last" else [b"init", b"frag"]
    delegate.packets = packets_from(packets, last=variant != "no_is_last")
    delegate.hold_open = False
    client = await connect()
    await open_ok(client)
    close = await client.event("dataSend", "close")
    assert close.message == {"streamId": 1, "reason": 3}
    assert delegate.calls[-1] == ("closeRecordingStream", 1, DataSendCloseReason.CANCELLED)
    recording = client.recordings[1]
    assert recording.packets == [b"init", b"frag"]
    # The end is marked only by a non-empty packet; an empty one is never sent.
    assert recording.ended is (variant == "is_last")
    assert not server.recording_stream_active


def closing_timers() -> list[asyncio.TimerHandle]:
    """Return the scheduled, uncancelled closing-timeout handles of the running loop."""
    loop = asyncio.get_running_loop()
    return [
        handle
        for handle in loop._scheduled  # type: ignore[attr-defined]
        if not handle.cancelled()
        and getattr(handle._callback, "__name__", "") == "_on_closing_timeout"
    ]


async def test_ack_cancels_closing_timer(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """After the last packet the closing timer runs; the hub's ack cancels it."""
    delegate.packets = packets_from([b"init", b"last"])
    delegate.hold_open = False
    client = await connect()
    await open_ok(client)
    await client.receive_recording(1)
    await until(lambda: len(closing_timers()) == 1)
    client.ack(1)
    await delegate.ended.wait()
    assert closing_timers() == []
    assert delegate.calls[-1] == ("acknowledgeStream", 1)
    await barrier(client)
    assert not any(m.topic == "close" for m in client.messages)


async def test_disconnect_mid_stream_releases_stream(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """Socket loss closes the stream with reason None and frees the camera (no leaked BUSY)."""
    delegate.packets = packets_from(fixture_fragments(), last=False)
    client = await connect()
    await open_ok(client)
    await client.wait_until(lambda: len(client.recordings[1].chunks) >= 2)
    client.abort()
    await delegate.ended.wait()
    assert delegate.calls[-1] == ("closeRecordingStream", 1, None)
    await until(lambda: delegate.closed_generators == 1)
    assert not server.recording_stream_active
    delegate.ended.clear()
    await open_ok(await connect("hap-2"))


async def test_hap_connection_lost_mid_stream(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """Losing the HAP connection closes the HDS connection and releases the stream."""
    delegate.packets = packets_from([b"init"], last=False)
    client = await connect("hap-x")
    await open_ok(client)
    server.hap_connection_lost("hap-x")
    await client.wait_closed()
    await delegate.ended.wait()
    assert delegate.calls[-1] == ("closeRecordingStream", 1, None)
    assert not server.recording_stream_active


async def test_stop_mid_stream(socket_enabled: None, delegate: FakeDelegate) -> None:
    """Stopping the server ends the stream, closes the generator and leaves no task."""
    delegate.packets = packets_from([b"init"], last=False)
    server = DataStreamServer(
        host="127.0.0.1", delegate=delegate, log_name="cam", salt_factory=bytes
    )
    await server.async_start()
    salt = server.prepare_session("hap", bytes(32), bytes(32))
    client = HDSClient.from_shared_secret("127.0.0.1", server.port, bytes(32), bytes(32), salt)
    await client.connect()
    await client.hello()
    await open_ok(client)
    await client.wait_until(lambda: bool(client.recordings[1].chunks))
    await server.async_stop()
    assert delegate.calls[-1] == ("closeRecordingStream", 1, None)
    assert delegate.closed_generators == 1
    await client.wait_closed()


async def test_slow_reader_is_bounded(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """A hub that stops reading stalls the generator; buffered bytes stay bounded."""
    block = os.urandom(4 * MAX_CHUNK_SIZE)
    delegate.packets = [RecordingPacket(b"init", False)] + [
        RecordingPacket(block, index == 23) for index in range(24)
    ]
    client = await connect(receive_buffer=64 * 1024)
    (conn,) = server.connections
    # Fixed small kernel buffers (no autotuning), so the stall comes quickly and surely.
    sock = conn._transport.get_extra_info("socket")  # type: ignore[union-attr]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    await open_ok(client)
    client.pause_reading()
    bound = connection_module.WRITE_BUFFER_HIGH + MAX_CHUNK_SIZE + 1024
    while True:
        await until(lambda: conn.writing_paused)
        snapshot = (delegate.pulled, conn.write_buffer_size)
        assert snapshot[1] <= bound
        await asyncio.sleep(0.05)  # the loop keeps running; a stalled producer must not
        if (delegate.pulled, conn.write_buffer_size) == snapshot and conn.writing_paused:
            break
    assert delegate.pulled < len(delegate.packets)
    client.resume_reading()
    client.timeout = 60
    recording = await client.receive_recording(1)
    assert recording.packets == [b"init"] + [block] * 24
    check_metadata(recording, delegate.packets)


class _TrackedIterator:
    """An async iterator that is not a generator and records aclose()."""

    def __init__(self) -> None:
        self.closed = 0

    def __aiter__(self) -> _TrackedIterator:
        return self

    async def __anext__(self) -> RecordingPacket:
        await asyncio.Event().wait()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        self.closed += 1


async def test_open_and_close_in_one_read_closes_iterator(
    server: DataStreamServer, connect: ConnectFactory, delegate: FakeDelegate
) -> None:
    """A stream closed before its task ever ran still has its iterator closed."""
    iterator = _TrackedIterator()
    delegate.handle_recording_stream_request = lambda stream_id: iterator  # type: ignore[method-assign]
    client = await connect()
    frames = b""
    for header, message in (
        (request_header("dataSend", "open", 50), client.open_message(1)),
        (event_header("dataSend", "close"), {"streamId": 1, "reason": 0}),
    ):
        frame_header, sealed = client._encrypt.seal(encode_payload(header, message))
        frames += frame_header + sealed
    client.send_raw(frames)
    assert (await client.response(50)).status == 0
    await delegate.ended.wait()
    await until(lambda: iterator.closed == 1)
    assert not server.recording_stream_active


async def test_hub_that_reads_nothing_loses_its_stream(
    server: DataStreamServer,
    connect: ConnectFactory,
    delegate: FakeDelegate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """No send progress for SEND_STALL_TIMEOUT: TIMEOUT close, the generator told why."""
    monkeypatch.setattr(send_flow, "SEND_STALL_TIMEOUT", 0.5)
    monkeypatch.setattr(send_flow, "SEND_STALL_CHECK_INTERVAL", 0.1)
    seen: list[BaseException] = []
    generate = delegate._generate

    async def witness(stream_id: int) -> AsyncIterator[RecordingPacket]:
        try:
            async for packet in generate(stream_id):
                yield packet
        except HDSProtocolError as err:
            seen.append(err)
            raise

    monkeypatch.setattr(delegate, "_generate", witness)
    block = os.urandom(4 * MAX_CHUNK_SIZE)
    delegate.packets = [RecordingPacket(b"init", False)] + [
        RecordingPacket(block, False) for _ in range(24)
    ]
    client = await connect(receive_buffer=64 * 1024)
    (conn,) = server.connections
    sock = conn._transport.get_extra_info("socket")  # type: ignore[union-attr]
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
    await open_ok(client)
    client.pause_reading()
    await asyncio.wait_for(delegate.ended.wait(), 30)
    assert delegate.calls[-1] == ("closeRecordingStream", 1, DataSendCloseReason.TIMEOUT)
    assert [type(err) for err in seen] == [HDSSendStalledError]
    assert not server.recording_stream_active
    assert any("read nothing" in end for end in server.diagnostics()["last_stream_ends"])
    # The close event waits in the send buffer for a hub that reads again.
    client.resume_reading()
    client.timeout = 30
    recording = await client.receive_recording(1)
    assert recording.close_reason == DataSendCloseReason.TIMEOUT


def _paced(delegate: FakeDelegate, block: bytes, count: int | None, interval: float) -> None:
    """Make the delegate yield block every interval seconds, like a live camera."""

    async def generate(stream_id: int) -> AsyncIterator[RecordingPacket]:
        try:
            yield RecordingPacket(b"init", False)
            index = 0
            while count is None or index < count:
                await asyncio.sleep(interval)
                index += 1
                delegate.pulled += 1
                yield RecordingPacket(block, index == count)
            await asyncio.Event().wait()
        finally:
            delegate.closed_generators += 1

    delegate._generate = generate  # type: ignore[method-assign]


async def test_stall_found_at_the_socket_below_the_high_water_mark(
    socket_enabled: None, delegate: FakeDelegate, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A hub that stops reading is found by the socket taking nothing, not by a full queue.

    The transport's high-water mark is out of reach here, so the producer is never paused:
    only the send-progress watch at the socket can end the stream.
    """
    monkeypatch.setattr(connection_module, "WRITE_BUFFER_HIGH", 1 << 30)
    monkeypatch.setattr(connection_module, "WRITE_BUFFER_LOW", 1 << 29)
    monkeypatch.setattr(send_flow, "SEND_STALL_TIMEOUT", 0.5)
    monkeypatch.setattr(send_flow, "SEND_STALL_CHECK_INTERVAL", 0.1)
    _paced(delegate, os.urandom(16 * 1024), None, 0.01)
    server = DataStreamServer(
        host="127.0.0.1", delegate=delegate, log_name="cam", salt_factory=bytes
    )
    await server.async_start()
    try:
        salt = server.prepare_session("hap", bytes(32), bytes(32))
        client = HDSClient.from_shared_secret("127.0.0.1", server.port, bytes(32), bytes(32), salt)
        await client.connect(receive_buffer=64 * 1024)
        await client.hello()
        (conn,) = server.connections
        sock = conn._transport.get_extra_info("socket")  # type: ignore[union-attr]
        # A fixed kernel send buffer (Linux reports it doubled), not an autotuned one.
        send_buffer = sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF)
        assert send_buffer in (
            connection_module.SOCKET_SEND_BUFFER,
            2 * connection_module.SOCKET_SEND_BUFFER,
        )
        await open_ok(client)
        client.pause_reading()
        await asyncio.wait_for(delegate.ended.wait(), 30)
        assert delegate.calls[-1] == ("closeRecordingStream", 1, DataSendCloseReason.TIMEOUT)
        assert not conn.writing_paused
        assert 0 < conn.write_buffer_size < connection_module.WRITE_BUFFER_HIGH
        assert any("read nothing" in end for end in server.diagnostics()["last_stream_ends"])
        client.abort()
    finally:
        await server.async_stop()


async def test_slow_but_steady_reader_keeps_its_stream(
    server: DataStreamServer,
    connect: ConnectFactory,
    delegate: FakeDelegate,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A hub that reads slower than the camera sends, but keeps reading, is never cut off.

    The producer waits at the high-water mark for longer than SEND_STALL_TIMEOUT in all, yet
    every pause of the reader is shorter than it: the whole recording arrives.
    """
    monkeypatch.setattr(send_flow, "SEND_STALL_TIMEOUT", 1.0)
    monkeypatch.setattr(send_flow, "SEND_STALL_CHECK_INTERVAL", 0.1)
    block = os.urandom(64 * 1024)
    count = 48
    _paced(delegate, block, count, 0.005)
    client = await connect(receive_buffer=32 * 1024)
    (conn,) = server.connections
    await open_ok(client)
    paused_checks = 0
    started = asyncio.get_running_loop().time()
    while not client.recordings[1].ended:
        client.pause_reading()
        await asyncio.sleep(0.25)
        paused_checks += conn.writing_paused
        client.resume_reading()
        await asyncio.sleep(0.002)
    elapsed = asyncio.get_running_loop().time() - started
    recording = client.recordings[1]
    assert recording.close_reason is None
    assert recording.packets == [b"init"] + [block] * count
    assert server.recording_stream_active
    # The reader was slower than the camera and the transfer outlasted the stall timeout.
    assert paused_checks > 0
    assert elapsed > send_flow.SEND_STALL_TIMEOUT
    client.ack(1)
    await asyncio.wait_for(delegate.ended.wait(), 10)
    assert delegate.calls[-1] == ("acknowledgeStream", 1)
