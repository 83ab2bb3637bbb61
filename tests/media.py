"""Generate real H.264/H.265/AAC test media with PyAV, and read it back.

Every video frame carries its frame index as a row of black/white blocks across the top
of the picture (``COUNTER_BITS`` blocks, most significant first), big enough to survive
scaling and lossy coding, so a test can tell exactly which source frames a recording holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
from av.audio.frame import AudioFrame
from av.video.frame import PictureType, VideoFrame
import numpy as np

COUNTER_BITS = 16
# Fraction of the picture height used by the counter band.
_BAND = 1 / 6


@dataclass(frozen=True, slots=True)
class ClipSpec:
    """What to generate."""

    seconds: float = 10.0
    width: int = 640
    height: int = 360
    fps: int = 25
    gop_seconds: float = 2.0
    video_codec: str = "h264"  # "h264" or "hevc"
    video_bitrate_kbps: int = 800
    h264_profile: str = "main"
    h264_level: str | None = None  # e.g. "4.1"
    audio_codec: str | None = "aac"  # None for video only
    audio_rate: int = 32000
    audio_channels: int = 1
    container: str = "mpegts"  # "mpegts" or "mp4"
    # A camera that starts each client with a keyframe: the first GOP has this length, the
    # rest ``gop_seconds`` (H.264 only).
    first_gop_seconds: float | None = None


def _luma(spec: ClipSpec, index: int) -> np.ndarray:
    """Return the Y plane for frame ``index``: moving texture plus the counter band."""
    h, w = spec.height, spec.width
    ys = np.arange(h, dtype=np.int32)[:, None]
    xs = np.arange(w, dtype=np.int32)[None, :]
    plane = ((xs * 2 + ys + index * 4) % 160 + 48).astype(np.uint8)
    band = max(8, int(h * _BAND))
    block = w // COUNTER_BITS
    for bit in range(COUNTER_BITS):
        on = (index >> (COUNTER_BITS - 1 - bit)) & 1
        plane[:band, bit * block : (bit + 1) * block] = 235 if on else 16
    return plane


def make_video_frame(spec: ClipSpec, index: int) -> VideoFrame:
    """Return a yuv420p frame that shows frame counter ``index``."""
    frame = VideoFrame(spec.width, spec.height, "yuv420p")
    y = _luma(spec, index)
    frame.planes[0].update(np.ascontiguousarray(_pad(y, frame.planes[0].line_size)))
    chroma = np.full((spec.height // 2, frame.planes[1].line_size), 128, dtype=np.uint8)
    frame.planes[1].update(chroma)
    frame.planes[2].update(chroma)
    frame.pts = index
    frame.time_base = Fraction(1, spec.fps)
    return frame


def _pad(plane: np.ndarray, line_size: int) -> np.ndarray:
    """Pad rows of ``plane`` to the frame's line size."""
    if plane.shape[1] == line_size:
        return plane
    out = np.zeros((plane.shape[0], line_size), dtype=np.uint8)
    out[:, : plane.shape[1]] = plane
    return out


def read_frame_counter(frame: VideoFrame) -> int:
    """Return the frame index drawn into ``frame`` (any size, any pixel format)."""
    gray = frame.to_ndarray(format="gray")
    # A pillarboxed picture (4:3 in a 16:9 frame): read inside the black bars. Picture columns
    # always hold texture (luma >= 48) below the counter band.
    lit = np.flatnonzero(gray.max(axis=0) > 32)
    if len(lit):
        gray = gray[:, lit[0] : lit[-1] + 1]
    h, w = gray.shape
    band = max(8, int(h * _BAND))
    block = w / COUNTER_BITS
    value = 0
    for bit in range(COUNTER_BITS):
        x0 = int(bit * block + block / 4)
        x1 = max(x0 + 1, int((bit + 1) * block - block / 4))
        cell = gray[band // 4 : band - band // 4, x0:x1]
        value = (value << 1) | int(cell.mean() > 128)
    return value


def _audio_frames(spec: ClipSpec, stream: av.audio.stream.AudioStream) -> Iterator[AudioFrame]:
    """Yield a quiet tone in the encoder's frame size."""
    samples = stream.codec_context.frame_size or 1024
    layout = "mono" if spec.audio_channels == 1 else "stereo"
    total = int(spec.seconds * spec.audio_rate)
    pts = 0
    while pts < total:
        t = (np.arange(samples) + pts) / spec.audio_rate
        tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        data = np.tile(tone, (spec.audio_channels, 1))
        frame = AudioFrame.from_ndarray(data, format="fltp", layout=layout)
        frame.sample_rate = spec.audio_rate
        frame.pts = pts
        frame.time_base = Fraction(1, spec.audio_rate)
        yield frame
        pts += samples


def write_clip(path: Path, spec: ClipSpec) -> Path:
    """Encode a clip following ``spec`` into ``path`` and return it."""
    gop = max(1, round(spec.fps * spec.gop_seconds))
    options = {"movflags": "faststart"} if spec.container == "mp4" else {}
    with av.open(str(path), "w", format=spec.container, options=options) as out:
        codec = "libx264" if spec.video_codec == "h264" else "libx265"
        video = out.add_stream(codec, rate=spec.fps)
        video.width, video.height = spec.width, spec.height
        video.pix_fmt = "yuv420p"
        video.bit_rate = spec.video_bitrate_kbps * 1000
        video.codec_context.gop_size = gop
        opts = {"preset": "ultrafast", "bf": "0"}
        forced: set[int] = set()
        if spec.video_codec == "h264":
            opts |= {"sc_threshold": "0", "keyint_min": str(gop), "profile": spec.h264_profile}
            if spec.h264_level:
                opts["level"] = spec.h264_level
            x264 = f"keyint={gop}:min-keyint={gop}:scenecut=0"
            if spec.first_gop_seconds is not None:
                first = round(spec.fps * spec.first_gop_seconds)
                total = round(spec.seconds * spec.fps)
                forced = {0, *range(first, total, gop)}
                # Keyframes only where forced: keyint beyond the clip.
                x264 = f"keyint={total + 1}:min-keyint=1:scenecut=0"
                opts["forced-idr"] = "1"
            opts["x264-params"] = x264
        else:
            opts["x265-params"] = f"keyint={gop}:min-keyint={gop}:scenecut=0:log-level=error"
        video.codec_context.options = opts
        audio = None
        if spec.audio_codec:
            audio = out.add_stream(spec.audio_codec, rate=spec.audio_rate)
            audio.layout = "mono" if spec.audio_channels == 1 else "stereo"
            audio.bit_rate = 64000
        frames = round(spec.seconds * spec.fps)
        audio_iter = _audio_frames(spec, audio) if audio is not None else iter(())
        pending_audio = next(audio_iter, None)
        for index in range(frames):
            frame = make_video_frame(spec, index)
            if forced:
                frame.pict_type = PictureType.I if index in forced else PictureType.NONE
            out.mux(video.encode(frame))
            # Interleave audio up to the video time so demuxers see both tracks early.
            while audio is not None and pending_audio is not None:
                if pending_audio.pts / spec.audio_rate > (index + 1) / spec.fps:
                    break
                out.mux(audio.encode(pending_audio))
                pending_audio = next(audio_iter, None)
        out.mux(video.encode(None))
        if audio is not None:
            while pending_audio is not None:
                out.mux(audio.encode(pending_audio))
                pending_audio = next(audio_iter, None)
            out.mux(audio.encode(None))
    return path


def decode_counters(data: bytes | Path) -> list[int]:
    """Decode every video frame of an MP4 (bytes or path) and return their counters."""
    import io

    source = io.BytesIO(data) if isinstance(data, bytes | bytearray) else str(data)
    with av.open(source) as container:
        return [read_frame_counter(f) for f in container.decode(video=0)]
