"""Copy what a hub accepts; close a clip before the hub gives up (issue 13, item 1b).

The camera is a ``WifiCameraSource``: a paced 30 fps feed with 2 s GOPs that Home Assistant's
real stream worker joins mid-GOP, with a two-frame timestamp gap once per loop (that GOP lasts
2.067 s). The hub is the aiohomekit emulator over real TCP (HAP and HDS); it checks what a hub
checks: every fragment starts with a keyframe, decodes on its own, and is no longer than the
selected fragment length, and a stream never goes longer than a hub waits without data.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
import contextlib
import io
from itertools import pairwise
from pathlib import Path
from typing import Any
from unittest.mock import patch

import av
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.media.fmp4 import parse_fragments, parse_init
from tests import harness
from tests.conftest import MOTION_ID, free_port
from tests.e2e.wifi_source import WifiCameraSource, write_gapped_clip
from tests.hub.emulator import HomeHub, media_seconds
from tests.hub.hds_client import HDSClient, HDSClosedError, Recording

PREBUFFER_S = 4.0
# A hub closes a stream with TIMEOUT about 8 s after its last data (docs/architecture.md);
# a clip whose camera is gone must end well before: 5 s after its last media (2 s GOPs).
HUB_PATIENCE_S = 8.0
END_AFTER_LAST_MEDIA_S = 5.0
# Time from the drop to hksv's last part (the worker's final flush) and on to the hub.
DELIVERY_MARGIN_S = 1.5
# The gap comes back once per loop of the clip.
GAP_EVERY_S = 10.0
GAP_GOP_MS = 62 * 1000 / 30


@pytest.fixture(scope="module")
def gapped_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the Wi-Fi camera's clip (written once)."""
    path = tmp_path_factory.mktemp("wifi") / "gapped.ts"
    return write_gapped_clip(path, seconds=GAP_EVERY_S)


@pytest.fixture
def worker_restart_seconds() -> int | None:
    """Return HA's stream worker restart backoff step to use; None keeps HA's own (10 s)."""
    return None


@pytest.fixture
async def wifi_camera(
    hass: HomeAssistant,
    socket_enabled: None,
    gapped_clip: Path,
    worker_restart_seconds: int | None,
) -> AsyncGenerator[WifiCameraSource]:
    """Serve the clip as a live feed joined mid-GOP, and set up `stream` (LL-HLS)."""
    assert await async_setup_component(hass, "stream", {"stream": {"ll_hls": True}})
    source = WifiCameraSource(gapped_clip, free_port())
    try:
        await source.start()
    except BaseException:
        await source.stop()
        raise
    if worker_restart_seconds is None:
        yield source
    else:
        with patch(
            "homeassistant.components.stream.STREAM_RESTART_INCREMENT", worker_restart_seconds
        ):
            yield source
    await source.stop()


@pytest.fixture
def stream_source(wifi_camera: WifiCameraSource) -> str:
    """Point the test camera at the Wi-Fi camera."""
    return wifi_camera.url


known_source = harness.probe_at_startup
with_doorbell = harness.no_doorbell
home_hub = harness.hub_recording_from_offer


async def _wait_for(condition: Any, timeout: float = 120) -> None:
    """Wait until ``condition()`` holds (generous: real time under load)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.1)


class Arrivals:
    """When the hub received data on one stream (loop time of each dataSend.data)."""

    def __init__(self, client: HDSClient, recording: Recording) -> None:
        """Start watching ``recording`` on ``client``."""
        self.times: list[float] = []
        self._task = asyncio.create_task(self._watch(client, recording))

    async def _watch(self, client: HDSClient, recording: Recording) -> None:
        seen = 0
        loop = asyncio.get_running_loop()
        while not (recording.ended or recording.closed or client.closed):
            await client.wait_until(
                lambda seen=seen: len(recording.chunks) > seen or client.closed  # type: ignore[misc]
            )
            if len(recording.chunks) > seen:
                seen = len(recording.chunks)
                self.times.append(loop.time())

    def longest_wait_after(self, start: float) -> float:
        """Return the longest time the hub waited for data from ``start`` on."""
        times = [start, *[t for t in self.times if t > start]]
        return max(b - a for a, b in pairwise(times)) if len(times) > 1 else 0

    async def stop(self) -> None:
        """Stop watching."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError, HDSClosedError):
            await self._task


async def _open(hub: HomeHub, stream_id: int) -> tuple[HDSClient, Recording]:
    """Open an HDS connection and a recording stream on it."""
    client = await hub.open_data_stream()
    client.timeout = 120
    response = await client.open_recording(stream_id)
    assert response.status == 0, response
    return client, client.recordings[stream_id]


def _hub_checks(packets: list[bytes], fragment_ms: int) -> list[float]:
    """Check each fragment as a hub does; return their lengths (ms).

    Each starts with a keyframe, decodes on its own (init + that fragment alone), lasts no
    longer than the selected fragment length, and starts where the previous one ended.
    """
    init = parse_init(packets[0])
    assert init.video is not None
    lengths = []
    expected = None
    for index, fragment in enumerate(packets[1:]):
        samples = parse_fragments(fragment, init)[init.video.track_id]
        assert samples[0].is_sync, index
        if expected is not None:
            assert abs(samples[0].decode_time - expected) <= init.video.timescale // 50, index
        duration = sum(s.duration for s in samples)
        expected = samples[0].decode_time + duration
        lengths.append(duration * 1000 / init.video.timescale)
        assert lengths[-1] <= fragment_ms, (index, lengths[-1])
        with av.open(io.BytesIO(packets[0] + fragment)) as container:
            decoded = list(container.decode(video=0))
        assert decoded[0].key_frame, index
        assert len(decoded) == len(samples), index
    return lengths


def _gap_gop_buffered(bridge: Any) -> bool:
    """Return True once the newest steady GOP in the prebuffer is the one with the gap."""
    gops = bridge.recorder.prebuffer.gops
    return bool(gops) and not gops[-1].first_in_epoch and gops[-1].duration_seconds > 2.05


async def test_camera_dropping_frames_is_copied(
    hass: HomeAssistant, init_integration: MockConfigEntry, home_hub: HomeHub
) -> None:
    """2 s GOPs with a 2.067 s one now and then: the clip is copied, and the hub accepts it."""
    bridge = init_integration.runtime_data
    selection = bridge.accessory.selection
    fragment_ms = selection.recording.media_container_configuration.parameters.fragment_length
    assert fragment_ms == 4000
    # Open right after the GOP with the gap: the decision sees it next to 2 s ones.
    await _wait_for(lambda: bridge.recorder.prebuffer.buffered_seconds >= PREBUFFER_S + 2)
    await _wait_for(lambda: _gap_gop_buffered(bridge))
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client, recording = await _open(home_hub, 1)
    # Long enough for the next gap to pass through live, too.
    await client.wait_until(lambda: media_seconds(recording) >= PREBUFFER_S + GAP_EVERY_S + 2)
    client.close_stream(1, 0)
    await client.close()
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await _wait_for(lambda: not bridge.recorder.streaming)
    summary = bridge.recorder.last_recording
    assert summary.mode == "copy", summary.mode_reasons
    assert summary.mode_reasons == []
    lengths = await hass.async_add_executor_job(
        _hub_checks, recording.complete_packets, fragment_ms
    )
    # The GOPs with the gap went out alone (a fragment closed early before each).
    assert sum(abs(length - GAP_GOP_MS) < 5 for length in lengths) >= 2, lengths
    assert summary.outcome.value == "completed"


async def _start_recording(
    hass: HomeAssistant, bridge: Any, hub: HomeHub, camera: WifiCameraSource, stream_id: int
) -> tuple[HDSClient, Recording, Arrivals]:
    """Fire motion, open a stream and let it record 3 s past the prebuffer."""
    await _wait_for(lambda: bridge.recorder.prebuffer.buffered_seconds >= PREBUFFER_S + 2)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client, recording = await _open(hub, stream_id)
    arrivals = Arrivals(client, recording)
    await client.wait_until(lambda: media_seconds(recording) >= PREBUFFER_S + 3)
    return client, recording, arrivals


@pytest.mark.parametrize("offline_seconds", [3.0, 30.0], ids=["3s", "30s"])
async def test_camera_offline_ends_the_clip_before_the_hub_gives_up(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    wifi_camera: WifiCameraSource,
    offline_seconds: float,
    request: pytest.FixtureRequest,
) -> None:
    """The camera leaves the network mid-clip; HA's worker retries only after its backoff.

    The clip ends on its last real fragment, marked endOfStream, within the stall limit of
    the camera's last media and before a hub's patience runs out; what the hub got decodes.
    Once the camera and HA's worker are back, the next motion event records normally.
    """
    bridge = init_integration.runtime_data
    selection = bridge.accessory.selection
    fragment_ms = selection.recording.media_container_configuration.parameters.fragment_length
    loop = asyncio.get_running_loop()
    client, recording, arrivals = await _start_recording(hass, bridge, home_hub, wifi_camera, 1)
    await wifi_camera.go_offline()
    dropped = loop.time()
    back = loop.call_later(offline_seconds, wifi_camera.come_back)
    request.addfinalizer(back.cancel)
    try:
        await client.wait_until(lambda: recording.ended or recording.closed)
        ended = loop.time()
    finally:
        await arrivals.stop()
    print(
        f"offline {offline_seconds:g} s: endOfStream {ended - dropped:.2f} s after the drop; "
        f"longest wait at the hub {arrivals.longest_wait_after(dropped - 10):.2f} s"
    )
    assert recording.ended  # a proper end, not an accessory close and not the hub's timeout
    assert not recording.closed
    # The camera's last media reached hksv at the drop or a little later (the worker's last
    # part): the end comes within the stall limit of it, and the hub never waited as long
    # as a hub waits.
    assert ended - dropped <= END_AFTER_LAST_MEDIA_S + DELIVERY_MARGIN_S
    assert arrivals.longest_wait_after(dropped - 10) < HUB_PATIENCE_S
    packets = recording.complete_packets
    assert len(packets) == len(recording.packets)  # every packet whole
    await hass.async_add_executor_job(_hub_checks, packets, fragment_ms)
    client.ack(1)
    await _wait_for(lambda: not bridge.recorder.streaming)
    summary = bridge.recorder.last_recording
    assert summary.mode == "copy"
    assert summary.outcome.value == "camera_stream_lost"
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await client.close()

    # The next event, once the camera is back and HA's worker has reconnected after its own
    # backoff, records normally.
    prebuffer = bridge.recorder.prebuffer
    await _wait_for(lambda: not wifi_camera.offline)
    parts = prebuffer.parts_received
    # About 10 s of new parts: the pre-roll comes from the camera's return.
    await _wait_for(lambda: prebuffer.parts_received > parts + 10, timeout=180)
    client, recording, arrivals = await _start_recording(hass, bridge, home_hub, wifi_camera, 2)
    await arrivals.stop()
    client.close_stream(2, 0)
    await client.close()
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await _wait_for(lambda: not bridge.recorder.streaming)
    summary = bridge.recorder.last_recording
    assert summary.outcome.value == "completed"
    assert summary.mode == "copy"
    assert summary.prebuffer_seconds >= PREBUFFER_S
    await hass.async_add_executor_job(_hub_checks, recording.complete_packets, fragment_ms)


async def test_camera_silent_for_3s_continues_the_clip(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    wifi_camera: WifiCameraSource,
) -> None:
    """The network holds the camera's data for 3 s, then delivers it: the clip goes on."""
    bridge = init_integration.runtime_data
    selection = bridge.accessory.selection
    fragment_ms = selection.recording.media_container_configuration.parameters.fragment_length
    loop = asyncio.get_running_loop()
    client, recording, arrivals = await _start_recording(hass, bridge, home_hub, wifi_camera, 1)
    wifi_camera.hold()
    held = loop.time()
    await asyncio.sleep(3.0)
    wifi_camera.release()
    before = media_seconds(recording)
    await client.wait_until(lambda: media_seconds(recording) >= before + 8)
    await arrivals.stop()
    assert not recording.ended
    assert arrivals.longest_wait_after(held - 10) < HUB_PATIENCE_S
    client.close_stream(1, 0)
    await client.close()
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await _wait_for(lambda: not bridge.recorder.streaming)
    summary = bridge.recorder.last_recording
    assert summary.outcome.value == "completed"
    assert summary.mode == "copy"
    await hass.async_add_executor_job(_hub_checks, recording.complete_packets, fragment_ms)
