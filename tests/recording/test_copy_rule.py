"""The copy rule: copy whenever every fragment can be cut on a keyframe within its length.

The shaper packs whole GOPs up to the selected fragment length and closes a fragment early
when the next GOP does not fit, so irregular GOPs (a camera that drops frames) copy fine; only
a GOP longer than the fragment length makes mode.py transcode (docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
import dataclasses
import logging
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from hypothesis import given, settings, strategies as st
import pytest

from custom_components.hksv.const import VIDEO_MODE_AUTO
from custom_components.hksv.hap.recording_config import SourceVideo, build_offer, parse_selection
from custom_components.hksv.media.fmp4 import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    InitSegment,
    Sample,
    VideoTrackInfo,
    parse_fragments,
    parse_init,
)
from custom_components.hksv.recording import recorder as recorder_module
from custom_components.hksv.recording.feed import CameraStreamLost, LiveFeed, MediaClock
from custom_components.hksv.recording.mode import ReasonCode, choose_mode
from custom_components.hksv.recording.shaper import (
    LENGTH_SLACK_MS,
    FragmentShaper,
    ShapedFragment,
    fits_fragment,
)
from custom_components.hksv.source.gop import Gop, profile_source
from tests.hub.emulator import choose_selection
from tests.recording.test_gop import audio
from tests.recording.test_recorder import _controller, _selection, clip_gops  # noqa: F401

FRAGMENT_MS = 4000
# A frame at 30 fps, in the 1000 Hz video timescale of the spec camera's init.
FRAME_MS = 33


def gop_of(init: InitSegment, start: int, frame_ms: Sequence[int], first_frame: int) -> Gop:
    """Return a GOP whose frames last ``frame_ms``; each frame's payload is its number."""
    samples = []
    time = start
    for index, duration in enumerate(frame_ms):
        samples.append(
            Sample(
                time,
                duration,
                4,
                NON_SYNC_SAMPLE_FLAGS if index else SYNC_SAMPLE_FLAGS,
                0,
                memoryview((first_frame + index).to_bytes(4)),
            )
        )
        time += duration
    length = time - start
    return Gop(0, init, samples, audio(start, time), start, length)


def gops_from(init: InitSegment, gops: Sequence[Sequence[int]]) -> list[Gop]:
    """Return back-to-back GOPs, each given as its frame durations (ms)."""
    out = []
    start = frames = 0
    for frame_ms in gops:
        gop = gop_of(init, start, frame_ms, frames)
        out.append(gop)
        start += gop.duration
        frames += len(frame_ms)
    return out


def frames_lasting(seconds: float, *, gap_frames: int = 0) -> list[int]:
    """Return the frame durations of a 30 fps GOP; a timestamp gap of ``gap_frames`` inside."""
    count = round(seconds * 1000 / FRAME_MS)
    durations = [FRAME_MS] * count
    durations[count // 2] += gap_frames * FRAME_MS
    return durations


def shape(init: InitSegment, gops: Sequence[Gop], fragment_ms: int) -> list[ShapedFragment]:
    """Push every GOP through a shaper, then flush."""
    shaper = FragmentShaper(fragment_ms, include_audio=True)
    out = [fragment for gop in gops for fragment in shaper.push(gop)]
    return out + shaper.flush()


def video_of(fragment: ShapedFragment, init: InitSegment) -> list[Sample]:
    """Return a fragment's video samples, read back from its bytes."""
    assert init.video is not None
    return parse_fragments(fragment.data, init)[init.video.track_id]


# -- the shaper ------------------------------------------------------------------------------


def test_a_longer_gop_after_a_regular_one_closes_the_fragment_early(
    spec_init: InitSegment,
) -> None:
    """2 s then 2.07 s with 4 s fragments: two fragments, each within 4 s, keyframe first."""
    gops = gops_from(spec_init, [[40] * 50, [40] * 50 + [70]])
    assert [g.duration for g in gops] == [2000, 2070]
    fragments = shape(spec_init, gops, FRAGMENT_MS)
    assert [f.duration_ms for f in fragments] == [2000, 2070]
    assert [f.gop_count for f in fragments] == [1, 1]
    for fragment in fragments:
        assert video_of(fragment, spec_init)[0].is_sync
        assert fragment.duration_ms <= FRAGMENT_MS
        assert not fragment.oversize


gop_frames = st.lists(st.integers(20, 100), min_size=1, max_size=120)


@settings(max_examples=200, deadline=None)
@given(
    gops=st.lists(gop_frames, min_size=1, max_size=24),
    fragment_ms=st.sampled_from([1000, 2000, 4000, 8000]),
)
def test_fragments_start_on_keyframes_fit_and_keep_every_frame(
    spec_init: InitSegment, gops: list[list[int]], fragment_ms: int
) -> None:
    """Any GOP lengths: keyframe-first fragments within the length; nothing dropped or moved."""
    source = gops_from(spec_init, gops)
    fragments = shape(spec_init, source, fragment_ms)
    every_gop_fits = all(fits_fragment(g.duration, fragment_ms) for g in source)
    sent: list[int] = []
    end = 0
    for fragment in fragments:
        samples = video_of(fragment, spec_init)
        assert samples[0].is_sync
        assert samples[0].decode_time == end  # back to back, from 0
        end = samples[-1].decode_time + samples[-1].duration
        assert fragment.duration_ms == end - samples[0].decode_time
        if every_gop_fits or fragment.gop_count > 1:
            assert fragment.duration_ms <= fragment_ms + LENGTH_SLACK_MS
        assert fragment.oversize == (not fits_fragment(fragment.duration_ms, fragment_ms))
        # No keyframe other than the first: a fragment is whole GOPs, and GOPs are not split.
        assert sum(s.is_sync for s in samples) == fragment.gop_count
        sent += [int.from_bytes(s.data) for s in samples]
    assert sent == list(range(sum(len(g) for g in gops)))
    assert end == sum(g.duration for g in source)
    audio_in = sum(len(g.audio) for g in source)
    assert spec_init.audio is not None
    audio_out = sum(
        len(parse_fragments(f.data, spec_init).get(spec_init.audio.track_id, [])) for f in fragments
    )
    assert audio_out == audio_in


@settings(max_examples=100, deadline=None)
@given(gops=st.lists(st.integers(1, 130), min_size=2, max_size=30))
def test_gops_are_packed_up_to_the_length(spec_init: InitSegment, gops: list[int]) -> None:
    """A fragment closes only when its next GOP would not fit with it (or one as long)."""
    source = gops_from(spec_init, [[FRAME_MS] * count for count in gops])
    fragments = shape(spec_init, source, FRAGMENT_MS)
    index = 0
    for fragment in fragments[:-1]:
        held = source[index : index + fragment.gop_count]
        index += fragment.gop_count
        following = source[index]
        longest_next = max(following.duration, held[-1].duration)
        assert not fits_fragment(fragment.duration_ms + longest_next, FRAGMENT_MS)


# -- the copy/transcode decision -------------------------------------------------------------


def _camera_selection() -> Any:
    """Return what a hub selects for a 720p30 camera (4 s fragments)."""
    offer = build_offer(
        SourceVideo(1280, 720, 30.0, "aac-lc", 32000, 1),
        max_height=720,
        prebuffer_ms=4000,
        doorbell=False,
    )
    selection = parse_selection(base64.b64decode(choose_selection(*offer.encoded)))
    assert selection.recording.media_container_configuration.parameters.fragment_length == 4000
    return selection


def _decide(spec_init: InitSegment, gops: Sequence[Sequence[int]]) -> Any:
    """Measure GOPs of the given frame durations and decide for a 720p H.264 4.0 camera."""
    profile = profile_source(gops_from(spec_init, gops))
    video = VideoTrackInfo(1, 1000, "avc1", 1280, 720, 77, 31, None)
    audio_track = spec_init.audio
    profile = dataclasses.replace(profile, video=video, audio=audio_track, video_bitrate_kbps=900)
    return choose_mode(
        profile,
        _camera_selection(),
        video_mode=VIDEO_MODE_AUTO,
        max_bitrate_kbps=2000,
        audio_on=True,
    )


@pytest.mark.parametrize(
    "gops",
    [
        # A Wi-Fi camera dropping two frames now and then: one GOP lasts 2.07 s.
        [frames_lasting(2.0)] * 4 + [frames_lasting(2.0, gap_frames=2)] + [frames_lasting(2.0)],
        # Every length between 2 s and 2.07 s, as measured on real feeds.
        [frames_lasting(2.0), [FRAME_MS] * 62, [FRAME_MS] * 61, frames_lasting(2.0)] * 2,
        # A constant 3 s GOP does not divide 4 s, but each fragment still holds one whole GOP.
        [frames_lasting(3.0)] * 5,
        # Scene-cut keyframes: 0.5 s to 4 s.
        [frames_lasting(s) for s in (2.0, 0.5, 4.0, 1.2, 3.3, 2.0, 2.0)],
    ],
    ids=["two_frame_gap", "2s_to_2.07s", "constant_3s", "scene_cuts"],
)
def test_irregular_gops_that_fit_are_copied(spec_init: InitSegment, gops: list[list[int]]) -> None:
    """No GOP longer than the fragment: copy, with no reason, however irregular."""
    decision = _decide(spec_init, gops)
    assert decision.reasons == ()
    assert decision.label == "copy"


def test_a_constant_gop_longer_than_the_fragment_is_transcoded(spec_init: InitSegment) -> None:
    """5 s GOPs with 4 s fragments: transcode, saying the keyframe interval is too long."""
    decision = _decide(spec_init, [[100] * 50] * 4)
    assert decision.label == "transcode"
    [reason] = decision.reasons
    assert reason.code is ReasonCode.KEYFRAME_INTERVAL
    assert reason.as_dict() == {"code": "keyframe_interval", "interval": "5 s", "fragment": "4 s"}
    assert reason.problem == "the keyframe interval (5 s) is longer than a 4 s fragment"


def test_one_gop_longer_than_the_fragment_is_transcoded(spec_init: InitSegment) -> None:
    """Mostly 2 s GOPs but one of 5 s: transcode, naming the longest."""
    decision = _decide(spec_init, [[100] * 20] * 4 + [[100] * 50] + [[100] * 20] * 2)
    assert decision.label == "transcode"
    [reason] = decision.reasons
    assert reason.code is ReasonCode.KEYFRAME_IRREGULAR
    assert dict(reason.values)["longest"] == "5 s"
    assert "does not fit in a 4 s fragment" in reason.problem


def test_a_29_97_fps_gop_of_60_frames_fits_two_per_fragment(spec_init: InitSegment) -> None:
    """2002 ms GOPs (60 frames at 29.97 fps) copy, two per 4004 ms fragment, as real cameras."""
    gops = [[33, 34, 33] * 20 + [2]] * 4
    decision = _decide(spec_init, gops)
    assert decision.label == "copy"
    fragments = shape(spec_init, gops_from(spec_init, gops), FRAGMENT_MS)
    assert [f.gop_count for f in fragments] == [2, 2]


# -- the live feed notices a quiet camera ----------------------------------------------------


async def test_feed_says_when_the_camera_goes_quiet_then_lost() -> None:
    """``next`` returns None once the camera is quiet, then raises once it is lost."""
    feed: LiveFeed[int] = LiveFeed(8)
    media = MediaClock(0.2)
    feed.put(1)
    assert await feed.next(media, quiet=0.1) == 1
    assert await feed.next(media, quiet=0.1) is None
    assert media.silent_for() >= 0.1
    assert not media.lost
    with pytest.raises(CameraStreamLost):
        await feed.next(media)
    assert media.lost


async def test_feed_returns_media_that_arrives_before_the_quiet_time() -> None:
    """Media that keeps coming is returned, never None."""
    feed: LiveFeed[int] = LiveFeed(8)
    media = MediaClock(10.0)

    async def camera() -> None:
        for item in range(3):
            await asyncio.sleep(0.01)
            media.touch()
            feed.put(item)

    task = asyncio.create_task(camera())
    assert [await feed.next(media, quiet=5.0) for _ in range(3)] == [0, 1, 2]
    await task


# -- the recorder: a quiet camera, and a long GOP after the decision to copy ----------------


async def test_quiet_camera_gets_held_gops_sent_before_the_clip_ends(
    hass: HomeAssistant,
    clip_gops: list[Gop],  # noqa: F811
) -> None:
    """Held GOPs go out once the camera is quiet; the GOP in progress ends the clip, last."""
    controller, stand_in = _controller(hass, clip_gops[:3])
    stream = controller.open_stream(7, _selection(), True)
    with patch.object(recorder_module, "_stall_limit", lambda _interval: 0.6):
        packets = [await anext(stream), await anext(stream)]  # init, the 4 s of pre-roll
        stand_in.push(clip_gops[3])  # held: another 2 s GOP would still fit
        partial = clip_gops[4]
        stand_in.pending = dataclasses.replace(
            partial, video=partial.video[:10], audio=[], duration=400, ended_by_keyframe=False
        )
        packets += [packet async for packet in stream]
    init = parse_init(bytes(packets[0].data))
    assert init.video is not None
    shaped = [parse_fragments(bytes(p.data), init)[init.video.track_id] for p in packets[1:]]
    assert [len(samples) for samples in shaped] == [100, 50, 10]
    assert [p.is_last for p in packets] == [False, False, False, True]
    assert all(samples[0].is_sync for samples in shaped)
    controller.stream_acknowledged(7)
    assert controller.last_recording.outcome is recorder_module.RecordingOutcome.CAMERA_STREAM_LOST


def _one_gop(gops: Sequence[Gop]) -> Gop:
    """Return consecutive GOPs as one long GOP (the inner keyframes turned into P-frames)."""
    video = [
        dataclasses.replace(sample, flags=NON_SYNC_SAMPLE_FLAGS) if index else sample
        for index, sample in enumerate(s for gop in gops for s in gop.video)
    ]
    return dataclasses.replace(
        gops[0],
        video=video,
        audio=[s for gop in gops for s in gop.audio],
        duration=sum(g.duration for g in gops),
    )


async def test_a_long_gop_after_the_decision_to_copy_goes_out_whole(
    hass: HomeAssistant,
    clip_gops: list[Gop],  # noqa: F811
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An 8 s GOP mid-clip: one keyframe-first fragment, a warning; the clip goes on."""
    controller, stand_in = _controller(hass, clip_gops[:3])
    stream = controller.open_stream(8, _selection(), True)
    packets = [await anext(stream), await anext(stream)]
    long_gop = _one_gop(clip_gops[3:7])
    with caplog.at_level(logging.WARNING):
        for gop in [long_gop, *clip_gops[7:10]]:
            stand_in.push(gop)
        packets += [await anext(stream) for _ in range(2)]
    await stream.aclose()  # type: ignore[attr-defined]
    controller.stream_closed(8, None)
    init = parse_init(bytes(packets[0].data))
    assert init.video is not None
    shaped = [parse_fragments(bytes(p.data), init)[init.video.track_id] for p in packets[1:]]
    assert [len(samples) for samples in shaped] == [100, 200, 100]
    assert [sum(s.is_sync for s in samples) for samples in shaped] == [2, 1, 2]
    assert all(samples[0].is_sync for samples in shaped)
    assert controller.last_recording.mode == "copy"
    assert "keyframe group of 8.00 s is longer than the 4000 ms fragments" in caplog.text


def test_stall_limit_is_5s_or_one_and_a_half_keyframe_intervals() -> None:
    """A clip waits 5 s for a silent camera, longer only for GOPs over 3.33 s."""
    assert recorder_module._stall_limit(2000) == 5.0
    assert recorder_module._stall_limit(0) == 5.0
    assert recorder_module._stall_limit(4000) == 6.0
