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

from ..recording.fmp4 import Fmp4Error, iter_boxes

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
    data = path.read_bytes()
    end = 0
    seen_moov = False
    try:
        for box in iter_boxes(data):
            if box.type == b"moov":
                seen_moov = True
            elif box.type == b"mdat" and seen_moov:
                end = box.end
    except Fmp4Error:
        pass  # a torn box at the end: keep what came before it
    return end


def remux(source: Path, target: Path, *, length: int | None = None) -> Finalized:
    """Stream-copy ``source`` (init + fragments) into a faststart MP4 at ``target``.

    ``length`` limits how much of the source is read (the complete prefix of a torn file).
    The target is written under a temporary name and renamed over ``target``.
    """
    temporary = target.with_name(f".{target.name}.tmp")
    try:
        data: Any = str(source)
        if length is not None:
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
        packets = [
            p for p in _demux(inp, streams) if p.dts is not None and p.size > 0
        ]  # a few MB per clip: the whole clip is held once, to find its start
        if not any(p.stream.type == "video" for p in packets):
            raise FinalizeError("the recording has no video")
        # One offset in seconds for every track keeps audio and video in step.
        start = min(Fraction(p.dts) * p.time_base for p in packets)
        end = Fraction(0)
        counts = {"video": 0, "audio": 0}
        with av.open(str(temporary), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            mapping = {s.index: out.add_stream_from_template(s) for s in streams}
            for packet in packets:
                time_base = packet.time_base
                shift = round(start / time_base)
                packet.dts -= shift
                if packet.pts is not None:
                    packet.pts -= shift
                if packet.stream.type == "video" and packet.pts is not None:
                    end = max(end, Fraction(packet.pts + (packet.duration or 0)) * time_base)
                counts[packet.stream.type] += 1
                packet.stream = mapping[packet.stream.index]
                out.mux(packet)
    return Finalized(
        duration_seconds=float(end),
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
