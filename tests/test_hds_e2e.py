"""HomeKit Data Stream end to end: a real aiohomekit-paired hub, real TCP, real ChaCha20-Poly1305.

The recording pipeline is replaced by a recorder that plays the real camera recording in
shared/fixtures/hksv-spec-examples, so these tests pin the transport and dataSend behaviour.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.hds import DataSendCloseReason, RecordingPacket, server as hds_server
from tests.harness import recording_hub
from tests.hub.controller import HOST
from tests.hub.emulator import HomeHub
from tests.hub.hds_client import HDSClient
from tests.test_accessory import hub_write

FIXTURES = Path(__file__).parents[2] / "shared/fixtures/hksv-spec-examples"
PACKETS = [
    (FIXTURES / "fragments" / name).read_bytes()
    for name in ("mediaInitialization.mp4", "sequence2.mp4", "sequence3.mp4", "sequence4.mp4")
]
CHUNKS = {
    2: ["sequence2_1.mp4", "sequence2_2.mp4"],
    3: ["sequence3_1.mp4", "sequence3_2.mp4"],
    4: ["sequence4_1.mp4", "sequence4_2.mp4"],
}


class FixtureRecorder:
    """Stands in for RecordingController: plays the fixture recording, optionally stays live."""

    def __init__(self, *, live: bool) -> None:
        """Create the recorder; ``live`` keeps streams open after the last fixture fragment."""
        self.live = live
        self.opened: list[tuple[int, bool]] = []
        self.selections: list[Any] = []
        self.closed: list[tuple[int, DataSendCloseReason | None]] = []
        self.acknowledged: list[int] = []
        self.refused: list[tuple[int, DataSendCloseReason]] = []
        self.generator_closed = asyncio.Event()
        self.streaming = False
        self.last_recording = None

    def open_stream(
        self, stream_id: int, selection: Any, audio_on: bool
    ) -> AsyncIterator[RecordingPacket]:
        """Return the fixture recording."""
        self.opened.append((stream_id, audio_on))
        self.selections.append(selection)
        return self._packets()

    async def _packets(self) -> AsyncIterator[RecordingPacket]:
        try:
            for index, packet in enumerate(PACKETS):
                yield RecordingPacket(packet, not self.live and index == len(PACKETS) - 1)
            if self.live:
                await asyncio.Event().wait()
        finally:
            self.generator_closed.set()

    def stream_closed(self, stream_id: int, reason: DataSendCloseReason | None) -> None:
        """Record a close."""
        self.closed.append((stream_id, reason))

    def stream_acknowledged(self, stream_id: int) -> None:
        """Record an ack."""
        self.acknowledged.append(stream_id)

    def stream_refused(self, stream_id: int, reason: DataSendCloseReason) -> None:
        """Record a refused open."""
        self.refused.append((stream_id, reason))

    async def async_set_enabled(self, enabled: bool, selection: Any) -> None:
        """Nothing to start."""

    async def async_stop(self) -> None:
        """Nothing to stop."""

    def diagnostics(self) -> dict[str, Any]:
        """Return nothing."""
        return {}


@pytest.fixture
def live() -> bool:
    """Return whether the fixture recorder stays live after its fragments."""
    return False


@pytest.fixture
async def recorder(
    hass: HomeAssistant, init_integration: MockConfigEntry, live: bool
) -> FixtureRecorder:
    """Swap the entry's recorder for the fixture player."""
    bridge = init_integration.runtime_data
    await bridge.recorder.async_stop()
    bridge.recorder = FixtureRecorder(live=live)
    return bridge.recorder


@pytest.fixture
async def home_hub(
    init_integration: MockConfigEntry, session_keys: None, recorder: FixtureRecorder
) -> AsyncGenerator[HomeHub]:
    """Return a paired hub with recording enabled."""
    async with recording_hub(init_integration.runtime_data, selection=hub_write()) as hub:
        yield hub


async def test_recording_arrives_chunk_for_chunk(
    home_hub: HomeHub, recorder: FixtureRecorder
) -> None:
    """hello, open, and the fixture recording in 0x40000-byte chunks with exact metadata."""
    client = await home_hub.open_data_stream()
    response = await client.open_recording(1)
    assert response.status == 0
    assert response.message == {"status": 0}
    recording = await client.receive_recording(1)
    assert recording.packets == PACKETS

    chunks = recording.chunks
    assert chunks[0].metadata == {
        "dataType": "mediaInitialization",
        "dataSequenceNumber": 1,
        "dataChunkSequenceNumber": 1,
        "isLastDataChunk": True,
        "dataTotalSize": len(PACKETS[0]),
    }
    by_sequence: dict[int, list[Any]] = {}
    for chunk in chunks[1:]:
        by_sequence.setdefault(chunk.metadata["dataSequenceNumber"], []).append(chunk)
    assert sorted(by_sequence) == [2, 3, 4]
    for sequence, parts in by_sequence.items():
        expected = [(FIXTURES / "chunks" / name).read_bytes() for name in CHUNKS[sequence]]
        assert [p.data for p in parts] == expected
        assert [p.metadata["dataChunkSequenceNumber"] for p in parts] == [1, 2]
        assert [p.metadata["isLastDataChunk"] for p in parts] == [False, True]
        assert all(p.metadata["dataType"] == "mediaFragment" for p in parts)
        assert parts[0].metadata["dataTotalSize"] == sum(len(e) for e in expected)
        assert "dataTotalSize" not in parts[1].metadata
        assert parts[0].end_of_stream is None
        assert parts[1].end_of_stream is (sequence == 4)
    assert recorder.opened == [(1, True)]

    client.ack(1)
    await client.expect_silence(0.2)
    assert recorder.acknowledged == [1]
    await client.close()


@pytest.mark.parametrize("live", [True])
@pytest.mark.parametrize("reason", [0, 1, 3, 5, 6, 9])
async def test_hub_close_releases_the_stream(
    home_hub: HomeHub, recorder: FixtureRecorder, reason: int
) -> None:
    """A hub close ends the stream with its reason, silently, and a new open works."""
    client = await home_hub.open_data_stream()
    assert (await client.open_recording(1)).status == 0
    await client.wait_until(lambda: len(client.recordings[1].packets) == 4)
    client.close_stream(1, reason)
    await asyncio.wait_for(recorder.generator_closed.wait(), 10)
    assert recorder.closed == [(1, DataSendCloseReason(reason))]
    assert not [m for m in await client.expect_silence(0.2) if m.topic == "close"]
    assert (await client.open_recording(2)).status == 0
    await client.close()


@pytest.mark.parametrize("live", [True])
async def test_second_open_is_busy(home_hub: HomeHub, recorder: FixtureRecorder) -> None:
    """One recording per camera: BUSY on the same connection and on another one."""
    client = await home_hub.open_data_stream()
    assert (await client.open_recording(1)).status == 0
    again = await client.open_recording(2)
    assert (again.status, again.message) == (6, {"status": DataSendCloseReason.BUSY})
    other = await home_hub.open_data_stream(name="second hub")
    busy = await other.open_recording(1)
    assert (busy.status, busy.message) == (6, {"status": DataSendCloseReason.BUSY})
    assert recorder.refused == [(2, DataSendCloseReason.BUSY), (1, DataSendCloseReason.BUSY)]
    await other.close()
    await client.close()


@pytest.mark.parametrize("live", [True])
async def test_camera_turned_off_mid_stream(home_hub: HomeHub, recorder: FixtureRecorder) -> None:
    """HomeKitCameraActive → 0 closes the running stream with NOT_ALLOWED; opens are refused."""
    client = await home_hub.open_data_stream()
    assert (await client.open_recording(1)).status == 0
    await client.wait_until(lambda: len(client.recordings[1].packets) == 4)
    assert await home_hub.write(home_hub.iid("21A", "21B"), 0) == {}
    await client.wait_until(lambda: client.recordings[1].closed)
    assert client.recordings[1].close_reason == DataSendCloseReason.NOT_ALLOWED
    assert recorder.closed == [(1, DataSendCloseReason.NOT_ALLOWED)]
    refused = await client.open_recording(2)
    assert refused.message == {"status": DataSendCloseReason.NOT_ALLOWED}
    await client.close()


async def test_open_needs_recording_active(home_hub: HomeHub) -> None:
    """With recording Active 0 an open gets NOT_ALLOWED."""
    assert await home_hub.write(home_hub.iid("204", "B0"), 0) == {}
    client = await home_hub.open_data_stream()
    refused = await client.open_recording(1)
    assert refused.message == {"status": DataSendCloseReason.NOT_ALLOWED}
    await client.close()


@pytest.mark.parametrize("live", [True])
async def test_disconnect_mid_stream_releases(home_hub: HomeHub, recorder: FixtureRecorder) -> None:
    """A hub vanishing mid-stream releases the stream, so the next open succeeds."""
    client = await home_hub.open_data_stream()
    assert (await client.open_recording(1)).status == 0
    await client.wait_until(lambda: len(client.recordings[1].packets) >= 2)
    client.abort()
    await asyncio.wait_for(recorder.generator_closed.wait(), 10)
    assert recorder.closed == [(1, None)]
    fresh = await home_hub.open_data_stream()
    assert (await fresh.open_recording(1)).status == 0
    await fresh.close()


@pytest.mark.parametrize("live", [True])
async def test_hap_connection_loss_closes_hds(
    hass: HomeAssistant, home_hub: HomeHub, recorder: FixtureRecorder
) -> None:
    """When the hub's HAP session drops, its HDS connection goes with it."""
    client = await home_hub.open_data_stream()
    assert (await client.open_recording(1)).status == 0
    await home_hub.close()
    await client.wait_closed()
    await asyncio.wait_for(recorder.generator_closed.wait(), 10)
    assert recorder.closed == [(1, None)]


async def test_prepared_session_expires(home_hub: HomeHub) -> None:
    """A hub that connects after the setup expired is not matched and is closed."""
    with patch.object(hds_server, "SESSION_TIMEOUT", 0.05):
        port, controller_salt, accessory_salt = await home_hub.setup_data_stream()
    await asyncio.sleep(0.2)
    a2c, c2a = home_hub.hds_keys(controller_salt, accessory_salt)
    late = HDSClient(HOST, port, accessory_to_controller_key=a2c, controller_to_accessory_key=c2a)
    await late.connect()
    late.send_request("control", "hello", {})
    await late.wait_closed()
    assert not [m for m in late.messages if m.topic == "hello"]


async def test_unmatched_connection_is_closed(home_hub: HomeHub) -> None:
    """A connection whose first frame matches no prepared session is closed."""
    port, _, _ = await home_hub.setup_data_stream()
    stranger = HDSClient(
        HOST, port, accessory_to_controller_key=bytes(32), controller_to_accessory_key=bytes(32)
    )
    await stranger.connect()
    stranger.send_request("control", "hello", {})
    await stranger.wait_closed()
    assert stranger.messages == []


@pytest.mark.parametrize("live", [True])
async def test_configuration_change_applies_to_the_next_stream(
    home_hub: HomeHub, recorder: FixtureRecorder
) -> None:
    """A new selection during a stream leaves that stream alone and shapes the next one."""
    client = await home_hub.open_data_stream()
    assert (await client.open_recording(1)).status == 0
    await client.wait_until(lambda: len(client.recordings[1].packets) == 4)
    assert await home_hub.write(home_hub.iid("204", "209"), hub_write(1280, 720, 30)) == {}
    assert not client.recordings[1].closed
    client.close_stream(1, 0)
    await asyncio.wait_for(recorder.generator_closed.wait(), 10)
    assert (await client.open_recording(2)).status == 0
    first, second = recorder.selections
    assert first.video.attributes[0].width == 1920
    assert second.video.attributes[0].width == 1280
    await client.close()


async def test_audio_follows_recording_audio_active(
    home_hub: HomeHub, recorder: FixtureRecorder
) -> None:
    """The recorder is told RecordingAudioActive at each open."""
    client = await home_hub.open_data_stream()
    assert (await client.open_recording(1)).status == 0
    await client.receive_recording(1)
    client.ack(1)
    assert await home_hub.timed_write(home_hub.iid("204", "226"), 0) == {}
    assert (await client.open_recording(2)).status == 0
    await client.receive_recording(2)
    assert recorder.opened == [(1, True), (2, False)]
    await client.close()
