"""Turn a recording's partial fragmented MP4 into a file that plays in a plain <video>.

Runs in the executor only (PyAV, file I/O). The partial file is exactly what the hub got:
the init segment, then moof+mdat fragments. Browsers show fragmented MP4 with wrong
durations and poor seeking (docs/local-clips.md), so each clip is remuxed by stream copy —
no decode — into a progressive MP4 (ftyp, moov, mdat: the index first) whose timestamps
start at 0, written beside the target and renamed over it. One keyframe is decoded for the
thumbnail.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
import io
import os
from pathlib import Path
from typing import Any, BinaryIO, Final

import av

# PyAV's to_image imports Pillow on first use; importing it with the integration keeps that
# (with the GIL held) out of the first finalize (benchmarks/README.md).
import PIL.Image  # noqa: F401

from ..media.fmp4.boxes import BOX_HEADER, LARGE_BOX_HEADER, Box, iter_boxes

THUMBNAIL_WIDTH: Final = 320
THUMBNAIL_QUALITY: Final = 80
COPY_CHUNK: Final = 1024 * 1024


class FinalizeError(Exception):
    """The partial file holds nothing playable."""


@dataclass(frozen=True, slots=True)
class Finalized:
    """What a finalized clip holds."""

    duration_seconds: float
    video_packets: int
    audio_packets: int
    size: int


def top_level_boxes(file: BinaryIO, size: int) -> list[tuple[bytes, int, int]]:
    """Return (type, start, end) of the whole top-level boxes, reading only their headers.

    Stops at a box that is torn (runs past the end) or malformed.
    """
    boxes = []
    position = 0
    while position + BOX_HEADER <= size:
        file.seek(position)
        header = file.read(LARGE_BOX_HEADER)
        box_size = int.from_bytes(header[:4])
        if box_size == 1 and len(header) == LARGE_BOX_HEADER:
            box_size = int.from_bytes(header[8:16])
        if box_size < BOX_HEADER or position + box_size > size:
            break
        boxes.append((header[4:8], position, position + box_size))
        position += box_size
    return boxes


def complete_prefix(path: Path) -> int:
    """Return how many leading bytes of a partial file are whole boxes ending in a fragment.

    A crash or power cut can cut the last fragment short; everything before it is kept.
    Returns 0 when not even one complete fragment follows the init segment.
    """
    end = 0
    seen_moov = False
    with path.open("rb") as file:
        # Only the box headers are read: a 3-minute clip is tens of MB.
        for box_type, _start, box_end in top_level_boxes(file, path.stat().st_size):
            if box_type == b"moov":
                seen_moov = True
            elif box_type == b"mdat" and seen_moov:
                end = box_end
    return end


def remux(source: Path, target: Path, *, length: int | None = None) -> Finalized:
    """Stream-copy ``source`` (init + fragments) into a faststart MP4 at ``target``.

    ``length`` limits how much of the source is read (the complete prefix of a torn file).
    The target is written under a temporary name and renamed over ``target``.
    """
    temporary = target.with_name(f".{target.name}.tmp")
    indexed = target.with_name(f".{target.name}.index.tmp")
    try:
        data: Any = str(source)
        if length is not None and length < source.stat().st_size:
            with source.open("rb") as file:
                data = io.BytesIO(file.read(length))
        result = _remux(data, temporary)
        size = index_first(temporary, indexed)
        os.replace(indexed, target)
    finally:
        temporary.unlink(missing_ok=True)
        indexed.unlink(missing_ok=True)
    return Finalized(result.duration_seconds, result.video_packets, result.audio_packets, size)


def _remux(source: Any, temporary: Path) -> Finalized:
    """Copy every packet, shifted so the clip's earliest decode time is 0."""
    with av.open(source, "r", format="mp4") as inp:
        streams = [s for s in inp.streams if s.type in ("video", "audio")]
        if not any(s.type == "video" for s in streams):
            raise FinalizeError("the recording has no video track")
        # The whole clip is held once (tens of MB at most) to find where it starts.
        packets = [p for p in _demux(inp, streams) if p.dts is not None and p.size > 0]
        first: dict[int, int] = {}
        for packet in packets:
            first.setdefault(packet.stream.index, packet.dts)  # decode order: the smallest
        by_index = {s.index: s for s in streams}
        video = next((s for s in streams if s.type == "video" and s.index in first), None)
        if video is None:
            raise FinalizeError("the recording has no video")
        # One offset in seconds for every track keeps audio and video in step.
        start = min(Fraction(dts) * by_index[index].time_base for index, dts in first.items())
        shift = {index: round(start / by_index[index].time_base) for index in first}
        video_end = 0
        counts = {"video": 0, "audio": 0}
        # No +faststart: PyAV holds the GIL while ffmpeg moves the index in the trailer
        # (~80 ms for 3 minutes, benchmarks/README.md); index_first does it without.
        with av.open(str(temporary), "w", format="mp4") as out:
            mapping = {s.index: out.add_stream_from_template(s) for s in streams}
            for packet in packets:
                index = packet.stream.index
                packet.dts -= shift[index]
                if packet.pts is not None:
                    packet.pts -= shift[index]
                    if index == video.index:
                        video_end = max(video_end, packet.pts + (packet.duration or 0))
                counts["video" if index == video.index else "audio"] += 1
                packet.stream = mapping[index]
                out.mux(packet)
        duration = float(video_end * video.time_base)
    return Finalized(
        duration_seconds=duration,
        video_packets=counts["video"],
        audio_packets=counts["audio"],
        size=temporary.stat().st_size,
    )


def index_first(source: Path, target: Path) -> int:
    """Write ``source`` (ftyp, ..., mdat, moov) to ``target`` as ftyp, moov, ... (faststart).

    The moov moves in front of the media, so every chunk offset (stco, co64) grows by its
    size. The media itself is copied with plain file I/O. Returns the target's size.
    """
    size = source.stat().st_size
    with source.open("rb") as file:
        boxes = top_level_boxes(file, size)
        if not boxes or boxes[-1][2] != size:
            raise FinalizeError("the remuxed file is incomplete")
        moov = next(((s, e) for t, s, e in boxes if t == b"moov"), None)
        ftyp = next(((s, e) for t, s, e in boxes if t == b"ftyp"), None)
        if moov is None or ftyp is None or ftyp[0] != 0:
            raise FinalizeError("the remuxed file has no ftyp or moov")
        file.seek(moov[0])
        index = bytearray(file.read(moov[1] - moov[0]))
        _shift_chunk_offsets(index, len(index))
        with target.open("wb") as out:
            file.seek(0)
            out.write(file.read(ftyp[1]))
            out.write(index)
            # Everything else, in order (free, mdat), without the old moov.
            for box_type, start, end in boxes:
                if box_type in (b"ftyp", b"moov"):
                    continue
                file.seek(start)
                remaining = end - start
                while remaining:
                    chunk = file.read(min(remaining, COPY_CHUNK))
                    if not chunk:
                        raise FinalizeError("the remuxed file shrank while copying")
                    out.write(chunk)
                    remaining -= len(chunk)
    return target.stat().st_size


def _shift_chunk_offsets(moov: bytearray, delta: int) -> None:
    """Add ``delta`` to every chunk offset of every track in a moov box (in place)."""
    for trak in iter_boxes(moov, BOX_HEADER, len(moov)):
        if trak.type != b"trak":
            continue
        stbl = _descend(moov, trak, (b"mdia", b"minf", b"stbl"))
        if stbl is None:
            continue
        for table in iter_boxes(moov, stbl.payload_start, stbl.end):
            if table.type not in (b"stco", b"co64"):
                continue
            width = 4 if table.type == b"stco" else 8
            count = int.from_bytes(moov[table.payload_start + 4 : table.payload_start + 8])
            position = table.payload_start + 8
            if position + count * width > table.end:
                raise FinalizeError("a chunk offset table is truncated")
            for _ in range(count):
                value = int.from_bytes(moov[position : position + width]) + delta
                if value >= 1 << (8 * width):
                    raise FinalizeError("a chunk offset no longer fits its table")
                moov[position : position + width] = value.to_bytes(width)
                position += width


def _descend(buffer: bytearray, box: Box, path: tuple[bytes, ...]) -> Box | None:
    """Return the box at ``path`` below ``box`` (first match at each level)."""
    current = box
    for name in path:
        found = None
        for child in iter_boxes(buffer, current.payload_start, current.end):
            if child.type == name:
                found = child
                break
        if found is None:
            return None
        current = found
    return current


def _demux(container: Any, streams: list[Any]) -> Any:
    """Yield packets until the end, or until a damaged tail stops the demuxer."""
    try:
        yield from container.demux(streams)
    except av.FFmpegError:
        return


def thumbnail(clip: Path, target: Path, *, after_seconds: float) -> bool:
    """Write a JPEG of the first keyframe at or after ``after_seconds`` (the pre-roll).

    Falls back to the last keyframe before it (a clip shorter than its pre-roll). Returns
    False when no frame could be decoded; nothing is written then.
    """
    with av.open(str(clip)) as container:
        stream = container.streams.video[0]
        time_base = stream.time_base
        chosen = None
        for packet in _demux(container, [stream]):
            if not packet.is_keyframe or packet.pts is None or time_base is None:
                continue
            chosen = packet
            if packet.pts * time_base >= after_seconds:
                break
        if chosen is None:
            return False
        codec = stream.codec_context
        frames = [*codec.decode(chosen), *codec.decode(None)]
    if not frames:
        return False
    frame = frames[0]
    height = max(2, round(frame.height * THUMBNAIL_WIDTH / frame.width / 2) * 2)
    image = frame.reformat(width=THUMBNAIL_WIDTH, height=height).to_image()  # type: ignore[no-untyped-call]
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        image.save(temporary, format="JPEG", quality=THUMBNAIL_QUALITY)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return True
