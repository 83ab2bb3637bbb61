"""Tests for FragmentShaper (grouping and re-timing) and select_prebuffer, on synthetic GOPs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise

import pytest

from custom_components.hksv.media.fmp4 import (
    InitSegment,
    Sample,
    iter_boxes,
    parse_fragments,
    parse_init,
)
from custom_components.hksv.recording.shaper import (
    LENGTH_SLACK_MS,
    FragmentShaper,
    ShapedFragment,
    select_prebuffer,
)
from custom_components.hksv.source.gop import Gop
from tests.recording.boxes import audio_entry, esds, make_init, trak, visual_entry
from tests.recording.test_gop import FRAME, audio, video

VIDEO_ID, AUDIO_ID = 1, 2


def make_gop(
    init: InitSegment, start_ms: int, length_ms: int, *, epoch: int = 0, sound: bool = True
) -> Gop:
    """Return a GOP of 100 ms frames (video at 1000 Hz) with AAC audio at 32 kHz."""
    first = start_ms // FRAME
    samples = video(first, length_ms // FRAME, [first])
    tones = audio(start_ms, start_ms + length_ms) if sound else []
    return Gop(epoch, init, samples, tones, start_ms, length_ms)


def gops_of(
    init: InitSegment, lengths: Sequence[int], *, start: int = 0, epoch: int = 0
) -> list[Gop]:
    """Return back-to-back GOPs of the given lengths (ms)."""
    out = []
    for length in lengths:
        out.append(make_gop(init, start, length, epoch=epoch))
        start += length
    return out


@dataclass
class Seen:
    """A fragment read back: per-track base time and samples."""

    tfdt: dict[int, int]
    samples: dict[int, list[Sample]]


def read_back(fragment: ShapedFragment, init: InitSegment) -> Seen:
    """Parse a shaped fragment."""
    assert [b.type for b in iter_boxes(fragment.data)] == [b"moof", b"mdat"]
    tracks = parse_fragments(fragment.data, init)
    return Seen({t: s[0].decode_time for t, s in tracks.items()}, tracks)


def run(shaper: FragmentShaper, gops: Sequence[Gop]) -> list[ShapedFragment]:
    """Push every GOP, then flush."""
    out = [f for g in gops for f in shaper.push(g)]
    return out + shaper.flush()


@pytest.mark.parametrize(
    ("lengths", "counts", "oversize"),
    [
        ([2000] * 6, [2, 2, 2], [False] * 3),
        ([1000] * 9, [4, 4, 1], [False] * 3),
        ([3000] * 3, [1, 1, 1], [False] * 3),
        ([4000] * 2, [1, 1], [False] * 2),
        ([8000] * 2, [1, 1], [True, True]),
        ([2002] * 4, [2, 2], [False] * 2),  # 29.97 fps: 4004 ms is within the slack
        ([1000, 2000, 500, 500, 3000], [2, 3], [False, False]),  # no room for another 2 s
        ([500, 5000, 1000], [1, 1, 1], [False, True, False]),
    ],
    ids=["2s", "1s", "3s", "4s", "8s-oversize", "2002ms", "mixed", "long-in-the-middle"],
)
def test_grouping(
    spec_init: InitSegment, lengths: list[int], counts: list[int], oversize: list[bool]
) -> None:
    """Group whole GOPs up to the fragment length; a longer GOP goes alone, flagged."""
    fragments = run(FragmentShaper(4000, True), gops_of(spec_init, lengths))
    assert [f.gop_count for f in fragments] == counts
    assert [f.oversize for f in fragments] == oversize
    for fragment in fragments:
        assert fragment.oversize or fragment.duration_ms <= 4000 + LENGTH_SLACK_MS
        seen = read_back(fragment, spec_init)
        assert seen.samples[VIDEO_ID][0].is_sync


def test_emits_as_soon_as_full(spec_init: InitSegment) -> None:
    """Hand a fragment out with the GOP that fills it, not one GOP later."""
    shaper = FragmentShaper(4000, True)
    first, second, third = gops_of(spec_init, [2000, 2000, 2000])
    assert shaper.push(first) == []
    assert [f.gop_count for f in shaper.push(second)] == [2]
    assert shaper.push(third) == []
    assert [f.gop_count for f in shaper.flush()] == [1]
    assert shaper.flush() == []


def test_timing_starts_at_zero_and_keeps_audio_in_sync(spec_init: InitSegment) -> None:
    """Re-base to 0, stay contiguous, and place audio by the video mapping."""
    gops = gops_of(spec_init, [2000] * 5, start=123_400)
    fragments = run(FragmentShaper(4000, True), gops)
    assert [f.sequence for f in fragments] == [1, 2, 3]
    assert [f.start_ms for f in fragments] == [0, 4000, 8000]
    assert [f.duration_ms for f in fragments] == [4000, 4000, 2000]
    sent_audio: list[int] = []
    for fragment in fragments:
        seen = read_back(fragment, spec_init)
        assert seen.tfdt[VIDEO_ID] == fragment.start_ms  # video timescale is 1000
        assert seen.tfdt[AUDIO_ID] == seen.samples[AUDIO_ID][0].decode_time
        sent_audio += [s.decode_time for s in seen.samples[AUDIO_ID]]
    # Every AAC frame is sent once, moved by exactly the video's shift (-123.4 s): in sync.
    assert sent_audio == [a.decode_time - 123_400 * 32 for a in audio(123_400, 133_400)]


def test_epoch_change_continues_after_the_previous_end(spec_init: InitSegment) -> None:
    """Restarted source timestamps continue right after the last fragment, monotonic."""
    before = gops_of(spec_init, [2000, 2000, 2000], start=50_000)
    # The old epoch's audio runs 20 ms past its video, as it does at a real restart.
    before[-1].audio.extend(audio(56_000, 56_020))
    after = gops_of(spec_init, [2000, 2000], start=0, epoch=1)
    fragments = run(FragmentShaper(4000, True), before + after)
    assert [(f.start_ms, f.duration_ms, f.gop_count) for f in fragments] == [
        (0, 4000, 2),
        (4000, 2000, 1),  # cut at the discontinuity
        (6000, 4000, 2),
    ]
    seen = [read_back(f, spec_init) for f in fragments]
    video_ends = [s.tfdt[VIDEO_ID] + sum(x.duration for x in s.samples[VIDEO_ID]) for s in seen]
    assert [s.tfdt[VIDEO_ID] for s in seen[1:]] == video_ends[:-1]
    audio_runs = [(s.tfdt[AUDIO_ID], sum(x.duration for x in s.samples[AUDIO_ID])) for s in seen]
    for (start, length), (next_start, _) in pairwise(audio_runs):
        assert next_start >= start + length  # never overlapping
    # The new epoch's first audio frame would overlap the old tail: it is dropped, so the
    # second epoch's audio is exactly on its video time (6 s) plus one AAC frame.
    assert audio_runs[2][0] == 6000 * 32 + 1024


def test_without_audio(spec_init: InitSegment) -> None:
    """Leave audio out entirely when asked."""
    fragments = run(FragmentShaper(4000, False), gops_of(spec_init, [2000] * 4))
    video_only = spec_init.without_audio()
    for fragment in fragments:
        assert set(parse_fragments(fragment.data, video_only)) == {VIDEO_ID}


def test_duplicates_dropped_and_gaps_kept(spec_init: InitSegment) -> None:
    """Skip a GOP already sent; keep a gap in source time within one epoch."""
    first, second, third, fourth = gops_of(spec_init, [1000] * 4)
    shaper = FragmentShaper(4000, True)
    assert shaper.push(first) == []
    assert shaper.push(second) == []
    assert shaper.push(second) == []  # a repeat
    out = shaper.push(fourth)  # the third went missing
    assert [(f.start_ms, f.gop_count) for f in out] == [(0, 2)]
    (last,) = shaper.flush()
    assert (last.start_ms, last.duration_ms) == (3000, 1000)
    del third


def test_timescale_change_keeps_time_monotonic(spec_init: InitSegment) -> None:
    """Continue after an init with another video timescale, rescaled."""
    other = parse_init(
        make_init(
            [
                trak(1, b"vide", 90000, visual_entry()),
                trak(2, b"soun", 32000, audio_entry(b"mp4a", 1, 32000, esds(b"\x12\x88"))),
            ],
            [1, 2],
        )
    )
    shaper = FragmentShaper(4000, True)
    old = gops_of(spec_init, [1500])
    new = Gop(1, other, video(0, 10, [0]), [], 0, 10 * 9000)
    for sample in new.video:
        sample.decode_time *= 90
        sample.duration = 9000
    fragments = run(shaper, [*old, new])
    assert [f.start_ms for f in fragments] == [0, 1500]
    assert read_back(fragments[1], other).tfdt[VIDEO_ID] == 1500 * 90


def test_ignores_empty_gops(spec_init: InitSegment) -> None:
    """Ignore a GOP with no video."""
    shaper = FragmentShaper(4000, True)
    assert shaper.push(Gop(0, spec_init, [], [], 0, 0)) == []
    assert shaper.flush() == []


# -- select_prebuffer -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prebuffer_ms", "count"),
    [(0, 1), (2000, 1), (4000, 2), (5000, 3), (6000, 3), (60_000, 10)],
)
def test_select_prebuffer_one_epoch(spec_init: InitSegment, prebuffer_ms: int, count: int) -> None:
    """Start at the keyframe at or before newest time minus the prebuffer."""
    gops = gops_of(spec_init, [2000] * 10, start=7000)
    chosen = select_prebuffer(gops, prebuffer_ms)
    assert chosen == gops[-count:]
    assert select_prebuffer([], 4000) == []


def test_select_prebuffer_across_epochs(spec_init: InitSegment) -> None:
    """Prefer the current epoch; reach into the previous one only when it is too short."""
    old = gops_of(spec_init, [2000] * 4, start=90_000)
    new = gops_of(spec_init, [2000] * 3, start=0, epoch=1)
    assert select_prebuffer(old + new, 4000) == new[-2:]
    assert select_prebuffer(old + new, 6000) == new
    assert select_prebuffer(old + new, 10_000) == old[-2:] + new
