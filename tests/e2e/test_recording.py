"""Motion to a finished HKSV clip, end to end on the real stack.

A generated clip (frame counter in every picture) is served in real time over TCP like a
camera; Home Assistant's real stream worker reads it; hksv's prebuffer keeps its GOPs; the
real HAP server is paired with aiohomekit; motion in HA makes the home-hub emulator open an
HDS recording stream; the clip it receives is checked by decoding it with PyAV.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from datetime import timedelta
import io
from itertools import pairwise
import threading
from typing import Any

import av
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
)

from custom_components.hksv.const import OPT_VIDEO_MODE
from custom_components.hksv.events import EVENT_RECORDING_FINISHED
from custom_components.hksv.issues import copy_issue_id
from custom_components.hksv.media.fmp4 import (
    InitSegment,
    build_fragment,
    iter_boxes,
    parse_fragments,
    parse_init,
)
from custom_components.hksv.media.h264 import H264_LEVEL_IDC, H264Profile
from custom_components.hksv.recording.mode import ReasonCode
from custom_components.hksv.source.attachment import WATCHDOG_INTERVAL_SECONDS
from tests import harness
from tests.conftest import MOTION_ID, FakeCamera
from tests.e2e.source import PacedSource
from tests.harness import assert_fragments_contiguous, clip_file, live_camera, recording_hub
from tests.hub.emulator import HomeHub, media_seconds
from tests.hub.hds_client import Recording
from tests.media import ClipSpec, read_frame_counter
from tests.ports import free_port

FPS = 25
AVC_PROFILE_IDC = {H264Profile.BASELINE: 66, H264Profile.MAIN: 77, H264Profile.HIGH: 100}
CLIP_SECONDS = 40.0
CLIP_FRAMES = int(CLIP_SECONDS * FPS)
FRAGMENT_MS = 4000
PREBUFFER_S = 4.0
# How much live video (after the event) each test records before the hub closes.
LIVE_SECONDS = 8.0


@dataclass(frozen=True)
class Case:
    """One camera to record."""

    spec: ClipSpec
    ll_hls: bool = True
    audio: bool = True  # RecordingAudioActive
    mode: str = "copy"  # what the recorder should decide (RecordingSummary.mode)

    @property
    def copies_video(self) -> bool:
        """Return True if the camera's frames go through untouched."""
        return self.mode != "transcode"


COPY_2S = ClipSpec(seconds=CLIP_SECONDS, fps=FPS, gop_seconds=2.0)
CASES = {
    "h264_2s_gop_ll_hls_copy": Case(COPY_2S),
    "h264_2s_gop_non_ll_copy": Case(COPY_2S, ll_hls=False),
    "h264_2s_gop_audio_off": Case(COPY_2S, audio=False),
    "h264_8s_gop_transcode": Case(
        ClipSpec(seconds=CLIP_SECONDS, fps=FPS, gop_seconds=8.0), mode="transcode"
    ),
    "h265_transcode": Case(
        ClipSpec(seconds=CLIP_SECONDS, fps=FPS, gop_seconds=2.0, video_codec="hevc"),
        mode="transcode",
    ),
    "no_audio_silent_track": Case(
        ClipSpec(seconds=CLIP_SECONDS, fps=FPS, gop_seconds=2.0, audio_codec=None),
        mode="copy video, encode audio",
    ),
}


@pytest.fixture
def case(request: pytest.FixtureRequest) -> Case:
    """Return the parametrized case."""
    return CASES[request.param]


# A fresh install (the camera is probed at startup), no doorbell.
known_source = harness.probe_at_startup
with_doorbell = harness.no_doorbell


@pytest.fixture
async def paced_source(
    hass: HomeAssistant, socket_enabled: None, case: Case, tmp_path_factory: pytest.TempPathFactory
) -> AsyncGenerator[PacedSource]:
    """Serve the case's clip in real time, and set up `stream` in the case's HLS mode."""
    clip = await clip_file(hass, tmp_path_factory.getbasetemp() / "clips", case.spec)
    stream_config = {"stream": {"ll_hls": case.ll_hls}}
    async with live_camera(
        hass, PacedSource(clip, free_port()), stream_config=stream_config
    ) as source:
        yield source


@pytest.fixture
def stream_source(paced_source: PacedSource) -> str:
    """Point the test camera at the paced source."""
    return paced_source.url


@pytest.fixture
async def home_hub(
    init_integration: MockConfigEntry, session_keys: None, case: Case
) -> AsyncGenerator[HomeHub]:
    """Pair a hub, wait for the camera probe, select from the offer, enable recording."""
    async with recording_hub(init_integration.runtime_data, audio=case.audio) as hub:
        await hub.subscribe(hub.iid("85", "22"))
        yield hub


async def _wait_for_prebuffer(bridge: Any, seconds: float) -> None:
    """Wait until the prebuffer holds ``seconds`` of complete GOPs."""
    async with asyncio.timeout(90):
        while bridge.recorder.prebuffer.buffered_seconds < seconds:
            await asyncio.sleep(0.2)


def _newest_counter(gops: list[Any]) -> int:
    """Decode the newest buffered GOP and return its last frame counter (the event time)."""
    gop = gops[-1]
    tracks = [(gop.init.video.track_id, gop.video[0].decode_time, gop.video)]
    data = gop.init.without_audio().data + build_fragment(1, tracks)
    with av.open(io.BytesIO(data)) as container:
        return [read_frame_counter(frame) for frame in container.decode(video=0)][-1]


async def _record_event(hass: HomeAssistant, bridge: Any, hub: HomeHub) -> tuple[Recording, int]:
    """Fire motion, let the hub record LIVE_SECONDS past the event, then close it."""
    await _wait_for_prebuffer(bridge, PREBUFFER_S + 2)
    event_counter = await hass.async_add_executor_job(
        _newest_counter, list(bridge.recorder.prebuffer.gops)
    )
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    assert await hub.next_event(hub.iid("85", "22")) is True
    client = await hub.open_data_stream()
    client.timeout = 90
    response = await client.open_recording(1)
    assert response.status == 0
    recording = client.recordings[1]
    await client.wait_until(lambda: media_seconds(recording) >= PREBUFFER_S + LIVE_SECONDS)
    client.close_stream(1, 0)
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await client.close()
    await hass.async_block_till_done()
    return recording, event_counter


@dataclass
class Checked:
    """What the checks found, for case-specific assertions."""

    init: InitSegment
    counters: list[int]
    fragment_ms: list[float]


def _check_clip(recording: Recording, case: Case, event_counter: int, selection: Any) -> Checked:
    """Check every HKSV rule on the received clip and return what it held."""
    chunks = recording.chunks
    assert chunks[0].metadata["dataType"] == "mediaInitialization"
    assert all(c.metadata["dataType"] == "mediaFragment" for c in chunks[1:])
    packets = recording.complete_packets
    init = parse_init(packets[0])
    video = init.video
    assert video is not None
    assert video.codec == "avc1"
    assert video.level_idc is not None
    assert video.level_idc <= 40
    chosen = selection.video.attributes[0]
    assert video.width <= chosen.width
    assert video.height <= chosen.height
    if case.mode == "transcode":
        # Re-encoded video carries the selected profile, at most the selected level.
        assert video.profile_idc == AVC_PROFILE_IDC[selection.video.parameters.profiles[0]]
        assert video.level_idc <= H264_LEVEL_IDC[selection.video.parameters.levels[0]]
    if case.audio:
        assert init.audio is not None
        assert init.audio.object_type == 2  # AAC-LC
        wanted = selection.audio.parameters
        assert init.audio.sample_rate == wanted.sample_rates[0].hertz
        assert init.audio.channels == wanted.channels
    else:
        assert init.audio is None

    durations = []
    expected_start = 0
    for index, fragment in enumerate(packets[1:]):
        boxes = [box.type for box in iter_boxes(fragment)]
        assert boxes == [b"moof", b"mdat"], index
        samples = parse_fragments(fragment, init)[video.track_id]
        assert samples[0].is_sync, index
        start = samples[0].decode_time
        if index == 0:
            assert start / video.timescale < 0.1  # starts near 0
        else:
            # Monotonic and contiguous from the prebuffer into live, across restarts.
            assert abs(start - expected_start) <= video.timescale // 50, index
        duration = sum(s.duration for s in samples)
        expected_start = start + duration
        durations.append(duration * 1000 / video.timescale)
        assert durations[-1] <= FRAGMENT_MS + 20, index
        with av.open(io.BytesIO(packets[0] + fragment)) as container:
            first_frame = next(container.decode(video=0))
            assert first_frame.key_frame, index
            if case.audio:
                assert container.streams.audio
    if case.mode == "copy":
        assert all(abs(d - FRAGMENT_MS) <= 20 for d in durations[:-1])  # 2 s GOPs, grouped

    with av.open(io.BytesIO(b"".join(packets))) as container:
        counters = [read_frame_counter(frame) for frame in container.decode(video=0)]
    assert len(counters) >= (PREBUFFER_S + LIVE_SECONDS) * FPS * 0.9
    # The clip holds at least the prebuffer length of video up to and including the event frame.
    assert (event_counter + 1 - counters[0]) % CLIP_FRAMES >= PREBUFFER_S * FPS
    steps = [(b - a) % CLIP_FRAMES for a, b in pairwise(counters)]
    if case.copies_video:
        assert set(steps) == {1}
    else:
        assert all(1 <= step <= 2 for step in steps)
    return Checked(init, counters, durations)


@pytest.mark.parametrize("case", list(CASES), indirect=True)
async def test_motion_records_a_clip(
    hass: HomeAssistant, init_integration: MockConfigEntry, home_hub: HomeHub, case: Case
) -> None:
    """Each camera kind is recorded as a valid HKSV clip starting before the event."""
    bridge = init_integration.runtime_data
    recording, event_counter = await _record_event(hass, bridge, home_hub)
    selection = bridge.accessory.selection
    _check_clip(recording, case, event_counter, selection)
    summary = bridge.recorder.last_recording
    assert summary is not None
    assert summary.outcome.value == "completed"
    assert summary.hub_close_reason == "NORMAL"
    assert summary.mode == case.mode
    assert summary.fragments >= len(recording.complete_packets) - 1
    assert summary.first_data_ms is not None  # measured in benchmarks/, not asserted here
    state = hass.states.get("sensor.front_door_last_recording")
    assert state.state == "completed"
    assert state.attributes["fragments"] == summary.fragments
    # The clip is over: its transcoder (if any) and every thread it or its codecs made are gone.
    async with asyncio.timeout(30):
        while leftover := _transcode_threads():
            await asyncio.sleep(0.1)
    assert leftover == []


def _transcode_threads() -> list[str]:
    """Return the names of live threads a recording transcode made (codec threads inherit it)."""
    return [t.name for t in threading.enumerate() if t.name.startswith("hksv-transcode")]


@pytest.mark.parametrize("case", ["h264_2s_gop_ll_hls_copy"], indirect=True)
async def test_source_restart_mid_event(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    paced_source: PacedSource,
    case: Case,
) -> None:
    """The camera dropping mid-event: the clip goes on after the worker reconnects."""
    bridge = init_integration.runtime_data
    await _wait_for_prebuffer(bridge, PREBUFFER_S + 2)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client = await home_hub.open_data_stream()
    client.timeout = 90
    assert (await client.open_recording(1)).status == 0
    recording = client.recordings[1]
    await client.wait_until(lambda: media_seconds(recording) >= PREBUFFER_S + 4)
    restarts = bridge.recorder.prebuffer.stream_restarts
    await paced_source.restart()
    async with asyncio.timeout(60):
        while bridge.recorder.prebuffer.stream_restarts == restarts:
            await asyncio.sleep(0.2)
    before = media_seconds(recording)
    await client.wait_until(lambda: media_seconds(recording) >= before + 8)
    client.close_stream(1, 0)
    await client.close()
    packets = recording.complete_packets
    assert_fragments_contiguous(packets)
    with av.open(io.BytesIO(b"".join(packets))) as container:
        counters = [read_frame_counter(frame) for frame in container.decode(video=0)]
    # The reconnected camera starts its clip again: exactly one jump back, then 4+ s of it.
    jumps = [i for i, (a, b) in enumerate(pairwise(counters)) if b <= a]
    assert len(jumps) == 1
    assert len(counters) - jumps[0] > 4 * FPS
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})


@pytest.mark.parametrize("case", ["h264_8s_gop_transcode"], indirect=True)
@pytest.mark.parametrize("entry_options", [{OPT_VIDEO_MODE: "copy"}])
async def test_copy_only_raises_a_repair(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    case: Case,
    entry_options: dict[str, Any],
) -> None:
    """Copy-only with an 8 s GOP camera: the clip is copied and a repair says what to fix."""
    bridge = init_integration.runtime_data
    finished = async_capture_events(hass, EVENT_RECORDING_FINISHED)
    await _wait_for_prebuffer(bridge, 8)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client = await home_hub.open_data_stream()
    client.timeout = 90
    assert (await client.open_recording(1)).status == 0
    await client.wait_until(lambda: len(client.recordings[1].complete_packets) >= 2)
    client.close_stream(1, 0)
    await client.close()
    issue_id = copy_issue_id(init_integration.entry_id, ReasonCode.KEYFRAME_INTERVAL)
    issue = ir.async_get(hass).async_get_issue("hksv", issue_id)
    assert issue is not None and issue.is_fixable
    assert issue.translation_key == "copy_keyframe_interval"
    assert issue.translation_placeholders["interval"] == "8 s"
    assert issue.translation_placeholders["fragment"] == "4 s"
    assert bridge.recorder.last_recording.mode == "copy"
    async with asyncio.timeout(30):
        while not finished:
            await asyncio.sleep(0.05)
    assert finished[0].data["mode"] == "copy"
    assert finished[0].data["duration"] >= 4.0
    assert finished[0].data["outcome"] == "completed"
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})


@pytest.mark.parametrize("case", ["h264_2s_gop_ll_hls_copy"], indirect=True)
async def test_camera_entity_reload_reattaches(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    fake_camera: FakeCamera,
    case: Case,
) -> None:
    """A camera entity that comes back with a new Stream gets the prebuffer back, once."""
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    await _wait_for_prebuffer(bridge, 2)
    old = fake_camera.stream
    assert old is not None
    assert "hksv" in old.outputs()
    fake_camera.stream = None  # what a reloaded camera entity looks like to us
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=WATCHDOG_INTERVAL_SECONDS))
    async with asyncio.timeout(30):
        while fake_camera.stream is None or "hksv" not in fake_camera.stream.outputs():
            await asyncio.sleep(0.1)
    assert fake_camera.stream is not old
    assert "hksv" not in old.outputs()
    parts = prebuffer.parts_received
    async with asyncio.timeout(60):
        while prebuffer.parts_received < parts + 3:
            await asyncio.sleep(0.2)
    # Parts come from the new Stream only (the old worker was stopped with our provider).
    assert not old._thread or not old._thread.is_alive()
