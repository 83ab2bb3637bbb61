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
from typing import Any, Final

import av

from ..recording.fmp4 import BOX_HEADER, LARGE_BOX_HEADER

THUMBNAIL_WIDTH: Final = 320
THUMBNAIL_QUALITY: Final = 80


class FinalizeError(Exception):
    """The partial file holds nothing playable."""


@dataclass(frozen=True, slots=True)
class Finalized:
    """What a finalized clip holds."""

    duration_seconds: float
    video_packets: int
    audio_packets: int
    size: int


def complete_prefix(path: Path) -> int:
    """Return how many leading bytes of a partial file are whole boxes ending in a fragment.

    A crash or power cut can cut the last fragment short; everything before it is kept.
    Returns 0 when not even one complete fragment follows the init segment.
    """
    end = 0
    seen_moov = False
    size = path.stat().st_size
    with path.open("rb") as file:
        position = 0
        # Only the box headers are read: a 3-minute clip is tens of MB.
        while position + BOX_HEADER <= size:
            file.seek(position)
            header = file.read(LARGE_BOX_HEADER)
            box_size = int.from_bytes(header[:4])
            box_type = header[4:8]
            if box_size == 1 and len(header) == LARGE_BOX_HEADER:
                box_size = int.from_bytes(header[8:16])
            if box_size < BOX_HEADER or position + box_size > size:
                break  # a torn box at the end: keep what came before it
            position += box_size
            if box_type == b"moov":
                seen_moov = True
            elif box_type == b"mdat" and seen_moov:
                end = position
    return end


def remux(source: Path, target: Path, *, length: int | None = None) -> Finalized:
    """Stream-copy ``source`` (init + fragments) into a faststart MP4 at ``target``.

    ``length`` limits how much of the source is read (the complete prefix of a torn file).
    The target is written under a temporary name and renamed over ``target``.
    """
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        data: Any = str(source)
        if length is not None and length < source.stat().st_size:
            with source.open("rb") as file:
                data = io.BytesIO(file.read(length))
        result = _remux(data, temporary)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return result


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
        with av.open(str(temporary), "w", format="mp4", options={"movflags": "+faststart"}) as out:
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
