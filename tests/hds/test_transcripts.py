"""Replay hap-nodejs' end-to-end transcripts against the real server over real TCP.

The hub's frames are sent byte for byte as recorded (same keys through the salt seam, same
counters); the accessory's replies must decode to the same messages in the same order, and
the delegate must see the same calls. Documented deviations: BUSY for a second open on the
same connection (HN is silent, §5.4) and int32 instead of int64 for sizes above 32767 (§4.2).
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
from typing import Any

import pytest

from custom_components.hksv.hds import DataSendCloseReason, DataStreamServer, RecordingPacket
from custom_components.hksv.hds.frame import EncryptCipher, encode_payload
from tests.hub.hds_client import HDSClient, HDSMessage

from .common import (
    A2C_KEY,
    ACCESSORY_SALT,
    C2A_KEY,
    CONTROLLER_SALT,
    SHARED_SECRET,
    TRANSCRIPTS,
    FakeDelegate,
    from_json,
    typed,
)
from .conftest import HOST

ACCESSORY = "accessory->controller"
SECOND = "accessory->controller (2nd connection)"
HUB = "controller->accessory"


def reproduce_packet(packet: dict[str, Any]) -> bytes:
    """Rebuild a delegate packet from its length and sha256.

    The transcripts' blobs are either spelled out in some transcript's data events or one
    byte repeated; try those.
    """
    blobs = (
        bytes(from_json(p["data"]))
        for transcript in TRANSCRIPTS
        for step in transcript["steps"]
        for p in step.get("message", {}).get("packets", [])
        if "$bytes" in p["data"]
    )
    fills = (bytes([fill]) * packet["length"] for fill in range(256))
    for data in itertools.chain(blobs, fills):
        if len(data) == packet["length"] and hashlib.sha256(data).hexdigest() == packet["sha256"]:
            return bytes(data)
    pytest.fail(f"cannot reproduce a {packet['length']}-byte packet")


def expected_message(message: dict[str, Any]) -> Any:
    """Return the transcript's message in Python form."""
    return from_json(message)


def check_step(step: dict[str, Any], got: HDSMessage) -> None:
    """Compare one accessory message with the transcript step."""
    assert got.type.name.lower() == step["type"]
    assert (got.protocol, got.topic) == (step["protocol"], step["topic"])
    assert got.id == step.get("id")
    assert got.status == step.get("status")
    message = step["message"]
    packets = message.get("packets", [])
    if packets and "sha256" in packets[0]["data"]:
        # transcript_chunking_0x40000 lists blobs as {length, sha256}.
        (ours,) = got.message["packets"]
        assert len(ours["data"]) == packets[0]["data"]["length"]
        assert hashlib.sha256(ours["data"]).hexdigest() == packets[0]["data"]["sha256"]
        assert ours["metadata"] == packets[0]["metadata"]
        assert {k: v for k, v in got.message.items() if k != "packets"} == {
            k: v for k, v in message.items() if k != "packets"
        }
        size = packets[0]["metadata"].get("dataTotalSize", 0)
        if "payload_length" in step and size <= 0x7FFF:
            assert len(got.payload) == step["payload_length"]
        elif "payload_length" in step:
            assert len(got.payload) == step["payload_length"] - 4  # int32, not int64
        return
    assert typed(got.message) == typed(expected_message(message))
    # With no back-references or int64 sizes in these messages, the bytes are identical.
    if "payload_hex" in step:
        assert got.payload.hex() == step["payload_hex"]
    if got.counter == step["counter"] and "frame_hex" in step:
        header, sealed = EncryptCipher(A2C_KEY, got.counter).seal(got.payload)
        assert (header + sealed).hex() == step["frame_hex"]


def hub_frame(step: dict[str, Any]) -> bytes:
    """Return the hub's frame: as recorded, or sealed from its header and message."""
    payload = encode_payload(from_json(step["header"]), from_json(step["message"]))
    header, sealed = EncryptCipher(C2A_KEY, step["counter"]).seal(payload)
    if "frame_hex" in step:
        assert (header + sealed).hex() == step["frame_hex"]
        return bytes.fromhex(step["frame_hex"])
    return header + sealed


async def connect_client(server: DataStreamServer, hap: str) -> HDSClient:
    """Prepare a session with the vector's secret and salts and connect a client to it."""
    salt = server.prepare_session(hap, SHARED_SECRET, CONTROLLER_SALT)
    assert salt == ACCESSORY_SALT
    client = HDSClient.from_shared_secret(HOST, server.port, SHARED_SECRET, CONTROLLER_SALT, salt)
    await client.connect()
    return client


@pytest.mark.parametrize("transcript", TRANSCRIPTS, ids=lambda t: t["name"])
async def test_transcript(socket_enabled: None, transcript: dict[str, Any]) -> None:
    """Replay one transcript and compare messages and delegate calls."""
    packets = [
        RecordingPacket(reproduce_packet(p), p["isLast"]) for p in transcript["delegate_packets"]
    ]
    delegate = FakeDelegate(packets=packets, hold_open=not packets[-1].is_last)
    server = DataStreamServer(
        host=HOST, delegate=delegate, log_name="transcript", salt_factory=lambda n: ACCESSORY_SALT
    )
    await server.async_start()
    steps = transcript["steps"]
    hub_frames = [hub_frame(step) for step in steps if step["dir"] == HUB]
    first = await connect_client(server, "hap-1")
    second: HDSClient | None = None
    expected: dict[str, list[dict[str, Any]]] = {ACCESSORY: [], SECOND: []}
    same_connection = transcript["name"] == "transcript_second_open_same_connection"

    def received(client: HDSClient) -> list[HDSMessage]:
        # Deviation: our BUSY answer to the second open on the same connection.
        return [m for m in client.messages if not (same_connection and m.id == 3)]

    async def caught_up() -> None:
        await first.wait_until(lambda: len(received(first)) >= len(expected[ACCESSORY]))
        if (other := second) is not None:
            await other.wait_until(lambda: len(other.messages) >= len(expected[SECOND]))

    try:
        for step in steps:
            if step["dir"] == HUB:
                await caught_up()
                first.send_raw(hub_frame(step))
            elif step["dir"] in expected:
                if step["dir"] == SECOND and second is None:
                    await caught_up()
                    second = await connect_client(server, "hap-2")
                    second.send_raw(hub_frames[0] + hub_frames[1])  # hello, open
                expected[step["dir"]].append(step)
            else:
                assert step["label"] == "HomeKitCameraActive set to 0 by a HAP write"
                await caught_up()
                server.close_recording_streams(DataSendCloseReason.NOT_ALLOWED)
        await caught_up()
        await asyncio.wait_for(delegate.ended.wait(), 10)

        assert len(received(first)) == len(expected[ACCESSORY])
        for step, got in zip(expected[ACCESSORY], received(first), strict=True):
            check_step(step, got)
        if second is not None:
            for step, got in zip(expected[SECOND], second.messages, strict=True):
                check_step(step, got)
        if same_connection:
            (busy,) = [m for m in first.messages if m.id == 3]
            assert (busy.topic, busy.status, busy.message) == ("open", 6, {"status": 2})
        calls = [
            (c["call"], c["streamId"], *([c["reason"]] if "reason" in c else []))
            for c in transcript["delegate_calls"]
        ]
        assert delegate.calls == calls
    finally:
        for client in (first, second):
            if client is not None:
                client.abort()
        await server.async_stop()
