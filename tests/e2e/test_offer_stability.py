"""The recording offer does not follow the camera's frame rate (issue 13, item 1), real stack.

A camera runs 30 fps, then 15 fps (night), then 30 fps again, dropping frames at random
throughout (``NightModeFeed``, joined mid-GOP by Home Assistant's real stream worker). The hub
(the aiohomekit emulator, real HAP and HDS over TCP) selects once and never again, like a hub
that missed a change. A motion event in each phase must record, copied at the rate the camera
sends, with the full pre-roll: no offer change, no refused open, no new selection needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
import io
import logging

import av
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.hksv.const import DOMAIN
from custom_components.hksv.events import EVENT_RECORDING_FINISHED
from custom_components.hksv.source.gop import Gop
from tests import harness
from tests.conftest import MOTION_ID, free_port
from tests.e2e.night_mode_source import FrameRateSchedule, NightModeFeed, Phase, write_schedule_clip
from tests.harness import live_camera
from tests.hub.emulator import HomeHub, media_seconds
from tests.media import read_frame_counter

PREBUFFER_S = 4.0
LIVE_S = 4.0
# Day, night, day; about 4 % of the frames lost at random in each (28.8 fps by day).
SCHEDULE = FrameRateSchedule(
    phases=(Phase(30, 60.0, drop=0.04), Phase(15, 50.0, drop=0.04), Phase(30, 50.0, drop=0.04))
)


@pytest.fixture
async def night_feed(
    hass: HomeAssistant, socket_enabled: None, tmp_path_factory: pytest.TempPathFactory
) -> AsyncGenerator[NightModeFeed]:
    """Serve the day/night schedule as a live feed and set up `stream` (LL-HLS)."""
    path = tmp_path_factory.mktemp("night") / "night.ts"
    clip = await hass.async_add_executor_job(write_schedule_clip, path, SCHEDULE)
    async with live_camera(hass, NightModeFeed(clip, SCHEDULE, free_port())) as feed:
        yield feed


@pytest.fixture
def stream_source(night_feed: NightModeFeed) -> str:
    """Point the test camera at the feed."""
    return night_feed.url


known_source = harness.probe_at_startup
with_doorbell = harness.no_doorbell
home_hub = harness.hub_recording_from_offer


async def _wait_for(condition: Callable[[], bool], timeout: float = 200) -> None:
    """Wait until ``condition()`` holds (generous: real time on a loaded machine)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.2)


def _gop_fps(gop: Gop) -> float:
    """Return the frame rate one GOP shows."""
    return len(gop.video) / gop.duration_seconds


def _steady_at(gops: list[Gop], low: float, high: float) -> bool:
    """Return True if the buffered pre-roll (plus a GOP) comes only from one phase."""
    if sum(g.duration_seconds for g in gops) < PREBUFFER_S + 2:
        return False
    return all(low <= _gop_fps(g) <= high for g in gops)


def _decoded_rate(packets: list[bytes]) -> tuple[int, float, list[int]]:
    """Return frames, their rate over the clip and their counters, by decoding the clip."""
    with av.open(io.BytesIO(b"".join(packets))) as container:
        frames = list(container.decode(video=0))
    seconds = float((frames[-1].pts - frames[0].pts) * frames[0].time_base)
    counters = [read_frame_counter(frame) for frame in frames]
    return len(frames), (len(frames) - 1) / seconds, counters


async def test_frame_rate_changes_keep_the_offer_and_the_selection(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    night_feed: NightModeFeed,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Day, night, day with dropped frames: every event records with its pre-roll, copied."""
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    fingerprint = bridge.accessory.offer.fingerprint
    selected = await home_hub.read(home_hub.iid("204", "209"))
    finished = async_capture_events(hass, EVENT_RECORDING_FINISHED)

    phases = [(25.0, 31.0), (13.0, 16.0), (25.0, 31.0)]  # day, night, day: per-GOP fps

    def steady(low: float, high: float) -> bool:
        # A prebuffer that stopped (the selection was dropped) has lost the pre-roll.
        assert prebuffer.running, "the prebuffer stopped: the hub's selection was dropped"
        return _steady_at(list(prebuffer.gops), low, high)

    for stream_id, (low, high) in enumerate(phases, 1):
        await _wait_for(lambda low=low, high=high: steady(low, high))
        hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
        client = await home_hub.open_data_stream()
        client.timeout = 90
        response = await client.open_recording(stream_id)
        assert response.status == 0, (stream_id, response)
        recording = client.recordings[stream_id]
        await client.wait_until(lambda r=recording: media_seconds(r) >= PREBUFFER_S + LIVE_S)
        client.close_stream(stream_id, 0)
        await client.close()
        hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
        await _wait_for(lambda: not bridge.recorder.streaming, timeout=60)

        summary = bridge.recorder.last_recording
        assert summary.stream_id == stream_id
        assert summary.outcome.value == "completed"
        assert summary.mode == "copy", summary.mode_reasons
        assert summary.prebuffer_seconds >= PREBUFFER_S  # the full pre-roll
        count, rate, counters = await hass.async_add_executor_job(
            _decoded_rate, recording.complete_packets
        )
        print(
            f"event {stream_id}: {count} frames copied at {rate:.2f} fps, "
            f"pre-roll {summary.prebuffer_seconds:.2f} s, {summary.media_seconds:.1f} s of video"
        )
        # Copied: the camera's own frames at the camera's own rate, in order.
        assert low - 1 <= rate <= high, (stream_id, rate)
        assert counters == sorted(counters)
        assert len(set(counters)) == count
        # Nothing a hub must know changed: same offer, same selection.
        assert bridge.accessory.offer.fingerprint == fingerprint
        assert await home_hub.read(home_hub.iid("204", "209")) == selected
        assert hass.states.get("sensor.front_door_last_recording").state == "completed"

    assert [event.data["outcome"] for event in finished] == ["completed"] * 3
    assert bridge.data_stream.diagnostics()["opens_rejected"] == 0
    assert not any(
        "recording offer changed" in record.getMessage()
        for record in caplog.records
        if record.levelno >= logging.INFO
    )
    registry = ir.async_get(hass)
    assert not [
        issue for (domain, issue) in registry.issues if domain == DOMAIN and "recording" in issue
    ]
