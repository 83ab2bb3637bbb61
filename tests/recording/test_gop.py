"""Tests for GopAssembler (parts → keyframe-started GOPs) and profile_source."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import pairwise

import pytest

from custom_components.hksv.media.fmp4 import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    Fmp4Error,
    InitSegment,
    Sample,
    build_fragment,
    parse_fragments,
    parse_init,
)
from custom_components.hksv.source.gop import (
    MAX_GOP_SECONDS,
    Gop,
    profile_source,
)
from custom_components.hksv.source.part import INIT_CACHE_SIZE, PartParser
from tests.media import ClipSpec
from tests.recording.boxes import make_init, trak, visual_entry
from tests.recording.conftest import SEQUENCES, SegmentFactory
from tests.recording.ha_parts import RawPartAssembler, assemble

# The spec init: video track 1 at 1000 Hz, audio track 2 at 32000 Hz. Test video runs at
# 10 fps (100 ms frames), audio in 1024-sample AAC frames (32 ms).
FRAME = 100
AAC = 1024


def video(first: int, count: int, keyframes: Sequence[int] = ()) -> list[Sample]:
    """Return ``count`` frames from frame index ``first``; indices in ``keyframes`` are sync."""
    return [
        Sample(
            index * FRAME,
            FRAME,
            4,
            SYNC_SAMPLE_FLAGS if index in keyframes else NON_SYNC_SAMPLE_FLAGS,
            0,
            memoryview(index.to_bytes(4)),
        )
        for index in range(first, first + count)
    ]


def audio(first_ms: int, last_ms: int) -> list[Sample]:
    """Return AAC frames whose decode time lies in [first_ms, last_ms)."""
    start = -(-first_ms * 32 // AAC) * AAC
    return [Sample(t, AAC, 2, 0, 0, memoryview(b"aa")) for t in range(start, last_ms * 32, AAC)]


def part(video_samples: list[Sample], audio_samples: Sequence[Sample] = ()) -> bytes:
    """Return one moof+mdat holding the samples, as HA's muxer would."""
    tracks = [(1, video_samples[0].decode_time, video_samples)] if video_samples else []
    if audio_samples:
        tracks.append((2, audio_samples[0].decode_time, list(audio_samples)))
    return build_fragment(1, tracks)


def frames(gop: Gop) -> list[int]:
    """Return the frame indices a GOP holds."""
    return [int.from_bytes(s.data) for s in gop.video]


def keyframes_every(count: int, total: int = 200) -> list[int]:
    """Return keyframe indices every ``count`` frames."""
    return list(range(0, total, count))


def test_keyframe_in_the_middle_of_parts(spec_init: InitSegment) -> None:
    """Complete a GOP when the next keyframe arrives, wherever it lies in a part."""
    assembler = RawPartAssembler()
    keys = keyframes_every(10)
    done: list[Gop] = []
    for first in range(0, 35, 7):  # parts of 7 frames; keyframes every 10
        done += assembler.feed(spec_init.data, part(video(first, 7, keys)), 0)
    assert [frames(g)[0] for g in done] == [0, 10, 20]
    assert [frames(g) for g in done] == [list(range(k, k + 10)) for k in (0, 10, 20)]
    assert [(g.start, g.duration, g.ended_by_keyframe) for g in done] == [
        (0, 1000, True),
        (1000, 1000, True),
        (2000, 1000, True),
    ]
    assert all(g.video[0].is_sync and not any(s.is_sync for s in g.video[1:]) for g in done)
    last = assembler.flush()
    assert last is not None
    assert (frames(last), last.duration, last.ended_by_keyframe) == (
        [30, 31, 32, 33, 34],
        500,
        False,
    )
    assert assembler.flush() is None


def test_several_keyframes_in_one_part(spec_init: InitSegment) -> None:
    """Return every GOP a part completes, in order."""
    assembler = RawPartAssembler()
    gops = assembler.feed(spec_init, part(video(0, 25, keyframes_every(5))), 3)
    assert [frames(g)[0] for g in gops] == [0, 5, 10, 15]
    assert {g.epoch for g in gops} == {3}
    assert all(g.init.data == spec_init.data for g in gops)
    assert all(g.duration_seconds == 0.5 for g in gops)
    assert gops[2].start_seconds == 1.0
    assert gops[0].nbytes == 5 * 4


def test_video_before_the_first_keyframe_is_dropped(spec_init: InitSegment) -> None:
    """Start the first GOP at the first keyframe, dropping earlier frames and audio."""
    assembler = RawPartAssembler()
    keys = [10, 20]
    assert assembler.feed(spec_init.data, part(video(3, 7, keys), audio(300, 1000)), 0) == []
    assert assembler.feed(spec_init.data, part(video(10, 8, keys), audio(1000, 1800)), 0) == []
    (gop,) = assembler.feed(spec_init.data, part(video(18, 4, keys), audio(1800, 2200)), 0)
    assert frames(gop) == list(range(10, 20))
    assert gop.audio[0].decode_time >= 1000 * 32
    assert gop.audio[-1].decode_time < 2000 * 32
    # Every AAC frame starting in [1.0 s, 2.0 s) is there, once.
    assert [s.decode_time for s in gop.audio] == [s.decode_time for s in audio(1000, 2000)]


def test_audio_follows_video_time_and_late_audio_joins_the_next_gop(
    spec_init: InitSegment,
) -> None:
    """Split audio at the keyframe time; a frame muxed after its GOP closed is not lost."""
    assembler = RawPartAssembler()
    keys = keyframes_every(10)
    assert assembler.feed(spec_init.data, part(video(0, 10, keys), audio(0, 900)), 0) == []
    # The keyframe at 1.0 s arrives while audio only reached 0.9 s ...
    (first,) = assembler.feed(spec_init.data, part(video(10, 10, keys), audio(900, 950)), 0)
    # ... and the rest of the first second's audio comes with the next part.
    (second,) = assembler.feed(spec_init.data, part(video(20, 10, keys), audio(950, 3000)), 0)
    all_audio = [s.decode_time for s in first.audio + second.audio]
    assert all_audio == [s.decode_time for s in audio(0, 2000)]
    assert first.audio[-1].decode_time < 1000 * 32
    assert second.audio[0].decode_time < second.start * 32  # the straggler, kept in order


def test_epoch_change_flushes_and_restarts(spec_init: InitSegment) -> None:
    """A new epoch closes the GOP in progress; the new one may restart its clock at 0."""
    assembler = RawPartAssembler()
    keys = keyframes_every(10)
    (first,) = assembler.feed(spec_init.data, part(video(0, 15, keys), audio(0, 1500)), 0)
    cut, restarted = assembler.feed(spec_init.data, part(video(0, 12, keys), audio(0, 1200)), 1)
    assert (cut.epoch, frames(cut), cut.duration, cut.ended_by_keyframe) == (
        0,
        [10, 11, 12, 13, 14],
        500,
        False,
    )
    assert [s.decode_time for s in cut.audio] == [s.decode_time for s in audio(1000, 1500)]
    assert first.ended_by_keyframe
    assert (restarted.epoch, restarted.start, frames(restarted)) == (1, 0, list(range(10)))
    assert [s.decode_time for s in restarted.audio] == [s.decode_time for s in audio(0, 1000)]
    last = assembler.flush()
    assert last is not None
    assert (last.epoch, frames(last)[0], last.start) == (1, 10, 1000)
    assert [s.decode_time for s in last.audio] == [s.decode_time for s in audio(1000, 1200)]


def test_init_change_flushes_but_bitrate_statistics_do_not(spec_init: InitSegment) -> None:
    """Treat an init whose only change is esds bitrates as the same stream."""
    rates = b"\x00\x00\xfa\x00\x00\x00\xfa\x00"  # esds maxBitrate, avgBitrate: 64000
    assert spec_init.data.count(rates) == 1
    restated = parse_init(spec_init.data.replace(rates, b"\x00\x01\x00\x00\x00\x00\xfb\x00"))
    assert restated.data != spec_init.data
    assert restated.fingerprint == spec_init.fingerprint
    assembler = RawPartAssembler()
    keys = keyframes_every(10)
    assert assembler.feed(spec_init.data, part(video(0, 5, keys)), 0) == []
    assert assembler.feed(restated.data, part(video(5, 5, keys)), 0) == []
    (gop,) = assembler.feed(restated.data, part(video(10, 5, keys)), 0)
    assert frames(gop) == list(range(10))
    video_only = spec_init.without_audio()
    (cut,) = assembler.feed(video_only.data, part(video(15, 10, keys)), 0)
    assert (frames(cut), cut.ended_by_keyframe) == ([10, 11, 12, 13, 14], False)
    last = assembler.flush()
    assert last is not None
    assert last.init.audio is None
    assert frames(last) == list(range(20, 25))


def test_gaps_overlaps_and_endless_gops(spec_init: InitSegment) -> None:
    """Stretch a frame over a gap, restart on time going back, cap a keyframe-less GOP."""
    assembler = RawPartAssembler()
    samples = video(0, 5, [0]) + video(8, 2)  # frames 5-7 lost
    assert assembler.feed(spec_init.data, part(samples[:5]), 0) == []
    assert assembler.feed(spec_init.data, part(samples[5:]), 0) == []
    (gapped,) = assembler.feed(spec_init.data, part(video(5, 3)), 0)  # back in time
    assert frames(gapped) == [0, 1, 2, 3, 4, 8, 9]
    assert [s.duration for s in gapped.video] == [100, 100, 100, 100, 400, 100, 100]
    assert gapped.duration == sum(s.duration for s in gapped.video) == 1000
    assert not gapped.ended_by_keyframe
    assert assembler.flush() is None  # frames 5-7 had no keyframe: dropped
    long = int(MAX_GOP_SECONDS * 1000 / FRAME) + 5
    done = assembler.feed(spec_init.data, part(video(0, long, [0])), 0)
    assert len(done) == 1
    assert done[0].duration_seconds == pytest.approx(MAX_GOP_SECONDS, abs=0.2)
    assert not done[0].ended_by_keyframe


def test_rejects_inits_without_video(spec_init: InitSegment) -> None:
    """Refuse an init with no video track, and malformed parts, with Fmp4Error."""
    assembler = RawPartAssembler()
    no_video = make_init([], [])
    with pytest.raises(Fmp4Error, match="no video"):
        assembler.feed(no_video, b"", 0)
    with pytest.raises(Fmp4Error):
        assembler.feed(spec_init.data, b"\x00\x00\x00\x03moof", 0)


def test_malformed_part_discards_the_gop_in_progress(spec_init: InitSegment) -> None:
    """Raise Fmp4Error for a broken part and restart at the next keyframe."""
    assembler = RawPartAssembler()
    keys = keyframes_every(10)
    assert assembler.feed(spec_init.data, part(video(0, 5, keys)), 0) == []
    broken = bytearray(part(video(5, 5, keys)))
    broken[3] = 0xFF  # moof size past the end of the part
    with pytest.raises(Fmp4Error):
        assembler.feed(spec_init.data, bytes(broken), 0)
    (gop,) = assembler.feed(spec_init.data, part(video(10, 15, keys)), 0)
    assert frames(gop) == list(range(10, 20))  # frames 0-4 lost their GOP's middle


def test_init_cache_holds_a_few(spec_init: InitSegment) -> None:
    """Parse each distinct init once (every part shares it) and keep only the newest few."""
    parser = PartParser()
    first = parser.parse(spec_init.data, part(video(0, 1, [0])), 0, 0.0).init
    assert parser.parse(spec_init.data, part(video(1, 1, [0])), 0, 0.0).init is first
    for timescale in range(1000, 1000 + INIT_CACHE_SIZE):
        init = make_init([trak(1, b"vide", timescale, visual_entry())], [1])
        parser.parse(init, part(video(0, 1, [0])), 0, 0.0)
    # Evicted by the newer ones: parsed again, equal but a new object.
    again = parser.parse(spec_init.data, part(video(2, 1, [0])), 0, 0.0).init
    assert again is not first
    assert again.data == first.data


# -- real HA parts ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "ll_hls"),
    [
        (ClipSpec(seconds=14, gop_seconds=2.0), True),
        (ClipSpec(seconds=14, gop_seconds=2.0), False),
        (ClipSpec(seconds=14, gop_seconds=1.0, audio_codec=None), True),
    ],
    ids=["ll-2s-aac", "non-ll-2s-aac", "ll-1s-video-only"],
)
def test_ha_parts_become_gops(spec: ClipSpec, ll_hls: bool, ha_segments: SegmentFactory) -> None:
    """Turn HA's parts, keyframe-aligned or not, into contiguous keyframe-started GOPs."""
    segments = ha_segments(spec, ll_hls)
    parts = [(segment, p.data) for segment in segments for p in segment.parts]
    init = parse_init(segments[0].init)
    assert init.video is not None
    starts_with_key = []
    for segment, data in parts:
        samples = parse_fragments(data, parse_init(segment.init))[init.video.track_id]
        starts_with_key.append(samples[0].is_sync)
    if ll_hls:
        assert not all(starts_with_key)  # LL-HLS parts are cut by time, mid-GOP
    else:
        assert all(starts_with_key)
        assert all(len(segment.parts) == 1 for segment in segments)
    gops = assemble(parts)
    assert len(gops) >= 5
    for gop in gops[:-1]:
        assert gop.ended_by_keyframe
        assert gop.duration_seconds == pytest.approx(spec.gop_seconds)
        assert len(gop.video) == spec.fps * spec.gop_seconds
    for gop in gops:
        assert gop.video[0].is_sync
        assert not any(s.is_sync for s in gop.video[1:])
        assert sum(s.duration for s in gop.video) == gop.duration
    for a, b in pairwise(gops):
        assert b.start == a.end
    if spec.audio_codec:
        audio_times = [s.decode_time for g in gops for s in g.audio]
        assert audio_times == sorted(set(audio_times))
        steps = {b - a for a, b in pairwise(audio_times)}
        assert steps == {AAC}  # no AAC frame lost or repeated at part or GOP boundaries
        audio_scale = gops[0].init.audio.timescale if gops[0].init.audio else 0
        for gop in gops[1:]:
            assert abs(gop.audio[0].decode_time / audio_scale - gop.start_seconds) < 0.033
    else:
        assert all(not g.audio for g in gops)


# -- source profile ---------------------------------------------------------------------------


def test_profile_of_ha_parts(ha_segments: SegmentFactory) -> None:
    """Measure 25 fps, a constant 2 s keyframe interval and the bitrate from HA's parts."""
    spec = ClipSpec(seconds=14, gop_seconds=2.0)
    segments = ha_segments(spec, True)
    gops = assemble([(s, p.data) for s in segments for p in s.parts])
    profile = profile_source(gops)
    init = gops[-1].init
    assert (profile.video, profile.audio) == (init.video, init.audio)
    assert profile.fps == pytest.approx(25)
    assert profile.keyframe_interval_ms == 2000
    assert profile.keyframe_interval_constant
    video_bits = sum(s.size for g in gops for s in g.video) * 8
    seconds = sum(g.duration_seconds for g in gops)
    assert profile.video_bitrate_kbps == pytest.approx(video_bits / seconds / 1000)
    assert profile.gop_count == len(gops)


def test_profile_of_the_spec_camera(
    spec_init: InitSegment, spec_fragments: dict[int, bytes]
) -> None:
    """Measure the real HKSV camera: 16 fps, 4 s keyframe interval, constant."""
    assembler = RawPartAssembler()
    gops = [g for n in SEQUENCES for g in assembler.feed(spec_init.data, spec_fragments[n], 0)]
    last = assembler.flush()
    assert last is not None
    gops.append(last)
    assert [len(g.video) for g in gops] == [65, 64, 64]
    assert [g.duration for g in gops] == [4004, 4000, 3999]
    assert [len(g.audio) for g in gops] == [123, 125, 124]
    profile = profile_source(gops)
    assert profile.fps == pytest.approx(193 / 12.003)
    # Steady state: the epoch's first GOP (4004) and the flushed one (3999) are not counted.
    assert profile.keyframe_interval_ms == 4000
    assert profile.keyframe_interval_constant
    assert profile.video == spec_init.video


def test_profile_edge_cases(spec_init: InitSegment) -> None:
    """Report nothing for no GOPs; flag an irregular keyframe interval."""
    empty = profile_source([])
    assert (empty.video, empty.fps, empty.keyframe_interval_ms, empty.gop_count) == (
        None,
        None,
        None,
        0,
    )
    assert not empty.keyframe_interval_constant
    assembler = RawPartAssembler()
    gops = assembler.feed(spec_init, part(video(0, 40, [0, 10, 30, 35])), 0)
    profile = profile_source(gops)
    assert [g.duration for g in gops] == [1000, 2000, 500]
    assert profile.keyframe_interval_ms == 1250  # the first GOP is not steady state
    assert (profile.keyframe_interval_min_ms, profile.keyframe_interval_max_ms) == (500, 2000)
    assert not profile.keyframe_interval_constant
    other = parse_init(make_init([trak(1, b"vide", 1000, visual_entry())], [1]))
    mixed = [*gops, *RawPartAssembler().feed(other, part(video(0, 11, [0, 10])), 0)]
    assert profile_source(mixed).gop_count == 1  # only the GOPs of the newest init


@pytest.mark.parametrize("first_gop_frames", [1, 7, 10, 19])
def test_profile_ignores_each_epochs_first_gop(
    spec_init: InitSegment, first_gop_frames: int
) -> None:
    """A join or restart cuts the epoch's first GOP short or long: steady state is judged."""
    assembler = RawPartAssembler()
    gops: list[Gop] = []
    for epoch in range(2):
        # The worker joins mid-stream: an odd first GOP, then keyframes every 10 frames.
        keys = [0, *range(first_gop_frames, 60, 10)]
        gops += assembler.feed(
            spec_init, part(video(epoch * 100, 60, [k + epoch * 100 for k in keys])), epoch
        )
    for epoch in range(2):
        mine = [g for g in gops if g.epoch == epoch]
        assert mine[0].first_in_epoch
        assert not any(g.first_in_epoch for g in mine[1:])
    profile = profile_source(gops)
    assert profile.keyframe_interval_ms == 10 * FRAME
    assert profile.keyframe_interval_constant
    assert profile.keyframe_interval_min_ms == profile.keyframe_interval_max_ms == 10 * FRAME
