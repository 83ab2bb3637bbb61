"""Recording turned on while the setup probe's stream is stopping still gets a prebuffer.

Real stack: a live camera (MPEG-TS over TCP, joined mid-GOP), HA's real stream worker, the
setup probe, the real HAP server paired with the hub emulator. The probe ends at the first
GOP and stops the worker; if the hub turns recording on while that stop is still joining the
worker thread (a user pairing quickly), the worker's own clean-up used to remove the provider
just added, leaving no prebuffer until the 15 s watchdog. Here the camera stalls right at the
probe's first GOP, so the worker's stop lasts until the test resumes the camera, and the
watchdog is pushed out of reach: only a correct start gives a prebuffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Generator
import io
from pathlib import Path
from typing import Any
from unittest.mock import patch

import av
from homeassistant.components.camera.helper import get_camera_from_entity_id
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.media.fmp4 import build_fragment
from custom_components.hksv.source.prebuffer import PROVIDER_NAME
from tests import harness
from tests.conftest import CAMERA_ID, MOTION_ID
from tests.e2e.live_source import LiveFeedSource
from tests.harness import STREAM_DEFAULTS, clip_file, live_camera
from tests.hub.emulator import HomeHub, media_seconds
from tests.media import ClipSpec, read_frame_counter
from tests.ports import free_port

FPS = 25
CLIP = ClipSpec(seconds=40.0, fps=FPS, gop_seconds=2.0)
PREBUFFER_S = 4.0


# A fresh install (the camera is probed at startup), no doorbell.
known_source = harness.probe_at_startup
with_doorbell = harness.no_doorbell


@pytest.fixture(autouse=True)
def no_watchdog_rescue() -> Generator[None]:
    """Keep the prebuffer's watchdog from re-attaching within the test."""
    with patch("custom_components.hksv.source.attachment.WATCHDOG_INTERVAL_SECONDS", 3600):
        yield


@pytest.fixture
async def camera_feed(
    hass: HomeAssistant, socket_enabled: None, tmp_path: Path
) -> AsyncGenerator[LiveFeedSource]:
    """A 2 s-GOP live camera, and `stream` set up."""
    clip = await clip_file(hass, tmp_path, CLIP)
    feed = LiveFeedSource(clip, free_port())
    async with live_camera(hass, feed, stream_config=STREAM_DEFAULTS) as source:
        yield source
        source.resume()


@pytest.fixture
def stream_source(camera_feed: LiveFeedSource) -> str:
    """Point the test camera at the feed."""
    return camera_feed.url


@pytest.fixture
async def hub(init_integration: MockConfigEntry, session_keys: None) -> AsyncGenerator[HomeHub]:
    """A hub, not paired yet."""
    hub = HomeHub(init_integration.runtime_data.port)
    yield hub
    await hub.close()


async def _wait_for(condition: Any, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


def _gop_counters(gop: Any) -> list[int]:
    tracks = [(gop.init.video.track_id, gop.video[0].decode_time, gop.video)]
    return _counters([gop.init.without_audio().data, build_fragment(1, tracks)])


async def _newest_counter(hass: HomeAssistant, prebuffer: Any) -> int:
    """Return the frame counter of the newest frame the prebuffer holds now."""
    view = prebuffer.open_live()
    view.unsubscribe()
    newest = view.pending or view.history[-1]
    counters: list[int] = await hass.async_add_executor_job(_gop_counters, newest)
    return counters[-1]


def _timed_counters(packets: list[bytes]) -> list[tuple[int, float]]:
    """Return (frame counter, presentation time) of every frame of a clip."""
    with av.open(io.BytesIO(b"".join(packets))) as container:
        return [
            (read_frame_counter(frame), float(frame.time or 0.0))
            for frame in container.decode(video=0)
        ]


def _counters(packets: list[bytes]) -> list[int]:
    with av.open(io.BytesIO(b"".join(packets))) as container:
        return [read_frame_counter(frame) for frame in container.decode(video=0)]


async def test_recording_enabled_while_the_probe_stops_gets_a_prebuffer(
    hass: HomeAssistant,
    camera_feed: LiveFeedSource,
    init_integration: MockConfigEntry,
    hub: HomeHub,
) -> None:
    """The prebuffer runs at once and a clip has its full pre-roll, reported as sent."""
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    # The camera hangs right when the probe gets its first GOP: the probe then stops the
    # worker, which stays blocked in its read until the camera resumes.
    stall = prebuffer.subscribe(lambda _gop: camera_feed.stall())
    await hub.pair(bridge.setup_code)
    await _wait_for(lambda: "source" in bridge._stored)  # the probe is done, its stop running
    stall()
    assert not prebuffer.running

    await hub.enable_recording(await hub.select_from_offer())
    await hass.async_block_till_done(wait_background_tasks=False)
    camera_feed.resume()

    # Recording is possible: the prebuffer runs, attached to the camera's stream, and fills.
    await _wait_for(lambda: prebuffer.buffered_seconds >= PREBUFFER_S + 2)
    camera = get_camera_from_entity_id(hass, CAMERA_ID)
    assert camera.stream is not None
    assert PROVIDER_NAME in camera.stream.outputs()
    parts = prebuffer.parts_received
    await asyncio.sleep(3)
    assert prebuffer.parts_received > parts

    before_open = await _newest_counter(hass, prebuffer)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client = await hub.open_data_stream()
    client.timeout = 60
    assert (await client.open_recording(1)).status == 0
    # The open lands somewhere between these two frames: on a loaded machine setting up the
    # data stream can take longer than a part, so neither alone is "the newest at the open".
    after_open = await _newest_counter(hass, prebuffer)
    recording = client.recordings[1]
    await client.wait_until(lambda: media_seconds(recording) >= PREBUFFER_S + 4)
    client.close_stream(1, 0)
    await client.close()
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await hass.async_block_till_done()
    summary = bridge.recorder.last_recording
    assert summary.error is None
    # The clip starts with the pre-roll the hub asked for, and Last recording reports what
    # the clip holds from before the open (up to the frame that was newest at the open).
    assert summary.prebuffer_seconds >= PREBUFFER_S
    frames = await hass.async_add_executor_job(_timed_counters, recording.complete_packets)
    times = dict(reversed(frames))

    # In media time: a transcoded clip may drop a frame here and there.
    def sent_up_to(counter: int) -> float:
        return times[counter] - frames[0][1] + 1 / FPS

    assert sent_up_to(before_open) - 0.5 <= summary.prebuffer_seconds
    assert summary.prebuffer_seconds <= sent_up_to(after_open) + 0.5
