"""HDSConnection state machine, dispatch and backpressure, over a fake transport."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
import logging
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.hksv.hds import connection as connection_module, send_flow
from custom_components.hksv.hds.connection import (
    HDS_STATE_AWAITING_HELLO,
    HDS_STATE_CLOSED,
    HDS_STATE_MATCHING,
    HDS_STATE_READY,
    WRITE_BUFFER_HIGH,
    HDSConnection,
)
from custom_components.hksv.hds.errors import (
    HDSClosedError,
    HDSDecryptError,
    HDSFrameError,
    HDSProtocolError,
    HDSSendStalledError,
    HDSTimeoutError,
    OpackError,
)
from custom_components.hksv.hds.frame import (
    DecryptCipher,
    EncryptCipher,
    HDSFrameReader,
    decode_payload,
    encode_payload,
)
from custom_components.hksv.hds.messages import DataSendCloseReason
from custom_components.hksv.hds.opack import Int64

from .common import A2C_KEY, C2A_KEY, CRYPTO, FakeTransport, MockOwner

HELLO: tuple[dict[str, Any], dict[str, Any]] = (
    {"protocol": "control", "request": "hello", "id": Int64(1)},
    {},
)


class Harness:
    """A connection on a fake transport, with the hub's ciphers."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Create and 'accept' the connection."""
        self.owner = MockOwner()
        self.transport = FakeTransport()
        self.conn = HDSConnection(self.owner, loop, "Test camera")
        self.conn.connection_made(self.transport)
        self.encrypt = EncryptCipher(C2A_KEY)
        self.decrypt = DecryptCipher(A2C_KEY)
        self.read = 0

    def frame(self, header: dict[str, Any], message: dict[str, Any]) -> bytes:
        """Return one sealed hub frame."""
        frame_header, sealed = self.encrypt.seal(encode_payload(header, message))
        return frame_header + sealed

    def send(self, header: dict[str, Any], message: dict[str, Any]) -> None:
        """Deliver one hub message."""
        self.conn.data_received(self.frame(header, message))

    def replies(self) -> list[tuple[dict[Any, Any], dict[Any, Any]]]:
        """Return the accessory messages written since the last call."""
        out = []
        for raw in self.transport.frames[self.read :]:
            reader = HDSFrameReader()
            reader.add_data(raw)
            frame = reader.read_frame()
            assert frame is not None
            out.append(decode_payload(self.decrypt.open(*frame)))
        self.read = len(self.transport.frames)
        return out

    def ready(self) -> None:
        """Complete hello."""
        self.send(*HELLO)
        assert self.conn.state == HDS_STATE_READY
        self.replies()


@pytest.fixture
async def harness() -> AsyncGenerator[Harness]:
    """Return a fresh connection harness; close it afterwards."""
    harness = Harness(asyncio.get_running_loop())
    yield harness
    harness.conn.close()


async def test_connection_made_configures_transport(harness: Harness) -> None:
    """Set buffer limits, remember the peer and start in MATCHING."""
    assert harness.transport.limits == (WRITE_BUFFER_HIGH, connection_module.WRITE_BUFFER_LOW)
    assert harness.conn.peer == "192.0.2.1:50000"
    assert harness.conn.state == HDS_STATE_MATCHING
    assert "MATCHING" in repr(harness.conn)


async def test_hello_makes_ready(harness: Harness) -> None:
    """The matched first frame must be hello; the response has status 0 and an empty message."""
    harness.send(*HELLO)
    assert harness.conn.state == HDS_STATE_READY
    assert harness.conn.hap_connection == "hap-0"
    assert harness.replies() == [
        ({"protocol": "control", "response": "hello", "id": 1, "status": 0}, {})
    ]


async def test_hello_vector_frame(harness: Harness) -> None:
    """hap-nodejs' own c2a hello frame (id Int64 0) is matched and answered."""
    harness.conn.data_received(
        bytes.fromhex(CRYPTO["frame_c2a_counter_0_hello_request"]["frame_hex"])
    )
    assert harness.conn.state == HDS_STATE_READY
    assert harness.replies()[0][0]["id"] == 0


async def test_frames_in_one_read_after_match(harness: Harness) -> None:
    """Frames behind the first one in the same read are decrypted normally (§3.4)."""
    data = harness.frame(*HELLO) + harness.frame(
        {"protocol": "control", "request": "version", "id": 2}, {"version": 1.0}
    )
    harness.conn.data_received(data)
    replies = harness.replies()
    assert [header["response"] for header, _ in replies] == ["hello", "version"]


async def test_second_hello_is_answered(harness: Harness) -> None:
    """A later hello is answered again."""
    harness.ready()
    harness.send({"protocol": "control", "request": "hello", "id": 9}, {})
    assert harness.replies()[0][0]["id"] == 9
    assert harness.conn.is_ready


async def test_version_request_answered_like_adk(harness: Harness) -> None:
    """control/version gets {version: 1.1} as a float64."""
    harness.ready()
    harness.send({"protocol": "control", "request": "version", "id": 2}, {"version": 1.0})
    (reply,) = harness.replies()
    assert reply == (
        {"protocol": "control", "response": "version", "id": 2, "status": 0},
        {"version": 1.1},
    )
    assert type(reply[1]["version"]) is float


@pytest.mark.parametrize(
    ("first", "match"),
    [
        (({"protocol": "control", "event": "hello"}, {}), "not a control/hello request"),
        (({"protocol": "dataSend", "request": "open", "id": 1}, {}), "not a control/hello"),
        (({"protocol": "control", "request": "version", "id": 1}, {}), "not a control/hello"),
        (({"nothing": 1}, {}), "not a control/hello"),
    ],
)
async def test_first_message_must_be_hello(
    harness: Harness, first: tuple[dict[str, Any], dict[str, Any]], match: str
) -> None:
    """Anything but a hello request first closes the connection (HN, ADK)."""
    harness.send(*first)
    assert harness.conn.is_closed
    assert harness.transport.aborted
    ((_, exc),) = harness.owner.closed
    assert isinstance(exc, HDSProtocolError)
    assert match in str(exc)
    assert harness.replies() == []


async def test_unmatched_first_frame_closes(harness: Harness) -> None:
    """A first frame no pending session opens closes the connection."""
    harness.conn.data_received(EncryptCipher(A2C_KEY).seal(b"\x00")[0] + bytes(17))
    assert harness.conn.is_closed
    assert isinstance(harness.owner.closed[0][1], HDSDecryptError)


async def test_oversize_length_closes_before_body(harness: Harness) -> None:
    """An oversize length closes the connection as soon as the header is in."""
    harness.ready()
    harness.conn.data_received(b"\x01\xff\xff\xff")
    assert harness.conn.is_closed
    assert isinstance(harness.owner.closed[0][1], HDSFrameError)


async def test_bad_frame_type_closes(harness: Harness) -> None:
    """A type byte other than 0x01 closes the connection."""
    harness.conn.data_received(b"\x02\x00\x00\x00")
    assert harness.conn.is_closed


async def test_wrong_counter_after_ready_closes(harness: Harness) -> None:
    """A frame sealed with a skipped counter fails authentication and closes."""
    harness.ready()
    harness.encrypt.counter += 1
    harness.send({"protocol": "control", "request": "hello", "id": 2}, {})
    assert harness.conn.is_closed
    assert isinstance(harness.owner.closed[0][1], HDSDecryptError)


async def test_malformed_payload_closes(harness: Harness) -> None:
    """A frame that authenticates but holds bad OPACK closes the connection."""
    harness.ready()
    header, sealed = harness.encrypt.seal(b"\x01\xe0\x00")
    harness.conn.data_received(header + sealed)
    assert harness.conn.is_closed
    assert isinstance(harness.owner.closed[0][1], OpackError)


@pytest.mark.parametrize(
    ("protocol", "topic", "status"),
    [
        ("nope", "thing", 5),  # MISSING_PROTOCOL
        ("control", "reboot", 3),  # HEADER_ERROR: known protocol, unknown topic
    ],
)
async def test_unknown_request_gets_error_status(
    harness: Harness, protocol: str, topic: str, status: int
) -> None:
    """Requests without a handler are answered with an error status, not silence (ADK)."""
    harness.ready()
    harness.send({"protocol": protocol, "request": topic, "id": 77}, {"x": 1})
    assert harness.replies() == [
        ({"protocol": protocol, "response": topic, "id": 77, "status": status}, {})
    ]
    assert harness.conn.is_ready


async def test_registered_protocol_unknown_topic(harness: Harness) -> None:
    """A protocol known through any handler answers unknown topics with HEADER_ERROR."""
    harness.conn.add_event_handler("dataSend", "ack", lambda conn, message: None)
    harness.ready()
    harness.send({"protocol": "dataSend", "request": "frobnicate", "id": 3}, {})
    assert harness.replies()[0][0]["status"] == 3


async def test_unhandled_event_and_response_are_ignored(harness: Harness) -> None:
    """Events without a handler and unsolicited responses are ignored."""
    harness.ready()
    harness.send({"protocol": "weird", "event": "thing"}, {})
    harness.send({"protocol": "control", "response": "hello", "id": 5, "status": 0}, {})
    harness.send({"protocol": "control", "request": "hello", "id": "x"}, {})  # invalid header
    assert harness.replies() == []
    assert harness.conn.is_ready


async def test_dispatch_by_protocol_and_topic(harness: Harness) -> None:
    """Handlers receive the connection, the request id and the message."""
    seen: list[Any] = []
    harness.conn.add_request_handler("p", "t", lambda conn, rid, msg: seen.append((conn, rid, msg)))
    harness.conn.add_event_handler("p", "t", lambda conn, msg: seen.append((conn, msg)))
    harness.ready()
    harness.send({"protocol": "p", "request": "t", "id": 4}, {"a": 1})
    harness.send({"protocol": "p", "event": "t"}, {"b": 2})
    assert seen == [(harness.conn, 4, {"a": 1}), (harness.conn, {"b": 2})]


async def test_handler_exception_is_isolated(
    harness: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    """A handler raising an unexpected error is logged; the session survives."""

    def broken(conn: HDSConnection, message: dict[str, Any]) -> None:
        raise RuntimeError("consumer bug")

    harness.conn.add_event_handler("p", "e", broken)
    harness.ready()
    with caplog.at_level(logging.ERROR):
        harness.send({"protocol": "p", "event": "e"}, {})
    assert "unexpected error in handler" in caplog.text
    assert harness.conn.is_ready
    harness.send({"protocol": "control", "request": "hello", "id": 2}, {})
    assert len(harness.replies()) == 1


async def test_handler_hds_error_closes(harness: Harness) -> None:
    """A handler raising an HDS error closes the connection through the one error path."""

    def strict(conn: HDSConnection, message: dict[str, Any]) -> None:
        raise HDSProtocolError(DataSendCloseReason.PROTOCOL_ERROR, "bad event")

    harness.conn.add_event_handler("p", "e", strict)
    harness.ready()
    harness.send({"protocol": "p", "event": "e"}, {})
    assert harness.conn.is_closed


async def test_hello_timeout(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """A connection without hello is closed after HELLO_TIMEOUT, read at accept time."""
    monkeypatch.setattr(connection_module, "HELLO_TIMEOUT", 0.01)
    conn = HDSConnection(harness.owner, asyncio.get_running_loop(), "Test camera")
    transport = FakeTransport()
    conn.connection_made(transport)
    await asyncio.wait_for(harness.owner.closed_event.wait(), 10)
    assert conn.is_closed
    assert transport.aborted
    assert isinstance(harness.owner.closed[0][1], HDSTimeoutError)


async def test_hello_cancels_timeout(harness: Harness, monkeypatch: pytest.MonkeyPatch) -> None:
    """After hello the timer is gone."""
    monkeypatch.setattr(connection_module, "HELLO_TIMEOUT", 0.01)
    conn = HDSConnection(harness.owner, asyncio.get_running_loop(), "Test camera")
    conn.connection_made(FakeTransport())
    conn.data_received(harness.frame(*HELLO))
    await asyncio.sleep(0.05)
    assert conn.is_ready
    conn.close()


async def test_data_after_close_is_ignored(harness: Harness) -> None:
    """Once closed, received bytes are ignored (HN)."""
    harness.ready()
    harness.conn.close()
    harness.send({"protocol": "control", "request": "hello", "id": 2}, {})
    assert harness.replies() == []
    assert harness.transport.closed
    assert len(harness.owner.closed) == 1


async def test_close_is_idempotent(harness: Harness) -> None:
    """close(), errors and connection_lost notify the owner once."""
    harness.ready()
    harness.conn.close()
    harness.conn.close()
    harness.conn.connection_lost(None)
    harness.conn.data_received(b"\x02")
    assert len(harness.owner.closed) == 1
    assert harness.conn.close_reason == "closed by the accessory"


async def test_close_with_queued_data_aborts(harness: Harness) -> None:
    """A close with data still queued drops it instead of waiting for a vanished hub."""
    harness.ready()
    harness.transport.buffer_size = 10
    harness.conn.close()
    assert harness.transport.aborted


async def test_connection_lost_notifies_owner(harness: Harness) -> None:
    """The peer closing the socket cleans up once."""
    harness.ready()
    harness.conn.connection_lost(ConnectionResetError("reset"))
    assert harness.conn.state == HDS_STATE_CLOSED
    assert isinstance(harness.owner.closed[0][1], ConnectionResetError)


async def test_send_after_close_raises(harness: Harness) -> None:
    """Sending on a closed connection raises HDSClosedError."""
    harness.ready()
    harness.conn.close()
    with pytest.raises(HDSClosedError):
        harness.conn.send_event("dataSend", "close", {"streamId": 1, "reason": 0})
    with pytest.raises(HDSClosedError):
        await harness.conn.drain()


async def test_send_before_match_raises(harness: Harness) -> None:
    """There is no key before the first frame matched."""
    with pytest.raises(HDSClosedError):
        harness.conn.send_event("dataSend", "close", {})


async def test_drain_waits_for_resume(harness: Harness) -> None:
    """drain() returns at once unless paused, then waits for resume_writing."""
    harness.ready()
    await harness.conn.drain()
    harness.conn.pause_writing()
    assert harness.conn.writing_paused
    waiters = [asyncio.ensure_future(harness.conn.drain()) for _ in range(2)]
    await asyncio.sleep(0)
    assert not any(w.done() for w in waiters)
    harness.conn.resume_writing()
    await asyncio.gather(*waiters)
    assert not harness.conn.writing_paused


async def test_drain_fails_on_close(harness: Harness) -> None:
    """A producer waiting in drain() learns that the connection closed."""
    harness.ready()
    harness.conn.pause_writing()
    waiter = asyncio.ensure_future(harness.conn.drain())
    await asyncio.sleep(0)
    harness.conn.connection_lost(None)
    with pytest.raises(HDSClosedError):
        await waiter


@pytest.fixture
def quick_stall(monkeypatch: pytest.MonkeyPatch) -> float:
    """Shorten the send-stall timeout; return it."""
    monkeypatch.setattr(send_flow, "SEND_STALL_TIMEOUT", 0.2)
    monkeypatch.setattr(send_flow, "SEND_STALL_CHECK_INTERVAL", 0.02)
    return 0.2


def send_queued(harness: Harness, queued: int) -> None:
    """Send one event of which the kernel takes all but `queued` bytes."""
    harness.transport.buffer_size = queued
    harness.conn.send_event("dataSend", "data", {"streamId": 1})


async def test_socket_taking_nothing_fails_sending(harness: Harness, quick_stall: float) -> None:
    """A non-empty queue the kernel takes nothing from for the timeout: drain() fails.

    Not paused: the high-water mark plays no part. A producer already waiting in drain()
    (paused) fails too.
    """
    harness.ready()
    send_queued(harness, 100)
    await asyncio.sleep(quick_stall / 2)
    await harness.conn.drain()  # not yet
    await asyncio.sleep(quick_stall)
    assert not harness.conn.writing_paused
    with pytest.raises(HDSSendStalledError) as failure:
        await harness.conn.drain()
    assert failure.value.reason is DataSendCloseReason.TIMEOUT
    assert "read nothing" in str(failure.value)
    harness.conn.pause_writing()
    with pytest.raises(HDSSendStalledError):
        await harness.conn.drain()


async def test_paused_producer_fails_on_stall(harness: Harness, quick_stall: float) -> None:
    """A producer waiting at the high-water mark learns of the stall without a resume."""
    harness.ready()
    send_queued(harness, 100)
    harness.conn.pause_writing()
    waiter = asyncio.ensure_future(harness.conn.drain())
    async with asyncio.timeout(10):
        with pytest.raises(HDSSendStalledError):
            await waiter


async def test_slow_progress_is_not_a_stall(harness: Harness, quick_stall: float) -> None:
    """The queue grows (the hub reads slower than we send) but the kernel keeps taking bytes."""
    harness.ready()
    queued = 1000
    send_queued(harness, queued)
    for _ in range(8):  # four timeouts in all
        await asyncio.sleep(quick_stall / 2)
        queued += 200  # one more frame queued, part of the older bytes taken
        send_queued(harness, queued)
        await harness.conn.drain()
    assert harness.conn.write_buffer_size == queued


async def test_stall_clears_when_the_hub_reads_again(harness: Harness, quick_stall: float) -> None:
    """Sending works again once the kernel takes bytes; an empty queue ends the watch."""
    harness.ready()
    send_queued(harness, 100)
    await asyncio.sleep(quick_stall * 2)
    with pytest.raises(HDSSendStalledError):
        await harness.conn.drain()
    harness.transport.buffer_size = 40
    await asyncio.sleep(quick_stall / 2)
    await harness.conn.drain()
    harness.transport.buffer_size = 0
    await asyncio.sleep(quick_stall / 2)
    assert not harness.conn._send_flow.watching
    await asyncio.sleep(quick_stall * 2)
    await harness.conn.drain()


async def test_close_stops_the_send_watch(harness: Harness, quick_stall: float) -> None:
    """No timer outlives the connection."""
    harness.ready()
    send_queued(harness, 100)
    assert harness.conn._send_flow.watching
    harness.conn.close()
    assert not harness.conn._send_flow.watching


async def test_awaiting_hello_state(harness: Harness) -> None:
    """The state is AWAITING_HELLO only inside the first frame's handling."""
    states: list[int] = []
    harness.conn.add_request_handler(
        "control", "hello", lambda conn, rid, msg: states.append(conn.state)
    )
    harness.send(*HELLO)
    assert states == [HDS_STATE_AWAITING_HELLO]


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.binary(max_size=80), max_size=10), st.booleans())
async def test_arbitrary_bytes_never_raise(pieces: list[bytes], after_hello: bool) -> None:
    """data_received never raises, before or after hello; violations only close."""
    harness = Harness(asyncio.get_running_loop())
    if after_hello:
        harness.ready()
    for piece in pieces:
        harness.conn.data_received(piece)
    assert harness.conn.state in (HDS_STATE_MATCHING, HDS_STATE_READY, HDS_STATE_CLOSED)
    harness.conn.close()
