"""A camera whose keyframes are further apart than HA's output idle timeout keeps its prebuffer.

Real stack: a paced live feed with long GOPs, Home Assistant's real stream worker. HA removes
an output whose idle timer runs out; segments end only at keyframes, so an output woken per
segment idles out in the middle of a long GOP (docs/home-assistant.md §1.8). The idle timeout
is shortened below the GOP here (HA's is 30 s) and the watchdog is pushed out of reach, so only
an output that parts keep awake stays attached.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Generator
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.source import attachment as attachment_module
from custom_components.hksv.source.prebuffer import PROVIDER_NAME
from tests import harness
from tests.conftest import FakeCamera, free_port
from tests.e2e.live_source import LiveFeedSource
from tests.media import ClipSpec, write_clip

CLIP = ClipSpec(seconds=40.0, fps=10, gop_seconds=6.0)
IDLE_TIMEOUT_SECONDS = 2  # HA's is 30 s; well below this clip's 6 s GOP


@pytest.fixture
def known_source() -> dict[str, Any]:
    """The camera's format is known: no probe."""
    return harness.stored_format(CLIP)


with_doorbell = harness.no_doorbell


@pytest.fixture(autouse=True)
def short_idle_timeout_and_no_watchdog() -> Generator[None]:
    """HA's output idle timeout below the GOP; no watchdog to hide a removed provider."""
    with (
        patch("homeassistant.components.stream.OUTPUT_IDLE_TIMEOUT", IDLE_TIMEOUT_SECONDS),
        patch.object(attachment_module, "WATCHDOG_INTERVAL_SECONDS", 24 * 3600),
    ):
        yield


@pytest.fixture
async def live_feed(
    hass: HomeAssistant, socket_enabled: None, tmp_path: Path
) -> AsyncGenerator[LiveFeedSource]:
    """Serve the long-GOP clip as a live feed."""
    clip = await hass.async_add_executor_job(write_clip, tmp_path / "clip.ts", CLIP)
    assert await async_setup_component(hass, "stream", {})
    source = LiveFeedSource(clip, free_port())
    await source.start()
    yield source
    await source.stop()


@pytest.fixture
def stream_source(live_feed: LiveFeedSource) -> str:
    """Point the test camera at the live feed."""
    return live_feed.url


async def _wait_for(condition: Callable[[], Any], timeout: float = 90) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.1)


async def test_parts_keep_the_output_attached_through_a_long_gop(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_camera: FakeCamera
) -> None:
    """Parts keep flowing for three GOPs; the provider is never removed or re-added."""
    prebuffer = init_integration.runtime_data.recorder.prebuffer
    await prebuffer.async_start()
    await _wait_for(lambda: prebuffer.has_keyframe)  # the first segment is open
    stream = fake_camera.stream
    assert stream is not None
    output = stream.outputs()[PROVIDER_NAME]
    parts = prebuffer.parts_received
    for _ in range(3):
        await asyncio.sleep(CLIP.gop_seconds)
        assert stream.outputs().get(PROVIDER_NAME) is output, "the provider idled out"
        assert prebuffer.parts_received > parts, "parts stopped"
        parts = prebuffer.parts_received
    assert prebuffer.reattachments == 0


async def test_an_output_dropped_in_a_camera_outage_is_attached_again_at_once(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    fake_camera: FakeCamera,
    live_feed: LiveFeedSource,
) -> None:
    """The camera goes quiet past HA's idle timeout: HA drops the output, hksv re-adds it.

    Without the watchdog (out of reach here), nothing else would: the camera, back, would
    stay unused until the watchdog's next round (up to 15 s in a real install).
    """
    prebuffer = init_integration.runtime_data.recorder.prebuffer
    await prebuffer.async_start()
    await _wait_for(lambda: prebuffer.has_keyframe)
    stream = fake_camera.stream
    assert stream is not None
    output = stream.outputs()[PROVIDER_NAME]
    live_feed.stall()
    await _wait_for(lambda: prebuffer.reattachments == 1)
    await _wait_for(lambda: stream.outputs().get(PROVIDER_NAME) is not None)
    assert stream.outputs()[PROVIDER_NAME] is not output
    assert prebuffer.attached
    live_feed.resume()
    parts = prebuffer.parts_received
    await _wait_for(lambda: prebuffer.parts_received > parts + 3, timeout=120)
    assert prebuffer.reattachments == 1
    await prebuffer.async_stop()
