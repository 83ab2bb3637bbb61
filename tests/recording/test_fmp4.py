"""Tests for the fMP4 box walker, init parsing, fragment parsing and fragment building."""

from __future__ import annotations

from dataclasses import replace
from io import BytesIO
from itertools import pairwise
import tracemalloc

import av
import pytest

from custom_components.hksv.media.fmp4 import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    TFHD_DEFAULT_BASE_IS_MOOF,
    AudioTrackInfo,
    Box,
    Fmp4Error,
    InitSegment,
    Sample,
    VideoTrackInfo,
    build_fragment,
    find_box,
    iter_boxes,
    parse_fragments,
    parse_init,
    read_mfhd_sequence,
    read_tfdt,
)
from tests.media import ClipSpec
from tests.recording.boxes import (
    audio_entry,
    box,
    esds,
    full_box,
    large_box,
    make_init,
    s32,
    trak,
    u32,
    u64,
    visual_entry,
)
from tests.recording.conftest import SEQUENCES, SPEC_EXAMPLES, SegmentFactory

# What the real HKSV camera of the spec examples sends (checked by hand with a box viewer).
SPEC_VIDEO = VideoTrackInfo(
    track_id=1,
    timescale=1000,
    codec="avc1",
    width=1920,
    height=1080,
    profile_idc=77,  # Main
    level_idc=41,
    avcc=None,  # compared separately
)
SPEC_AUDIO = AudioTrackInfo(
    track_id=2, timescale=32000, codec="mp4a", object_type=2, sample_rate=32000, channels=1
)
# (video samples, audio samples, video tfdt, audio tfdt, mfhd sequence) per sequenceN.mp4.
SPEC_LAYOUT = {
    2: (65, 122, 0, 0, 1),
    3: (64, 125, 4004, 128001, 2),
    4: (64, 125, 8004, 256001, 3),
}


def _table(samples: list[Sample]) -> list[tuple[int, int, int, int, int, bytes]]:
    """Return everything about samples, bytes included."""
    return [
        (s.decode_time, s.duration, s.size, s.flags, s.composition_offset, bytes(s.data))
        for s in samples
    ]


def _sample(decode_time: int, data: bytes, *, duration: int = 100, sync: bool = False) -> Sample:
    """Return a sample over its own bytes."""
    flags = SYNC_SAMPLE_FLAGS if sync else NON_SYNC_SAMPLE_FLAGS
    return Sample(decode_time, duration, len(data), flags, 0, memoryview(data))


# -- box walker -------------------------------------------------------------------------------


def test_iter_boxes_fully_assembled() -> None:
    """Walk the spec's assembled recording: init, then three moof+mdat pairs, end to end."""
    data = (SPEC_EXAMPLES / "fully-assembled.mp4").read_bytes()
    boxes = list(iter_boxes(data))
    assert [b.type for b in boxes] == [b"ftyp", b"moov"] + [b"moof", b"mdat"] * 3
    assert boxes[0].start == 0
    assert all(a.end == b.start for a, b in pairwise(boxes))
    assert boxes[-1].end == len(data)
    moov = boxes[1]
    assert [b.type for b in iter_boxes(data, moov.payload_start, moov.end)] == [
        b"mvhd",
        b"trak",
        b"trak",
        b"mvex",
    ]
    for moof in boxes[2::2]:
        assert [b.type for b in iter_boxes(data, moof.payload_start, moof.end)] == [
            b"mfhd",
            b"traf",
            b"traf",
        ]


def test_iter_boxes_largesize_uuid_and_size_zero() -> None:
    """Handle 64-bit sizes, uuid user types and a size-0 box at top level."""
    uuid = box(b"uuid", bytes(range(16)), b"xyz")
    tail = b"\x00\x00\x00\x00mdat" + b"payload"
    data = large_box(b"free", b"abc") + uuid + tail
    boxes = list(iter_boxes(data))
    assert boxes == [
        Box(b"free", 0, 16, 19),
        Box(b"uuid", 19, 19 + 24, 19 + 27),
        Box(b"mdat", 46, 54, len(data)),
    ]
    assert find_box(data, b"mdat") == boxes[2]
    assert find_box(data, b"moov") is None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (u32(4) + b"free", "size 4"),
        (u32(100) + b"free" + bytes(8), "overruns"),
        (b"\x00\x00\x00", "truncated box header"),
        (u32(1) + b"free" + u32(0), "truncated largesize"),
        (u32(1) + b"free" + u64(8), "size 8 < 16"),
        (box(b"uuid", b"short"), "size 13 < 24"),
    ],
    ids=["size-below-8", "overrun", "short-header", "short-largesize", "largesize-tiny", "uuid"],
)
def test_iter_boxes_rejects(data: bytes, message: str) -> None:
    """Raise Fmp4Error for malformed sizes."""
    with pytest.raises(Fmp4Error, match=message):
        list(iter_boxes(data))


def test_iter_boxes_size_zero_only_at_top_level() -> None:
    """Refuse a size-0 box inside a container, and ranges outside the buffer."""
    data = box(b"moov", u32(0) + b"trak")
    moov = next(iter_boxes(data))
    with pytest.raises(Fmp4Error, match="size-0"):
        list(iter_boxes(data, moov.payload_start, moov.end))
    with pytest.raises(Fmp4Error, match="outside"):
        list(iter_boxes(data, 0, len(data) + 1))


# -- init segments ----------------------------------------------------------------------------


def test_parse_spec_init(spec_init_bytes: bytes, spec_init: InitSegment) -> None:
    """Read the real camera's H.264 Main 1080p + AAC-LC 32 kHz mono init exactly."""
    assert spec_init.data == spec_init_bytes
    video = spec_init.video
    assert video is not None
    assert video.avcc is not None
    assert video.avcc[:4] == bytes([1, 77, 0, 41])  # version, profile, compat, level
    assert len(video.avcc) == 70 - 8
    assert video == replace(SPEC_VIDEO, avcc=video.avcc)
    assert spec_init.audio == SPEC_AUDIO
    assert set(spec_init.defaults) == {1, 2}
    assert spec_init.defaults[1].description_index == 1
    assert spec_init.defaults[1].flags == 0
    assert spec_init.timescale(1) == 1000
    assert spec_init.timescale(2) == 32000
    assert spec_init.timescale(3) is None
    assert hash(spec_init) == hash(parse_init(spec_init_bytes))


def test_without_audio(spec_init: InitSegment, spec_fragments: dict[int, bytes]) -> None:
    """Remove the audio trak and trex, fix the sizes, and keep a playable video-only file."""
    stripped = spec_init.without_audio()
    assert stripped.audio is None
    assert stripped.video == spec_init.video
    assert set(stripped.defaults) == {1}
    assert len(stripped.data) == len(spec_init.data) - 413 - 32  # audio trak, audio trex
    moov = find_box(stripped.data, b"moov")
    assert moov is not None
    assert [b.type for b in iter_boxes(stripped.data, moov.payload_start, moov.end)] == [
        b"mvhd",
        b"trak",
        b"mvex",
    ]
    assert stripped.without_audio() is stripped
    fragments = []
    for number in SEQUENCES:
        video = parse_fragments(spec_fragments[number], spec_init)[1]
        fragments.append(build_fragment(number - 1, [(1, video[0].decode_time, video)]))
    with av.open(BytesIO(stripped.data + b"".join(fragments)), format="mp4") as container:
        assert [s.type for s in container.streams] == ["video"]
        packets = [p for p in container.demux() if p.size]
    assert len(packets) == 65 + 64 + 64
    assert [p.is_keyframe for p in packets].count(True) == 3


def _asc(object_type: int, index: int, channels: int, rate: int | None = None) -> bytes:
    """Return an AudioSpecificConfig header, with audioObjectTypeExt and explicit rates."""
    bits, count = 0, 0

    def put(value: int, width: int) -> None:
        nonlocal bits, count
        bits, count = (bits << width) | value, count + width

    if object_type >= 32:
        put(31, 5)
        put(object_type - 32, 6)
    else:
        put(object_type, 5)
    put(index, 4)
    if rate is not None:
        put(rate, 24)
    put(channels, 4)
    pad = -count % 8
    return (bits << pad).to_bytes((count + pad) // 8)


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (
            audio_entry(b"mp4a", 2, 44100, esds(_asc(2, 4, 2))),
            ("mp4a", 2, 44100, 2),
        ),
        (
            audio_entry(b"mp4a", 2, 0, esds(_asc(2, 15, 1, 22222), long_size=True)),
            ("mp4a", 2, 22222, 1),
        ),
        (
            audio_entry(b"mp4a", 1, 16000, esds(_asc(39, 8, 1), es_flags=0xE0)),
            ("mp4a", 39, 16000, 1),  # AAC-ELD through audioObjectTypeExt
        ),
        (
            audio_entry(b"mp4a", 2, 48000, esds(_asc(2, 3, 0))),
            ("mp4a", 2, 48000, 2),  # channelConfiguration 0: the entry's count
        ),
        (
            audio_entry(b"mp4a", 2, 44100, esds(b"", oti=0x6B)),
            ("mp4a", None, 44100, 2),  # MP3: no DecoderSpecificInfo
        ),
        (
            audio_entry(b"mp4a", 1, 8000, esds(_asc(2, 11, 1)), qt_version=1),
            ("mp4a", 2, 8000, 1),
        ),
        (
            audio_entry(b"Opus", 2, 48000, box(b"dOps", bytes(11))),
            ("Opus", None, 48000, 2),
        ),
    ],
    ids=["aac-44k", "escape-15", "eld-ext-flags", "pce", "mp3", "quicktime-v1", "opus"],
)
def test_parse_audio_entries(entry: bytes, expected: tuple[str, int | None, int, int]) -> None:
    """Read codec, AAC object type, sample rate and channels from many audio entries."""
    init = parse_init(make_init([trak(2, b"soun", 48000, entry)], [2]))
    assert init.video is None
    assert init.audio is not None
    audio = init.audio
    assert (audio.codec, audio.object_type, audio.sample_rate, audio.channels) == expected
    assert audio.track_id == 2


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        (visual_entry(b"avc1", 1280, 720, box(b"avcC", bytes([1, 100, 0, 40, 0xFF]))), (100, 40)),
        (visual_entry(b"hvc1", 1920, 1080, box(b"hvcC", b"\x01\x01" + bytes(10) + b"{")), (1, 123)),
        (visual_entry(b"av01", 1920, 1080, box(b"av1C", bytes([0x81, 0x08, 0, 0]))), (0, 8)),
        (visual_entry(b"mp4v", 1280, 720), (None, None)),
        (visual_entry(b"avc1", 0, 0, box(b"avcC", bytes([1, 66, 0, 30]))), (66, 30)),
    ],
    ids=["avc1", "hvc1", "av01", "unknown", "size-from-tkhd"],
)  # fmt: skip
def test_parse_video_entries(entry: bytes, expected: tuple[int | None, int | None]) -> None:
    """Read profile and level for H.264, HEVC and AV1; report other codecs as they are."""
    init = parse_init(make_init([trak(1, b"vide", 90000, entry, version=1)], [1]))
    video = init.video
    assert video is not None
    assert (video.profile_idc, video.level_idc) == expected
    assert video.timescale == 90000
    assert video.codec == entry[4:8].decode()
    assert (video.width, video.height) in {(1280, 720), (1920, 1080), (640, 360)}
    assert (video.avcc is not None) == (video.codec == "avc1")


def test_parse_init_ignores_other_tracks_and_rejects_broken_ones() -> None:
    """Skip tracks that are neither video nor sound; reject missing boxes."""
    text = trak(3, b"text", 1000, box(b"tx3g", bytes(8)))
    init = parse_init(make_init([text], [3]))
    assert init.video is None
    assert init.audio is None
    with pytest.raises(Fmp4Error, match="no moov"):
        parse_init(box(b"ftyp", b"isom"))
    with pytest.raises(Fmp4Error, match="lacks tkhd or mdia"):
        parse_init(make_init([box(b"trak", full_box(b"tkhd", 0, 0, bytes(80)))], []))
    zero = trak(1, b"vide", 0, visual_entry())
    with pytest.raises(Fmp4Error, match="timescale 0"):
        parse_init(make_init([zero], [1]))


def test_ha_inits_differ_only_in_bitrate_statistics(ha_segments: SegmentFactory) -> None:
    """HA muxes a fresh init per segment: bytes differ (esds/btrt rates), fingerprints agree."""
    segments = ha_segments(ClipSpec(seconds=14, audio_codec="aac"), True)
    inits = [parse_init(segment.init) for segment in segments]
    assert len({init.data for init in inits}) > 1
    assert len({init.fingerprint for init in inits}) == 1
    video, audio = inits[0].video, inits[0].audio
    assert video is not None
    assert audio is not None
    assert (video.codec, video.width, video.height, video.timescale) == ("avc1", 640, 360, 90000)
    assert (audio.codec, audio.object_type, audio.sample_rate, audio.channels) == (
        "mp4a",
        2,
        32000,
        1,
    )
    assert inits[0].without_audio().fingerprint == inits[1].without_audio().fingerprint


# -- fragments in -----------------------------------------------------------------------------


@pytest.mark.parametrize("number", SEQUENCES)
def test_parse_spec_fragment(
    number: int, spec_init: InitSegment, spec_fragments: dict[int, bytes]
) -> None:
    """Read every sample of the spec fragments, as views into the fragment."""
    data = spec_fragments[number]
    videos, audios, video_tfdt, audio_tfdt, sequence = SPEC_LAYOUT[number]
    tracks = parse_fragments(data, spec_init)
    video, audio = tracks[1], tracks[2]
    assert (len(video), len(audio)) == (videos, audios)
    assert (video[0].decode_time, audio[0].decode_time) == (video_tfdt, audio_tfdt)
    assert video[0].is_sync
    assert not any(s.is_sync for s in video[1:])
    assert all(s.is_sync for s in audio)
    for samples in (video, audio):
        for a, b in pairwise(samples):
            assert b.decode_time == a.decode_time + a.duration
    mdat = find_box(data, b"mdat")
    moof = find_box(data, b"moof")
    assert mdat is not None
    assert moof is not None
    assert sum(s.size for s in video + audio) == mdat.end - mdat.payload_start
    assert all(s.data.obj is data and len(s.data) == s.size for s in video + audio)
    assert read_mfhd_sequence(data, moof) == sequence


@pytest.mark.parametrize("number", SEQUENCES)
def test_rebuild_spec_fragment(
    number: int, spec_init: InitSegment, spec_fragments: dict[int, bytes]
) -> None:
    """Rebuild each spec fragment: same samples, timing, flags and bytes, one moof + mdat."""
    data = spec_fragments[number]
    tracks = parse_fragments(data, spec_init)
    rebuilt = build_fragment(
        number - 1, [(tid, samples[0].decode_time, samples) for tid, samples in tracks.items()]
    )
    assert [b.type for b in iter_boxes(rebuilt)] == [b"moof", b"mdat"]
    again = parse_fragments(rebuilt, spec_init)
    for track_id, samples in tracks.items():
        assert _table(again[track_id]) == _table(samples)
    # The camera interleaves 8 runs per track; the rebuild lays each track out once, so the
    # bytes match per track, and a second round trip is byte-identical.
    mdat = find_box(rebuilt, b"mdat")
    assert mdat is not None
    per_track = b"".join(bytes(s.data) for samples in tracks.values() for s in samples)
    assert rebuilt[mdat.payload_start :] == per_track
    assert rebuilt == build_fragment(
        number - 1, [(tid, samples[0].decode_time, samples) for tid, samples in again.items()]
    )
    moof = find_box(rebuilt, b"moof")
    assert moof is not None
    assert read_mfhd_sequence(rebuilt, moof) == number - 1
    traf = find_box(rebuilt, b"traf", moof.payload_start, moof.end)
    assert traf is not None
    tfhd = find_box(rebuilt, b"tfhd", traf.payload_start, traf.end)
    tfdt = find_box(rebuilt, b"tfdt", traf.payload_start, traf.end)
    assert tfhd is not None
    assert tfdt is not None
    assert int.from_bytes(rebuilt[tfhd.payload_start : tfhd.payload_start + 4]) == (
        TFHD_DEFAULT_BASE_IS_MOOF
    )
    assert rebuilt[tfdt.payload_start] == 1  # version 1: 64-bit decode time
    assert read_tfdt(rebuilt, tfdt) == SPEC_LAYOUT[number][2]


def test_rebuilt_spec_recording_demuxes_identically(
    spec_init: InitSegment, spec_fragments: dict[int, bytes]
) -> None:
    """PyAV sees the same packets in the camera's recording and in the rebuilt one."""
    rebuilt = []
    for number in SEQUENCES:
        tracks = parse_fragments(spec_fragments[number], spec_init)
        rebuilt.append(
            build_fragment(number - 1, [(t, s[0].decode_time, s) for t, s in tracks.items()])
        )

    def packets(fragments: list[bytes]) -> list[tuple[int, int | None, int | None, bool, bytes]]:
        stream = BytesIO(spec_init.data + b"".join(fragments))
        with av.open(stream, format="mp4") as container:
            return sorted(
                (p.stream.index, p.dts, p.pts, p.is_keyframe, bytes(p))
                for p in container.demux()
                if p.size
            )

    assert packets(rebuilt) == packets([spec_fragments[n] for n in SEQUENCES])


def _traf(track_id: int, tfhd_flags: int, tfhd_fields: bytes, *boxes: bytes) -> bytes:
    """Return a traf with a tfhd and the given boxes."""
    return box(b"traf", full_box(b"tfhd", 0, tfhd_flags, u32(track_id), tfhd_fields), *boxes)


def test_parse_tfhd_defaults_and_explicit_base(spec_init: InitSegment) -> None:
    """Use tfhd defaults (duration, size, flags) and an explicit base-data-offset, tfdt v0."""
    payload = b"AAAABBBBCCCC"
    moof = box(
        b"moof",
        full_box(b"mfhd", 0, 0, u32(9)),
        _traf(
            1,
            0x01 | 0x02 | 0x08 | 0x10 | 0x20,
            u64(0) + u32(1) + u32(40) + u32(4) + u32(NON_SYNC_SAMPLE_FLAGS),
            full_box(b"tfdt", 0, 0, u32(1234)),
            # No per-sample fields: everything comes from tfhd; first-sample-flags marks sync.
            full_box(b"trun", 0, 0x01 | 0x04, u32(3), s32(0), u32(SYNC_SAMPLE_FLAGS)),
        ),
    )
    mdat = box(b"mdat", payload)
    data = moof + mdat
    # The explicit base is a file offset; point the run at the mdat payload.
    data = data.replace(u64(0) + u32(1) + u32(40), u64(len(moof) + 8) + u32(1) + u32(40), 1)
    samples = parse_fragments(data, spec_init)[1]
    assert [(s.decode_time, s.duration, bytes(s.data)) for s in samples] == [
        (1234, 40, b"AAAA"),
        (1274, 40, b"BBBB"),
        (1314, 40, b"CCCC"),
    ]
    assert [s.is_sync for s in samples] == [True, False, False]


def test_parse_trex_defaults_implicit_bases_and_signed_offsets() -> None:
    """Fall back to trex; chain trafs and runs without data offsets; read signed CTS (v1)."""
    init = parse_init(
        make_init(
            [trak(1, b"vide", 90000, visual_entry()), trak(2, b"soun", 48000, audio_entry())],
            [1, 2],
            u32(1) + u32(1024) + u32(2) + u32(0),
        )
    )
    video_run = full_box(
        b"trun",
        1,
        0x01 | 0x100 | 0x200 | 0x400 | 0x800,
        u32(2),
        s32(0),  # patched below: relative to the moof start (no default-base-is-moof)
        u32(3000) + u32(3) + u32(SYNC_SAMPLE_FLAGS) + s32(3000),
        u32(3000) + u32(3) + u32(NON_SYNC_SAMPLE_FLAGS) + s32(-3000),
    )
    # Two audio runs without data offsets: the first starts where the video data ended
    # (§8.8.7.1 implicit base of a later traf), the second right after the first.
    audio_runs = [full_box(b"trun", 0, 0, u32(1)), full_box(b"trun", 0, 0, u32(2))]
    moof = box(
        b"moof",
        full_box(b"mfhd", 0, 0, u32(1)),
        _traf(1, 0, b"", full_box(b"tfdt", 1, 0, u64(90000)), video_run),
        _traf(2, 0, b"", full_box(b"tfdt", 1, 0, u64(48000)), *audio_runs),
    )
    moof = moof.replace(u32(2) + s32(0) + u32(3000), u32(2) + s32(len(moof) + 8) + u32(3000), 1)
    data = moof + box(b"mdat", b"v1_v2_a1a2a3")
    tracks = parse_fragments(data, init)
    assert [(s.decode_time, s.composition_offset, bytes(s.data)) for s in tracks[1]] == [
        (90000, 3000, b"v1_"),
        (93000, -3000, b"v2_"),
    ]
    assert [(s.decode_time, s.duration, bytes(s.data)) for s in tracks[2]] == [
        (48000, 1024, b"a1"),
        (49024, 1024, b"a2"),
        (50048, 1024, b"a3"),
    ]


def test_parse_several_fragments_without_tfdt(spec_init: InitSegment) -> None:
    """Read many moof+mdat pairs from one buffer; without tfdt, time continues per track."""
    first = build_fragment(1, [(1, 500, [_sample(500, b"k", sync=True), _sample(600, b"p")])])
    second_moof = box(
        b"moof",
        full_box(b"mfhd", 0, 0, u32(2)),
        _traf(
            1,
            TFHD_DEFAULT_BASE_IS_MOOF,
            b"",
            full_box(b"trun", 0, 0x01 | 0x100 | 0x200, u32(1), s32(0), u32(100) + u32(1)),
        ),
    )
    second_moof = second_moof.replace(s32(0) + u32(100), s32(len(second_moof) + 8) + u32(100))
    data = first + second_moof + box(b"mdat", b"q") + box(b"free", b"")
    samples = parse_fragments(data, spec_init)[1]
    assert [(s.decode_time, bytes(s.data)) for s in samples] == [
        (500, b"k"),
        (600, b"p"),
        (700, b"q"),
    ]
    assert parse_fragments(b"", spec_init) == {}


@pytest.mark.parametrize(
    ("trun", "message"),
    [
        (full_box(b"trun", 0, 0x201, u32(1000), s32(0), u32(1)), "cannot hold"),
        (full_box(b"trun", 0, 0x200, u32(0x7FFFFFFF)), "cannot hold"),
        (full_box(b"trun", 0, 0x000, u32(1000)), "beyond the data"),
        (full_box(b"trun", 0, 0x201, u32(1), s32(-10_000), u32(1)), "outside"),
        (full_box(b"trun", 0, 0x201, u32(1), s32(0), u32(10_000)), "outside"),
        (full_box(b"trun", 0, 0x001, u32(1)), "too short"),
    ],
    ids=["count-vs-box", "huge-count", "count-vs-data", "negative-offset", "past-end", "short"],
)
def test_parse_fragments_bounds(spec_init: InitSegment, trun: bytes, message: str) -> None:
    """Refuse runs that promise more samples or bytes than there are."""
    data = box(
        b"moof",
        full_box(b"mfhd", 0, 0, u32(1)),
        _traf(1, TFHD_DEFAULT_BASE_IS_MOOF, b"", full_box(b"tfdt", 1, 0, u64(0)), trun),
    ) + box(b"mdat", b"xx")
    with pytest.raises(Fmp4Error, match=message):
        parse_fragments(data, spec_init)


# -- fragments out ----------------------------------------------------------------------------


def test_build_fragment_negative_composition_offsets(spec_init: InitSegment) -> None:
    """Write trun v1 when an offset is negative, and only then."""
    samples = [
        Sample(0, 3000, 2, SYNC_SAMPLE_FLAGS, 6000, memoryview(b"I0")),
        Sample(3000, 3000, 2, NON_SYNC_SAMPLE_FLAGS, -3000, memoryview(bytearray(b"B1"))),
    ]
    data = build_fragment(7, [(1, 0, samples), (2, 0, [])])
    trafs, trun = _trafs_and_trun(data)
    assert trafs == 1  # the empty track is left out
    assert data[trun.payload_start] == 1
    assert int.from_bytes(data[trun.payload_start + 1 : trun.payload_start + 4]) == 0xF01
    assert _table(parse_fragments(data, spec_init)[1]) == _table(samples)
    positive = [Sample(0, 1, 1, SYNC_SAMPLE_FLAGS, 2, memoryview(b"x"))]
    data = build_fragment(1, [(1, 0, positive)])
    _, trun = _trafs_and_trun(data)
    assert data[trun.payload_start] == 0
    zero = [Sample(0, 1, 1, SYNC_SAMPLE_FLAGS, 0, memoryview(b"x"))]
    data = build_fragment(1, [(1, 0, zero)])
    _, trun = _trafs_and_trun(data)
    assert int.from_bytes(data[trun.payload_start : trun.payload_start + 4]) == 0x701


def _trafs_and_trun(data: bytes) -> tuple[int, Box]:
    """Return how many trafs the moof has and the first traf's trun."""
    moof = find_box(data, b"moof")
    assert moof is not None
    trafs = [b for b in iter_boxes(data, moof.payload_start, moof.end) if b.type == b"traf"]
    trun = find_box(data, b"trun", trafs[0].payload_start, trafs[0].end)
    assert trun is not None
    return len(trafs), trun


def test_build_fragment_rejects_out_of_range() -> None:
    """Turn impossible field values into Fmp4Error."""
    sample = _sample(0, b"x", sync=True)
    with pytest.raises(Fmp4Error, match="out of range"):
        build_fragment(1, [(1, -1, [sample])])
    with pytest.raises(Fmp4Error, match="out of range"):
        build_fragment(1 << 32, [(1, 0, [sample])])


def test_copies_are_bounded(spec_init: InitSegment, spec_fragments: dict[int, bytes]) -> None:
    """Parsing copies no media; building copies it exactly once."""
    data = spec_fragments[4]
    tracemalloc.start()
    try:
        tracks = parse_fragments(data, spec_init)
        _, parse_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        fragment = build_fragment(1, [(t, s[0].decode_time, s) for t, s in tracks.items()])
        _, build_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert parse_peak < len(data) // 4  # sample objects and views only
    assert len(fragment) <= build_peak < len(fragment) + len(data) // 4
