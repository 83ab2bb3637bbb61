"""Short LL-HLS parts for the streams hksv serves, and only those (issue 16, item 1).

Real stack: a paced live feed, Home Assistant's real stream worker with its default LL-HLS
settings (1 s parts), two camera entities on the same feed, and the hksv entry on one of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
from pathlib import Path
from statistics import median
from typing import Any
from unittest.mock import patch

from homeassistant.components.stream.const import ATTR_SETTINGS, DOMAIN as STREAM_DOMAIN
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    setup_test_component_platform,
)

from custom_components.hksv.const import DEFAULT_OPTIONS, OPT_LIVE_SHORT_PARTS
from custom_components.hksv.source.part import MediaPart
from custom_components.hksv.source.prebuffer import SHORT_PART_SECONDS
from tests import harness
from tests.conftest import CAMERA_ID, MOTION_ID, FakeCamera, free_port
from tests.e2e.live_source import LiveFeedSource
from tests.media import ClipSpec, write_clip

CLIP = ClipSpec(seconds=30.0, fps=25, gop_seconds=2.0)
OTHER_CAMERA_ID = "camera.back_yard"


@pytest.fixture
def known_source() -> dict[str, Any]:
    """The camera's format is known: no probe."""
    return harness.stored_format(CLIP)


with_doorbell = harness.no_doorbell


@pytest.fixture
async def live_feed(
    hass: HomeAssistant, socket_enabled: None, tmp_path: Path
) -> AsyncGenerator[LiveFeedSource]:
    """Serve a 2 s-GOP clip as a live feed; `stream` with HA's default settings (1 s parts)."""
    clip = await hass.async_add_executor_job(write_clip, tmp_path / "clip.ts", CLIP)
    assert await async_setup_component(hass, "stream", {})
    source = LiveFeedSource(clip, free_port())
    await source.start()
    with patch("homeassistant.components.stream.STREAM_RESTART_INCREMENT", 1):
        yield source
    await source.stop()


@pytest.fixture
def stream_source(live_feed: LiveFeedSource) -> str:
    """Point the test cameras at the live feed."""
    return live_feed.url


@pytest.fixture
async def cameras(hass: HomeAssistant, stream_source: str) -> tuple[FakeCamera, FakeCamera]:
    """Set up two cameras on the same feed: hksv serves the first only."""
    served = FakeCamera(CAMERA_ID, stream_source)
    other = FakeCamera(OTHER_CAMERA_ID, stream_source)
    other._attr_name = "Back yard"
    other._attr_unique_id = "back-yard-camera"
    setup_test_component_platform(hass, "camera", [served, other])
    assert await async_setup_component(hass, "camera", {"camera": {"platform": "test"}})
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await hass.async_block_till_done()
    return served, other


@pytest.fixture
def fake_camera(cameras: tuple[FakeCamera, FakeCamera]) -> FakeCamera:
    """The camera hksv serves."""
    return cameras[0]


async def _wait_for(condition: Callable[[], Any], timeout: float = 90) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.1)


async def _part_seconds(prebuffer: Any, count: int) -> list[float]:
    """Return the video duration of the next ``count`` parts HA's worker delivers."""
    durations: list[float] = []

    def on_part(part: MediaPart) -> None:
        assert part.init.video is not None
        durations.append(sum(s.duration for s in part.video) / part.init.video.timescale)

    view = prebuffer.open_live(on_part=on_part)
    try:
        await _wait_for(lambda: len(durations) >= count)
    finally:
        view.unsubscribe()
    return durations


async def _start_prebuffer(init_integration: MockConfigEntry) -> Any:
    """Run the prebuffer (as recording or live view would) and wait for video."""
    prebuffer = init_integration.runtime_data.recorder.prebuffer
    await prebuffer.async_start()
    await _wait_for(lambda: prebuffer.buffered_seconds >= 2)
    return prebuffer


async def test_short_parts_only_on_the_served_camera_and_restored_on_unload(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    cameras: tuple[FakeCamera, FakeCamera],
) -> None:
    """The served camera's Stream cuts 0.3 s parts; HA's global settings and the other
    camera's Stream keep 1 s; unloading the entry gives the Stream its own settings back.
    """
    served, other = cameras
    prebuffer = await _start_prebuffer(init_integration)
    stream = served.stream
    assert stream is not None
    settings = stream._stream_settings
    assert settings.part_target_duration == SHORT_PART_SECONDS
    assert settings.hls_advance_part_limit == 10
    assert settings.hls_part_timeout == pytest.approx(2 * SHORT_PART_SECONDS)
    assert prebuffer.diagnostics()["part_target_seconds"] == SHORT_PART_SECONDS
    # HA's worker really cuts short parts (ffmpeg cuts near the target, now and then later).
    durations = await _part_seconds(prebuffer, 12)
    assert median(durations) <= SHORT_PART_SECONDS * 1.2
    assert sum(durations) / len(durations) <= SHORT_PART_SECONDS * 1.5

    # Nothing else changed: HA's own settings and a Stream of another camera.
    global_settings = hass.data[STREAM_DOMAIN][ATTR_SETTINGS]
    assert global_settings.part_target_duration == 1.0
    other_stream = await other.async_create_stream()
    assert other_stream is not None
    assert other_stream is not stream
    assert other_stream._stream_settings.part_target_duration == 1.0

    await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert settings.part_target_duration == 1.0
    assert settings.hls_advance_part_limit == 3
    assert settings.hls_part_timeout == pytest.approx(2.0)


@pytest.mark.parametrize("entry_options", [{**DEFAULT_OPTIONS, OPT_LIVE_SHORT_PARTS: False}])
async def test_short_parts_option_off_leaves_the_stream_alone(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_camera: FakeCamera,
    entry_options: dict[str, Any],
) -> None:
    """With the option off, the camera's Stream keeps HA's 1 s parts."""
    prebuffer = await _start_prebuffer(init_integration)
    stream = fake_camera.stream
    assert stream is not None
    assert stream._stream_settings.part_target_duration == 1.0
    assert prebuffer.diagnostics()["part_target_seconds"] is None
    durations = await _part_seconds(prebuffer, 4)
    assert median(durations) >= 0.8
