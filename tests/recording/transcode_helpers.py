"""Helpers for the transcoder tests: HA-like fMP4 input, a box reader and output checks."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
import io
from pathlib import Path
from typing import Any

import av
import numpy as np

from custom_components.hksv.recording.encoding import TranscodeStats, TranscodeTarget
from custom_components.hksv.recording.transcode import Transcoder
from tests.media import read_frame_counter

# ISO/IEC 14496-12 §8.8.3.1 sample_flags: sample_is_non_sync_sample.
NON_SYNC_SAMPLE = 0x0001_0000
_CONTAINERS = {b"moov", b"trak", b"mdia", b"minf", b"stbl", b"mvex", b"moof", b"traf", b"edts"}


@dataclass(frozen=True, slots=True)
class NewInit:
    """An input item meaning: the source changed its init segment."""

    data: bytes


type InputItem = bytes | NewInit


def make_fmp4(
    clip: Path, *, part_seconds: float | None = None, offset_seconds: float = 0.0
) -> tuple[bytes, list[bytes]]:
    """Remux a clip the way HA's stream worker does and split it into init and fragments.

    With ``part_seconds`` the fragments are cut like HA's LL-HLS parts, so most of them do
    not start with a keyframe; ``offset_seconds`` moves every timestamp forward.
    """
    # As HA's stream worker: frag_discont and make_non_negative keep the source timestamps
    # (the tfdt of the first fragment is not moved to 0).
    options = {
        "movflags": "empty_moov+default_base_moof+frag_keyframe+frag_discont",
        "avoid_negative_ts": "make_non_negative",
    }
    options["video_track_timescale"] = "90000"
    if part_seconds is not None:
        options["frag_duration"] = str(int(part_seconds * 1_000_000))
    buf = io.BytesIO()
    with (
        av.open(str(clip)) as source,
        av.open(buf, "w", format="mp4", container_options=options) as out,
    ):
        streams = {s.index: out.add_stream_from_template(s) for s in source.streams}
        for packet in source.demux():
            # The AAC encoder's priming packet sits before 0; cameras (RTSP) have none.
            if packet.dts is None or (packet.pts is not None and packet.pts < 0):
                continue
            shift = round(offset_seconds / packet.time_base)
            packet.dts += shift
            packet.pts = None if packet.pts is None else packet.pts + shift
            packet.stream = streams[packet.stream_index]
            out.mux(packet)
    return split_fmp4(buf.getvalue())


@dataclass(frozen=True, slots=True)
class Box:
    """One ISO BMFF box inside a buffer."""

    type: bytes
    start: int
    payload: int
    end: int


def iter_boxes(data: bytes, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """Yield the boxes between ``start`` and ``end``."""
    end = len(data) if end is None else end
    pos = start
    while pos + 8 <= end:
        size = int.from_bytes(data[pos : pos + 4], "big")
        header = 8
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
            header = 16
        elif size == 0:
            size = end - pos
        if size < header or pos + size > end:
            raise ValueError(f"bad box at {pos}: size {size}")
        yield Box(data[pos + 4 : pos + 8], pos, pos + header, pos + size)
        pos += size


def find(data: bytes, path: Sequence[bytes], start: int = 0, end: int | None = None) -> list[Box]:
    """Return every box at ``path`` (a list of nested box types) below the range."""
    found = [b for b in iter_boxes(data, start, end) if b.type == path[0]]
    if len(path) == 1:
        return found
    payload = {b"stsd": 8}  # full box + entry count before the children
    return [
        child
        for box in found
        for child in find(data, path[1:], box.payload + payload.get(box.type, 0), box.end)
    ]


def split_fmp4(data: bytes) -> tuple[bytes, list[bytes]]:
    """Split fragmented MP4 bytes into ftyp+moov and moof+mdat pairs (other boxes dropped)."""
    init = b""
    fragments: list[bytes] = []
    moof: bytes | None = None
    for box in iter_boxes(data):
        chunk = data[box.start : box.end]
        if box.type in (b"ftyp", b"moov"):
            init += chunk
        elif box.type == b"moof":
            moof = chunk
        elif box.type == b"mdat" and moof is not None:
            fragments.append(moof + chunk)
            moof = None
    return init, fragments


@dataclass(frozen=True, slots=True)
class Track:
    """What the init segment says about one track."""

    track_id: int
    handler: bytes
    timescale: int
    default_duration: int
    default_flags: int


@dataclass(frozen=True, slots=True)
class TrackRun:
    """One track's samples in one fragment."""

    base_time: int
    durations: list[int]
    flags: list[int]


def u32(data: bytes, pos: int) -> int:
    """Return the big-endian uint32 at ``pos``."""
    return int.from_bytes(data[pos : pos + 4], "big")


def parse_tracks(init: bytes) -> dict[int, Track]:
    """Return the tracks of an init segment by track_ID, with their trex defaults."""
    trex: dict[int, tuple[int, int]] = {}
    for box in find(init, [b"moov", b"mvex", b"trex"]):
        p = box.payload + 4
        trex[u32(init, p)] = (u32(init, p + 8), u32(init, p + 16))
    tracks: dict[int, Track] = {}
    for trak in find(init, [b"moov", b"trak"]):
        tkhd = find(init, [b"tkhd"], trak.payload, trak.end)[0]
        version = init[tkhd.payload]
        track_id = u32(init, tkhd.payload + (20 if version == 1 else 12))
        mdhd = find(init, [b"mdia", b"mdhd"], trak.payload, trak.end)[0]
        version = init[mdhd.payload]
        timescale = u32(init, mdhd.payload + (20 if version == 1 else 12))
        hdlr = find(init, [b"mdia", b"hdlr"], trak.payload, trak.end)[0]
        handler = init[hdlr.payload + 8 : hdlr.payload + 12]
        duration, flags = trex.get(track_id, (0, 0))
        tracks[track_id] = Track(track_id, handler, timescale, duration, flags)
    return tracks


def parse_moof(fragment: bytes, tracks: dict[int, Track]) -> dict[int, TrackRun]:
    """Return the sample durations and flags of each track in a moof (ISO 14496-12 §8.8)."""
    runs: dict[int, TrackRun] = {}
    for traf in find(fragment, [b"moof", b"traf"]):
        tfhd = find(fragment, [b"tfhd"], traf.payload, traf.end)[0]
        tf_flags = u32(fragment, tfhd.payload) & 0xFFFFFF
        track_id = u32(fragment, tfhd.payload + 4)
        pos = tfhd.payload + 8
        pos += 8 if tf_flags & 0x1 else 0  # base_data_offset
        pos += 4 if tf_flags & 0x2 else 0  # sample_description_index
        default_duration = tracks[track_id].default_duration
        default_flags = tracks[track_id].default_flags
        if tf_flags & 0x8:
            default_duration = u32(fragment, pos)
            pos += 4
        pos += 4 if tf_flags & 0x10 else 0  # default_sample_size
        if tf_flags & 0x20:
            default_flags = u32(fragment, pos)
        tfdt = find(fragment, [b"tfdt"], traf.payload, traf.end)[0]
        if fragment[tfdt.payload] == 1:
            base = int.from_bytes(fragment[tfdt.payload + 4 : tfdt.payload + 12], "big")
        else:
            base = u32(fragment, tfdt.payload + 4)
        durations: list[int] = []
        flags: list[int] = []
        for trun in find(fragment, [b"trun"], traf.payload, traf.end):
            tr_flags = u32(fragment, trun.payload) & 0xFFFFFF
            count = u32(fragment, trun.payload + 4)
            pos = trun.payload + 8
            pos += 4 if tr_flags & 0x1 else 0  # data_offset
            first_flags = None
            if tr_flags & 0x4:
                first_flags = u32(fragment, pos)
                pos += 4
            for index in range(count):
                duration, sample_flags = default_duration, default_flags
                if tr_flags & 0x100:
                    duration = u32(fragment, pos)
                    pos += 4
                pos += 4 if tr_flags & 0x200 else 0  # sample_size
                if tr_flags & 0x400:
                    sample_flags = u32(fragment, pos)
                    pos += 4
                elif index == 0 and first_flags is not None:
                    sample_flags = first_flags
                pos += 4 if tr_flags & 0x800 else 0  # composition offset
                durations.append(duration)
                flags.append(sample_flags)
        runs[track_id] = TrackRun(base, durations, flags)
    return runs


@dataclass(slots=True)
class OutputReport:
    """What the checks found in one transcoder output."""

    width: int = 0
    height: int = 0
    profile_idc: int = 0
    level_idc: int = 0
    video_codec: str = ""
    extradata: bytes = b""
    fragment_seconds: list[float] = field(default_factory=list)
    counters: list[int] = field(default_factory=list)
    video_seconds: float = 0.0
    audio: dict[str, Any] | None = None


def check_output(init: bytes, fragments: list[bytes], fragment_ms: int) -> OutputReport:
    """Assert the HKSV invariants on an output and return what it contains."""
    assert [b.type for b in iter_boxes(init)] == [b"ftyp", b"moov"]
    assert fragments, "no output fragments"
    tracks = parse_tracks(init)
    video = next(t for t in tracks.values() if t.handler == b"vide")
    audio = next((t for t in tracks.values() if t.handler == b"soun"), None)
    report = OutputReport()
    expected = {video.track_id: 0}
    if audio is not None:
        expected[audio.track_id] = 0
    aac_frame = 1024
    for index, fragment in enumerate(fragments):
        assert [b.type for b in iter_boxes(fragment)] == [b"moof", b"mdat"], index
        runs = parse_moof(fragment, tracks)
        vrun = runs[video.track_id]
        assert vrun.durations, f"fragment {index} has no video"
        assert not vrun.flags[0] & NON_SYNC_SAMPLE, f"fragment {index} starts on a non-sync sample"
        for track_id, run in runs.items():
            # Timestamps start at 0 and run on without gaps or overlaps between fragments.
            assert run.base_time == expected[track_id], (index, track_id)
            expected[track_id] = run.base_time + sum(run.durations)
        seconds = sum(vrun.durations) / video.timescale
        report.fragment_seconds.append(seconds)
        assert seconds <= fragment_ms / 1000, (index, seconds)
        if audio is not None and audio.track_id in runs:
            arun = runs[audio.track_id]
            assert sum(arun.durations) <= (fragment_ms / 1000) * audio.timescale + aac_frame
            # Audio in a fragment covers the same time as its video, within one AAC frame.
            v_start = vrun.base_time / video.timescale
            a_start = arun.base_time / audio.timescale
            assert abs(a_start - v_start) <= aac_frame / audio.timescale + 1e-6, index
    report.video_seconds = expected[video.track_id] / video.timescale
    _decode(init, fragments, report)
    return report


def _decode(init: bytes, fragments: list[bytes], report: OutputReport) -> None:
    """Decode the whole output with PyAV, check keyframes per fragment, fill the report."""
    data = init + b"".join(fragments)
    starts = []
    pos = len(init)
    for fragment in fragments:
        starts.append(pos)
        pos += len(fragment)
    first_in_fragment: dict[int, bool] = {}
    with av.open(io.BytesIO(data)) as container:
        vstream = container.streams.video[0]
        ctx = vstream.codec_context
        report.video_codec = ctx.name
        report.width, report.height = ctx.width, ctx.height
        extradata = ctx.extradata or b""
        report.extradata = extradata
        assert extradata[:1] == b"\x01", "video extradata is not an avcC record"
        report.profile_idc, report.level_idc = extradata[1], extradata[3]
        astream = container.streams.audio[0] if container.streams.audio else None
        samples: list[np.ndarray] = []
        for packet in container.demux():
            if packet.dts is None:
                continue
            if packet.stream is vstream and packet.pos is not None:
                index = max(i for i, s in enumerate(starts) if s <= packet.pos)
                first_in_fragment.setdefault(index, packet.is_keyframe)
                report.counters.extend(read_frame_counter(f) for f in packet.decode())
            elif astream is not None and packet.stream is astream:
                samples.extend(f.to_ndarray() for f in packet.decode())
        report.counters.extend(read_frame_counter(f) for f in vstream.codec_context.decode(None))
    assert sorted(first_in_fragment) == list(range(len(fragments)))
    assert all(first_in_fragment.values()), first_in_fragment
    if astream is not None:
        actx = astream.codec_context
        pcm = np.concatenate(samples, axis=1) if samples else np.zeros((1, 0))
        report.audio = {
            "codec": actx.name,
            "profile": actx.profile,
            "rate": actx.sample_rate,
            "channels": actx.channels,
            "seconds": pcm.shape[1] / actx.sample_rate,
            "peak": float(np.abs(pcm).max()) if pcm.size else 0.0,
        }


async def run_transcoder(
    target: TranscodeTarget,
    init: bytes,
    items: Sequence[InputItem],
    **kwargs: Any,
) -> tuple[bytes | None, list[bytes], TranscodeStats]:
    """Feed ``items`` while reading the output; return the output init, fragments and stats."""
    transcoder = Transcoder(target, log_name="test", **kwargs)
    try:
        await transcoder.start(init)

        async def feed() -> None:
            for item in items:
                if isinstance(item, NewInit):
                    await transcoder.new_source_init(item.data)
                else:
                    await transcoder.feed(item)
            transcoder.end_of_input()

        feeder = asyncio.create_task(feed())
        output: list[bytes] = []
        while (chunk := await transcoder.read()) is not None:
            output.append(chunk)
        await feeder
    finally:
        await transcoder.close()
    if not output:
        return None, [], transcoder.stats
    return output[0], output[1:], transcoder.stats
