"""What a transcoded recording must be: targets, H.264 level limits, plans and statistics.

Pure (no PyAV), shared by the PyAV side (pipeline.py, av_media.py, av_encode.py) and transcode.py.
"""

from __future__ import annotations

from dataclasses import astuple, dataclass
from fractions import Fraction
import math
from typing import Final

from ..media.h264 import LEVEL_LIMITS, H264Level, H264Profile

_VBV_BUFFER_SECONDS: Final = 2
_HIGH_PROFILE_RATE_FACTOR: Final = Fraction(5, 4)  # H.264 Table A-2 cpbBrVclFactor 1250/1000
_AAC_SAMPLE_RATES: Final = frozenset({8000, 16000, 24000, 32000, 44100, 48000})


@dataclass(frozen=True, slots=True)
class AudioTarget:
    """The AAC-LC audio the hub selected."""

    sample_rate: int
    channels: int
    bitrate_kbps: int

    def __post_init__(self) -> None:
        """Reject settings the AAC-LC encoder cannot produce."""
        if (
            self.sample_rate not in _AAC_SAMPLE_RATES
            or self.channels not in (1, 2)
            or self.bitrate_kbps < 1
        ):
            raise ValueError(f"unsupported audio target: {self!r}")


@dataclass(frozen=True, slots=True)
class TranscodeTarget:
    """What the output must be: the hub's selection, capped by the caller."""

    width: int
    height: int
    fps: int
    profile: H264Profile
    level: H264Level
    bitrate_kbps: int
    fragment_length_ms: int
    audio: AudioTarget | None
    copy_video: bool = False

    def __post_init__(self) -> None:
        """Reject settings no encoder can honour."""
        if min(self.width, self.height) < 2 or min(self.fps, self.bitrate_kbps) < 1:
            raise ValueError(f"unsupported video target: {self!r}")
        if self.fragment_length_ms < 100:
            raise ValueError(f"fragment length too short: {self.fragment_length_ms} ms")


@dataclass(frozen=True, slots=True)
class TranscodeStats:
    """A snapshot of one transcoding session."""

    frames_in: int = 0  # source video frames decoded (packets, when copying video)
    frames_out: int = 0  # video frames written to the output
    frames_dropped: int = 0  # source frames left out (frame-rate cap, before the first keyframe)
    fragments_out: int = 0
    bytes_out: int = 0  # init segment included
    media_seconds: float = 0.0  # output video duration so far
    busy_seconds: float = 0.0  # worker time spent working, waits for input and output excluded
    skipped_fragments: int = 0  # input fragments dropped as unreadable
    decode_errors: int = 0
    discontinuities: int = 0  # timestamp jumps and new init segments absorbed
    width: int = 0
    height: int = 0
    fps: int = 0
    level: H264Level | None = None
    last_error: str | None = None
    encoder: str = ""  # the H.264 encoder used ("" while copying video)

    @property
    def speed(self) -> float:
        """Return the processing speed as a multiple of real time (0.0 before any output)."""
        return self.media_seconds / self.busy_seconds if self.busy_seconds > 0 else 0.0


class TranscodeError(Exception):
    """The input cannot be transcoded."""


@dataclass(slots=True)
class Counters:
    """Mutable counters the worker updates and ``Transcoder.stats`` snapshots (same fields)."""

    frames_in: int = 0
    frames_out: int = 0
    frames_dropped: int = 0
    fragments_out: int = 0
    bytes_out: int = 0
    media_seconds: float = 0.0
    busy_seconds: float = 0.0
    skipped_fragments: int = 0
    decode_errors: int = 0
    discontinuities: int = 0
    width: int = 0
    height: int = 0
    fps: int = 0
    level: H264Level | None = None
    last_error: str | None = None
    encoder: str = ""

    def snapshot(self) -> TranscodeStats:
        """Return the counters as a frozen snapshot."""
        return TranscodeStats(*astuple(self))


def scaled_size(
    src_width: int, src_height: int, max_width: int, max_height: int
) -> tuple[int, int]:
    """Return the even size that fits the source inside the maximum, keeping aspect, never up."""
    scale = min(Fraction(max_width, src_width), Fraction(max_height, src_height), Fraction(1))
    max_mbs = LEVEL_LIMITS[H264Level.LEVEL4_0].max_fs
    while True:
        width = max(2, int(src_width * scale) & ~1)
        height = max(2, int(src_height * scale) & ~1)
        if _macroblocks(width, height) <= max_mbs:
            return width, height
        scale *= Fraction(63, 64)


def picture_size(
    src_width: int, src_height: int, width: int, height: int
) -> tuple[int, int, int, int]:
    """Return (x, y, w, h): the source's shape fitted inside ``width``x``height``, centred.

    The rest of the frame is bars, so the coded size is exactly the selected one whatever the
    camera's aspect ratio (a 4:3 camera under a 16:9 selection is pillarboxed). Offsets and
    sizes are even, as 4:2:0 chroma needs.
    """
    scale = min(Fraction(width, src_width), Fraction(height, src_height))
    fitted_w = min(width, max(2, round(src_width * scale / 2) * 2))
    fitted_h = min(height, max(2, round(src_height * scale / 2) * 2))
    x = (width - fitted_w) // 4 * 2
    y = (height - fitted_h) // 4 * 2
    return x, y, fitted_w, fitted_h


def fit_level(width: int, height: int, fps: int, requested: H264Level) -> tuple[H264Level, int]:
    """Return the lowest level from ``requested`` up that holds the picture, and the fps to use.

    A level too small for the selected size is raised rather than the picture shrunk; past 4.0
    (HAP's highest) the frame rate is lowered instead (docs/peers.md §3 #20).
    """
    mbs = _macroblocks(width, height)
    for level in H264Level:
        limits = LEVEL_LIMITS[level]
        if level >= requested and mbs <= limits.max_fs and mbs * fps <= limits.max_mbps:
            return level, fps
    return H264Level.LEVEL4_0, max(1, min(fps, LEVEL_LIMITS[H264Level.LEVEL4_0].max_mbps // mbs))


def _macroblocks(width: int, height: int) -> int:
    """Return the number of 16x16 macroblocks in a picture."""
    return math.ceil(width / 16) * math.ceil(height / 16)


@dataclass(frozen=True, slots=True)
class VideoPlan:
    """The encoder settings derived from the target and the source size."""

    width: int
    height: int
    fps: int
    level: H264Level
    keyint: int
    bitrate_kbps: int
    vbv_buffer_kbits: int
    # Where the camera's picture goes inside the coded frame (x, y, width, height).
    picture: tuple[int, int, int, int] = (0, 0, 0, 0)


def plan_video(target: TranscodeTarget, src_width: int, src_height: int) -> VideoPlan:
    """Return the encoder settings for ``target`` given the source size.

    The coded size is exactly the selected one (the hub asked for it; docs/peers.md lists 4:3
    offers among the causes of hub failures, so the offer stays 16:9 and the picture is
    fitted inside with bars). Encoding cost follows the coded size, so scaling a smaller
    camera up to fill it costs only the scaler.
    """
    width, height = scaled_size(target.width, target.height, target.width, target.height)
    picture = picture_size(src_width, src_height, width, height)
    level, fps = fit_level(width, height, target.fps, target.level)
    limits = LEVEL_LIMITS[level]
    factor = _HIGH_PROFILE_RATE_FACTOR if target.profile == H264Profile.HIGH else Fraction(1)
    bitrate = min(target.bitrate_kbps, int(limits.max_br_kbps * factor))
    buffer = min(bitrate * _VBV_BUFFER_SECONDS, int(limits.max_cpb_kbits * factor))
    keyint = max(1, math.ceil(fps * target.fragment_length_ms / 1000))
    return VideoPlan(width, height, fps, level, keyint, bitrate, buffer, picture)
