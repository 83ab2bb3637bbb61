"""The opt-in direct path end to end: the camera's own stream, read packet by packet.

A paced camera (the MPEG-TS feed over TCP, or the GStreamer RTSP camera in front of it) is
read by Home Assistant's stream worker and, for live view, by hksv's own demuxer; a paired
aiohomekit controller starts a stream like iOS and the viewer decrypts with libsrtp and
decodes with PyAV.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from itertools import pairwise
from pathlib import Path
import threading
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.const import DEFAULT_OPTIONS, OPT_LIVE_DIRECT
from custom_components.hksv.hap.rtp_stream import SessionCommand, SetupStatus
from tests.conftest import free_port
from tests.e2e.live_source import LiveFeedSource
from tests.e2e.rtsp_source import RtspSource
from tests.hub.controller import HubController
from tests.live.viewer import LiveViewer, access_units, counters, decode_units
from tests.media import ClipSpec, write_clip

FPS = 25
SPEC = ClipSpec(seconds=20.0, width=640, height=360, fps=FPS, gop_seconds=1.0)
CLIP_FRAMES = int(SPEC.seconds * FPS)


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Return the camera's clip (made once)."""
    return write_clip(tmp_path_factory.mktemp("direct") / "camera.ts", SPEC)


@pytest.fixture
def camera_kind() -> str:
    """Return how the camera serves its stream (parametrized)."""
    return "tcp"


@pytest.fixture
async def camera(
    hass: HomeAssistant, socket_enabled: None, clip: Path, camera_kind: str
) -> AsyncGenerator[LiveFeedSource | RtspSource]:
    """Run the paced camera and HA's stream component."""
    assert await async_setup_component(hass, "stream", {"stream": {"ll_hls": True}})
    source: LiveFeedSource | RtspSource = (
        RtspSource(clip) if camera_kind == "rtsp" else LiveFeedSource(clip, free_port())
    )
    await source.start()
    with patch("homeassistant.components.stream.STREAM_RESTART_INCREMENT", 1):
        yield source
    await source.stop()


@pytest.fixture
def stream_source(camera: LiveFeedSource | RtspSource) -> str:
    """Point the test camera at the paced camera."""
    return camera.url


@pytest.fixture
def entry_options() -> dict[str, Any]:
    """Turn the direct path on."""
    return {**DEFAULT_OPTIONS, OPT_LIVE_DIRECT: True}


@pytest.fixture
def with_doorbell() -> bool:
    """No doorbell."""
    return False


@pytest.fixture
async def controller(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> AsyncGenerator[HubController]:
    """Return a paired controller."""
    bridge = init_integration.runtime_data
    hub = HubController(bridge.port, alias="iphone")
    await hub.pair(bridge.setup_code)
    yield hub
    await hub.close()


_OPEN: list[LiveViewer] = []


@pytest.fixture(autouse=True)
async def close_viewers() -> AsyncGenerator[None]:
    """Close every viewer a test opened, even when it fails."""
    yield
    while _OPEN:
        await _OPEN.pop().close()


async def _watch(hub: HubController, **selection: Any) -> LiveViewer:
    """Set up and start one viewer (iPhone on the LAN; ``selection`` overrides defaults)."""
    viewer = LiveViewer(hub)
    _OPEN.append(viewer)
    await viewer.open()
    assert (await viewer.setup()).status == SetupStatus.SUCCESS
    assert await viewer.select(**selection) == {}
    return viewer


def _decodable(viewer: LiveViewer) -> list[int]:
    """Check the stream decodes in order from a keyframe; return the frame counters."""
    packets = viewer.packets
    assert {(b.sequence - a.sequence) % 65536 for a, b in pairwise(packets)} == {1}
    units = access_units(packets)
    complete = units if units[-1].packets[-1].marker else units[:-1]
    assert 5 in complete[0].types, "the stream starts at a keyframe"
    frames = decode_units(complete)
    assert len(frames) >= len(complete) - 2
    assert {(f.width, f.height) for f in frames} == {(SPEC.width, SPEC.height)}
    found = counters(frames)
    # In order, never back; one step forward of up to a part where the viewer moves from
    # HA's parts (a part behind) to the direct path.
    steps = [(b - a) % CLIP_FRAMES for a, b in pairwise(found)]
    assert all(1 <= step <= 2 * FPS for step in steps), found
    assert sum(1 for step in steps if step > 2) <= 1, found
    return found


def _direct_threads() -> list[threading.Thread]:
    """Return the running direct-path demuxer threads."""
    return [t for t in threading.enumerate() if t.name == "hksv_direct" and t.is_alive()]


def _feed(camera: LiveFeedSource | RtspSource) -> LiveFeedSource:
    return camera.feed if isinstance(camera, RtspSource) else camera


async def _open_connections(feed: LiveFeedSource) -> int:
    """Return the feed's client connections still open (closed ones found by writing)."""
    await asyncio.sleep(0.5)  # a closed client is noticed at the next writes
    return sum(1 for w in feed._clients if not w.is_closing())


@pytest.mark.parametrize("camera_kind", ["tcp", "rtsp"])
async def test_direct_path_video_and_stop_after_last_viewer(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    camera: LiveFeedSource | RtspSource,
) -> None:
    """Video through the direct path decodes; the last viewer gone ends thread and connection."""
    bridge = init_integration.runtime_data
    viewer = await _watch(controller)
    async with asyncio.timeout(60):
        while bridge.live.diagnostics()["direct"]["packets"] < 2 * FPS:
            await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)
    _decodable(viewer)
    diagnostics = bridge.live.diagnostics()
    assert diagnostics["active"][0]["direct"] == "camera stream read directly"
    direct = diagnostics["direct"]
    assert direct["running"] and direct["connects"] == 1
    assert direct["last_error"] is None
    assert len(_direct_threads()) == 1
    if isinstance(camera, LiveFeedSource):
        # One connection for HA's stream (held for live audio and recording), one direct.
        assert await _open_connections(camera) == 2
    assert await viewer.select(SessionCommand.END) == {}
    await viewer.close()
    async with asyncio.timeout(30):
        while _direct_threads():
            await asyncio.sleep(0.1)
    assert not bridge.live.diagnostics()["direct"]["running"]
    if isinstance(camera, LiveFeedSource):
        async with asyncio.timeout(30):
            while await _open_connections(camera) > 1:
                pass
    # Recording's stream is untouched by the direct path: HA's worker still reads the camera.
    assert bridge.recorder.prebuffer.running


async def test_direct_path_error_falls_back_to_home_assistants_stream(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    camera: LiveFeedSource | RtspSource,
) -> None:
    """A camera the direct path cannot read: the viewer gets HA's stream, the reason is shown."""
    bridge = init_integration.runtime_data
    refused = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there

    async def source_url() -> str:
        return refused

    bridge.live._direct._source_url = source_url
    viewer = await _watch(controller)
    await viewer.wait_frames(3, FPS)
    _decodable(viewer)
    active = bridge.live.diagnostics()["active"][0]
    assert active["direct"].startswith("fell back to Home Assistant's stream: ")
    assert bridge.live.diagnostics()["direct"]["last_error"]
    assert not _direct_threads()
    assert await viewer.select(SessionCommand.END) == {}
    await viewer.close()


async def test_camera_dropping_the_direct_connection_falls_back(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    camera: LiveFeedSource | RtspSource,
) -> None:
    """The camera closing mid-stream: the viewer goes on from HA's stream at a keyframe."""
    bridge = init_integration.runtime_data
    viewer = await _watch(controller)
    async with asyncio.timeout(60):
        while bridge.live.diagnostics()["active"][0].get("direct") is None:
            await asyncio.sleep(0.1)
    async with asyncio.timeout(60):  # video flows through the direct path
        while bridge.live.diagnostics()["direct"]["packets"] < FPS:
            await asyncio.sleep(0.1)
    assert isinstance(camera, LiveFeedSource)
    await camera.restart()  # drops every client; HA's worker reconnects by itself
    async with asyncio.timeout(30):
        while bridge.live.diagnostics()["direct"]["last_error"] is None:
            await asyncio.sleep(0.1)
    before = len(viewer.packets)
    async with asyncio.timeout(60):
        while sum(1 for p in viewer.packets[before:] if p.marker) < 2 * FPS:
            await asyncio.sleep(0.2)
    # From HA's stream after the fallback: a keyframe, then pictures in order.
    after = access_units(viewer.packets[before:])
    start = next(i for i, unit in enumerate(after) if 5 in unit.types)
    frames = decode_units(after[start:-1])
    assert len(frames) >= FPS
    found = counters(frames)
    assert all(1 <= (b - a) % CLIP_FRAMES <= 2 for a, b in pairwise(found)), found
    assert bridge.live.diagnostics()["active"][0]["direct"].startswith("fell back")
    assert not _direct_threads()
    assert await viewer.select(SessionCommand.END) == {}
    await viewer.close()


@pytest.mark.parametrize("camera_kind", ["tcp", "rtsp"])
async def test_cold_start_is_decided_on_the_direct_connection(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    camera: LiveFeedSource | RtspSource,
) -> None:
    """A cold start copies from the camera's own stream without waiting for HA's first part.

    The direct demuxer knows the camera's format once connected; HA's first part comes after
    ffmpeg's probe and a whole part, so the first keyframe sent is the direct path's.
    """
    bridge = init_integration.runtime_data
    assert not bridge.recorder.prebuffer.running  # recording is off: this start is cold
    viewer = await _watch(controller)
    await viewer.wait_frames(2, FPS)
    _decodable(viewer)
    active = bridge.live.diagnostics()["active"][0]
    assert active["stats"]["start"]["camera_stream"] == "connected for this viewer"
    assert active["stats"]["start"]["first_keyframe_source"] == "direct"
    assert active["mode"] == "copy"
    assert await viewer.select(SessionCommand.END) == {}
    await viewer.close()


async def test_cold_transcoded_start_releases_the_direct_connection(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    camera: LiveFeedSource | RtspSource,
) -> None:
    """A cold start the camera's format sends to a transcoder closes the direct connection."""
    bridge = init_integration.runtime_data
    assert not bridge.recorder.prebuffer.running  # this start is cold
    viewer = await _watch(controller, width=320, height=240, fps=15, bitrate=150, packet_time=60)
    await viewer.wait_frames(1, 15)
    assert bridge.live.diagnostics()["active"][0]["mode"] == "transcode"
    async with asyncio.timeout(30):
        while _direct_threads():
            await asyncio.sleep(0.1)
    direct = bridge.live.diagnostics()["direct"]
    assert not direct["running"] and direct["viewers"] == 0
    assert await _open_connections(_feed(camera)) == 1  # HA's worker only
    assert await viewer.select(SessionCommand.END) == {}
    await viewer.close()


async def test_camera_failing_to_name_its_stream_source_falls_back(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    camera: LiveFeedSource | RtspSource,
) -> None:
    """A camera integration raising from stream_source(): HA's stream, and the reason shown."""
    bridge = init_integration.runtime_data

    async def source_url() -> str:
        raise HomeAssistantError("camera offline")

    bridge.live._direct._source_url = source_url
    assert not bridge.recorder.prebuffer.running  # cold: the decision is tried on it first
    viewer = await _watch(controller)
    await viewer.wait_frames(2, FPS)
    _decodable(viewer)
    active = bridge.live.diagnostics()["active"][0]
    assert active["stats"]["start"]["first_keyframe_source"] == "parts"
    assert (
        active["direct"] == "fell back to Home Assistant's stream: no stream source: camera offline"
    )
    assert not _direct_threads()
    assert await viewer.select(SessionCommand.END) == {}
    await viewer.close()
