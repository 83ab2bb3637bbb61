"""Real clips through HA's stream worker, GopAssembler and FragmentShaper, decoded by PyAV."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import pytest

from custom_components.hksv.media.fmp4 import InitSegment
from custom_components.hksv.recording.shaper import (
    LENGTH_SLACK_MS,
    ShapedFragment,
    select_prebuffer,
)
from custom_components.hksv.source.gop import Gop
from tests.media import ClipSpec
from tests.recording.conftest import ClipFactory, SegmentFactory
from tests.recording.ha_parts import HaWorker, assemble, decode, init_of, layout, shape

FRAGMENT_MS = 4000
PREBUFFER_MS = 4000


@dataclass(frozen=True)
class Case:
    """One pipeline scenario."""

    spec: ClipSpec
    ll_hls: bool = True
    include_audio: bool = True


CASES = {
    "h264-2s-aac-ll": Case(ClipSpec(seconds=20, gop_seconds=2.0)),
    "h264-2s-aac-non-ll": Case(ClipSpec(seconds=20, gop_seconds=2.0), ll_hls=False),
    "h264-1s-aac-ll": Case(ClipSpec(seconds=20, gop_seconds=1.0)),
    "h264-8s-video-ll": Case(ClipSpec(seconds=34, gop_seconds=8.0, audio_codec=None)),
    "h264-2s-video-non-ll": Case(ClipSpec(seconds=20, audio_codec=None), ll_hls=False),
    "hevc-2s-aac-ll": Case(ClipSpec(seconds=20, gop_seconds=2.0, video_codec="hevc")),
    "h264-2s-aac-ll-audio-off": Case(ClipSpec(seconds=20, gop_seconds=2.0), include_audio=False),
}


def record(gops: Sequence[Gop], include_audio: bool) -> tuple[list[Gop], list[ShapedFragment]]:
    """Record like the recorder: prebuffer from the first half, then the rest live."""
    half = len(gops) // 2
    chosen = select_prebuffer(gops[:half], PREBUFFER_MS)
    sent = [*chosen, *gops[half:]]
    return sent, shape(sent, FRAGMENT_MS, include_audio)


def check_fragments(
    fragments: Sequence[ShapedFragment], init: InitSegment, gop_frames: int, audio: bool
) -> None:
    """Assert every HKSV rule on each fragment and their timeline."""
    assert init.video is not None
    scale = init.video.timescale
    expected_tfdt = 0
    for number, fragment in enumerate(fragments, 1):
        seen = layout(fragment.data, init)
        assert seen.top_level == [b"moof", b"mdat"]
        assert seen.sequence == fragment.sequence == number
        assert seen.first_video_sync
        assert seen.tfdt[init.video.track_id] == expected_tfdt
        assert (init.audio is not None and audio) == (len(seen.tfdt) == 2)
        if init.audio is not None and audio:
            audio_start = seen.tfdt[init.audio.track_id] / init.audio.timescale
            # In sync: at most one AAC frame early; later only where the camera's audio
            # itself starts later (HA's first GOP: audio begins 64 ms after the picture).
            assert -0.033 < audio_start - expected_tfdt / scale < 0.1
        expected_tfdt += round(fragment.duration_ms * scale / 1000)
        if fragment.oversize:
            assert fragment.gop_count == 1
        else:
            assert fragment.duration_ms <= FRAGMENT_MS + LENGTH_SLACK_MS
        # Each fragment decodes on its own from its first frame, a keyframe.
        alone = decode(init.data, [fragment.data])
        assert alone.frames[0].key_frame
        assert alone.frames[0].counter % gop_frames == 0


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_pipeline(case: Case, ha_segments: SegmentFactory) -> None:
    """Shape HA's parts into HKSV fragments that decode contiguously from a keyframe."""
    spec = case.spec
    segments = ha_segments(spec, case.ll_hls)
    gops = assemble([(s, p.data) for s in segments for p in s.parts])
    sent, fragments = record(gops, case.include_audio)
    gop_frames = round(spec.fps * spec.gop_seconds)
    init = init_of(gops, case.include_audio)
    check_fragments(fragments, init, gop_frames, case.include_audio)
    if spec.gop_seconds * 1000 > FRAGMENT_MS + LENGTH_SLACK_MS:
        assert all(f.oversize for f in fragments[:-1])
    else:
        assert not any(f.oversize for f in fragments)
        assert all(f.duration_ms == FRAGMENT_MS for f in fragments[:-1])
    decoded = decode(init.data, [f.data for f in fragments])
    with_audio = spec.audio_codec is not None and case.include_audio
    assert decoded.streams == (["video", "audio"] if with_audio else ["video"])
    counters = [f.counter for f in decoded.frames]
    first = counters[0]
    assert first % gop_frames == 0
    assert counters == list(range(first, first + len(counters)))  # no gap, no repeat
    assert len(counters) == sum(len(g.video) for g in sent)
    assert decoded.frames[0].time == 0.0
    assert sum(f.duration_ms for f in fragments) >= PREBUFFER_MS
    assert all(b > a for a, b in pairwise(decoded.video_dts))
    if with_audio:
        assert all(b > a for a, b in pairwise(decoded.audio_dts))
        assert decoded.audio_samples == 1024 * sum(len(g.audio) for g in sent)
        video_seconds = sum(f.duration_ms for f in fragments) / 1000
        assert decoded.audio_samples / spec.audio_rate == pytest.approx(video_seconds, abs=0.07)
    else:
        assert not decoded.audio_dts


@pytest.mark.parametrize("ll_hls", [True, False], ids=["ll", "non-ll"])
def test_discontinuity_keeps_time_monotonic(ll_hls: bool, make_clip: ClipFactory) -> None:
    """A worker restart (new stream_id, timestamps from 0 again) still plays straight on."""
    spec = ClipSpec(seconds=11, gop_seconds=2.0)
    worker = HaWorker()
    worker.run(make_clip(spec), ll_hls=ll_hls)
    worker.restart()
    worker.run(make_clip(spec), ll_hls=ll_hls)
    assert {s.stream_id for s in worker.segments} == {0, 1}
    gops = assemble(list(worker.parts()))
    assert [g.epoch for g in gops] == sorted(g.epoch for g in gops)
    restart = next(i for i, g in enumerate(gops) if g.epoch == 1)
    assert gops[restart].start < gops[restart - 1].start  # the source clock restarted
    fragments = shape(gops, FRAGMENT_MS, True)
    init = init_of(gops, True)
    check_fragments(fragments, init, 50, True)
    decoded = decode(init.data, [f.data for f in fragments])
    counters = [f.counter for f in decoded.frames]
    first_run = sum(len(g.video) for g in gops[:restart])
    assert counters == list(range(first_run)) + list(range(len(counters) - first_run))
    assert all(b > a for a, b in pairwise(decoded.video_dts))
    assert all(b > a for a, b in pairwise(decoded.audio_dts))
