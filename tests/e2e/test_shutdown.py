"""Stopping Home Assistant (or unloading the entry) ends every stream worker hksv started.

Real stack: a live camera feed (MPEG-TS over TCP, or RTSP with SPS/PPS in its SDP), HA's
real stream worker, the real HAP server paired with the hub emulator, an HDS recording in
progress or the setup probe still waiting. Then a real ``hass.async_stop()``: afterwards no
``stream_worker`` thread may be alive, also once the prebuffer's watchdog would have run.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
import threading
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.hksv.source.attachment import WATCHDOG_INTERVAL_SECONDS
from tests import harness
from tests.e2e.live_source import LiveFeedSource
from tests.e2e.rtsp_source import RtspSource
from tests.harness import STREAM_DEFAULTS, clip_file, live_camera, stream_motion_recording
from tests.hub.emulator import HomeHub
from tests.media import ClipSpec
from tests.ports import free_port

CLIP = ClipSpec(seconds=20.0, fps=25, gop_seconds=2.0)
# A 10 s GOP joined mid-GOP: the probe is still waiting for its first GOP when HA stops.
LONG_GOP_CLIP = ClipSpec(seconds=30.0, fps=25, gop_seconds=10.0)


@dataclass(frozen=True)
class Scenario:
    """What runs when Home Assistant stops."""

    source: str  # "tcp" (LiveFeedSource) or "rtsp" (RtspSource)
    during: str  # "recording" or "probe"


SCENARIOS = {
    "tcp_mid_recording": Scenario("tcp", "recording"),
    "rtsp_mid_recording": Scenario("rtsp", "recording"),
    "tcp_mid_probe": Scenario("tcp", "probe"),
    "rtsp_mid_probe": Scenario("rtsp", "probe"),
}


@pytest.fixture
def scenario(request: pytest.FixtureRequest) -> Scenario:
    """Return the parametrized scenario."""
    return SCENARIOS[request.param]


@pytest.fixture
def known_source(scenario: Scenario) -> dict[str, Any] | None:
    """Probe the camera at startup in the probe scenarios; skip the probe otherwise."""
    if scenario.during == "probe":
        return None
    return {
        "width": 640,
        "height": 360,
        "fps": 25.0,
        "audio_codec": "aac-lc",
        "audio_sample_rate": 32000,
        "audio_channels": 1,
    }


with_doorbell = harness.no_doorbell


@pytest.fixture
async def camera_feed(
    hass: HomeAssistant, socket_enabled: None, scenario: Scenario, tmp_path: Path
) -> AsyncGenerator[LiveFeedSource | RtspSource]:
    """Run the scenario's camera and set up `stream`."""
    clip = await clip_file(hass, tmp_path, LONG_GOP_CLIP if scenario.during == "probe" else CLIP)
    source: LiveFeedSource | RtspSource = (
        RtspSource(clip) if scenario.source == "rtsp" else LiveFeedSource(clip, free_port())
    )
    async with live_camera(hass, source, stream_config=STREAM_DEFAULTS):
        yield source


@pytest.fixture
def stream_source(camera_feed: LiveFeedSource | RtspSource) -> str:
    """Point the test camera at the scenario's feed."""
    return camera_feed.url


def stream_workers() -> list[threading.Thread]:
    """Return the live stream worker threads (HA names them all "stream_worker")."""
    return [t for t in threading.enumerate() if t.name == "stream_worker" and t.is_alive()]


async def _wait_for(condition: Any, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.1)


async def _start_recording(hass: HomeAssistant, entry: MockConfigEntry) -> Any:
    """Pair a hub, enable recording, and leave a recording streaming."""
    bridge = entry.runtime_data
    hub = HomeHub(bridge.port)
    await hub.pair(bridge.setup_code)
    await hub.enable_recording(await hub.select_from_offer())
    client = await stream_motion_recording(hass, bridge, hub, client_timeout=60)
    return hub, client


@pytest.mark.parametrize("scenario", list(SCENARIOS), indirect=True)
@pytest.mark.usefixtures("session_keys")
async def test_home_assistant_stop_ends_every_stream_worker(
    hass: HomeAssistant, init_integration: MockConfigEntry, scenario: Scenario
) -> None:
    """No stream worker outlives a real Home Assistant stop, watchdog time included."""
    bridge = init_integration.runtime_data
    hub = client = None
    if scenario.during == "recording":
        hub, client = await _start_recording(hass, init_integration)
    else:
        # The probe has the worker running but (10 s GOP joined mid-GOP) no GOP yet.
        await _wait_for(lambda: bridge.recorder.prebuffer.running and stream_workers())
        await asyncio.sleep(2)
        assert not bridge.recorder.prebuffer.gops
        assert "source" not in bridge._stored
    assert stream_workers()

    await hass.async_stop()
    # Time passes after the stop: the prebuffer's watchdog must not bring the stream back.
    for step in (1, 2, 3):
        async_fire_time_changed(
            hass, dt_util.utcnow() + timedelta(seconds=step * WATCHDOG_INTERVAL_SECONDS + 1)
        )
        await asyncio.sleep(0.5)
    await _wait_for(lambda: not stream_workers(), timeout=30)
    await asyncio.sleep(1)
    assert not stream_workers()
    assert not bridge.recorder.prebuffer.running
    assert not bridge.recorder.streaming
    if client is not None:
        await client.wait_closed()
    if hub is not None:
        await hub.close()


@pytest.mark.parametrize("scenario", ["tcp_mid_recording"], indirect=True)
@pytest.mark.usefixtures("session_keys")
async def test_unload_mid_recording_ends_every_stream_worker(
    hass: HomeAssistant, init_integration: MockConfigEntry, scenario: Scenario
) -> None:
    """Unloading the entry while a hub records stops the worker and the recording."""
    bridge = init_integration.runtime_data
    hub, client = await _start_recording(hass, init_integration)
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    async_fire_time_changed(
        hass, dt_util.utcnow() + timedelta(seconds=WATCHDOG_INTERVAL_SECONDS + 1)
    )
    await _wait_for(lambda: not stream_workers(), timeout=30)
    assert not bridge.recorder.prebuffer.running
    await client.wait_closed()
    await hub.close()
