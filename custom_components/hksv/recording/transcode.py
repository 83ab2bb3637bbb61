"""Re-encode an fMP4 camera stream to the selected HKSV recording configuration with PyAV.

This is the fallback for sources that do not fit what the hub selected; copying is the normal
path. All PyAV work runs on one dedicated worker thread per session, and the event loop only
hands bytes over through thread-safe queues (docs/STYLE.md, Layer 3 point 7).

Output size: the source is scaled down to fit inside the selected size with its aspect ratio
kept, never up, and never padded, so a 640x360 source stays 640x360 under a 1280x720 selection
(docs/peers.md §3 #7: upscaling costs speed and buys nothing; hubs do not check the size).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass
from enum import Enum, IntEnum
from fractions import Fraction
import io
import logging
import math
import os
import queue
import threading
import time
from typing import TYPE_CHECKING, Final, NamedTuple

import av
from av.audio.fifo import AudioFifo
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.video.frame import PictureType
from av.video.reformatter import ColorRange, Interpolation, VideoReformatter
import numpy as np

if TYPE_CHECKING:
    from av.audio.codeccontext import AudioCodecContext
    from av.audio.stream import AudioStream
    from av.container import InputContainer, OutputContainer
    from av.packet import Packet
    from av.rational import AVRational
    from av.stream import Stream
    from av.video.codeccontext import VideoCodecContext
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

_LOGGER = logging.getLogger(__name__)

type _Packet = Packet[Stream]

DEFAULT_MAX_QUEUED_INPUT: Final = 32
DEFAULT_MAX_QUEUED_OUTPUT: Final = 8

# 1080p30 -> 720p on the 2-core dev box (benchmarks/README.md): superfast 2.0-3.3x real time
# across runs, veryfast ~2x, ultrafast ~5x. superfast keeps CABAC and 8x8 transforms, so the
# SPS signals the selected Main/High profile (ultrafast falls back to Constrained Baseline),
# and has no lookahead, so frames leave the encoder as soon as they are coded.
X264_PRESET: Final = "superfast"
OUTPUT_TIMESCALE: Final = 90_000  # the video timescale HA's stream worker writes as well
_OUTPUT_TIME_BASE: Final = Fraction(1, OUTPUT_TIMESCALE)
# The flags HN-based plugins use (hksv-protocol.md §7.2); skip_sidx/skip_trailer leave only
# ftyp, moov, then one moof+mdat pair per keyframe (all tracks share the moof).
_MOVFLAGS: Final = "frag_keyframe+empty_moov+default_base_moof+skip_sidx+skip_trailer"
# Codec parameters come from the init segment, so the demuxer need not probe any samples.
_DEMUX_OPTIONS: Final = {"probesize": "32", "analyzeduration": "0"}
_X264_PROFILES: Final = {0: "baseline", 1: "main", 2: "high"}
_VBV_BUFFER_SECONDS: Final = 2
_HIGH_PROFILE_RATE_FACTOR: Final = Fraction(5, 4)  # H.264 Table A-2 cpbBrVclFactor 1250/1000
_MAX_ENCODER_THREADS: Final = 6  # x264's own 1.5 x cores, capped: each thread adds a frame of delay
_MAX_DECODER_THREADS: Final = 2
_INTERPOLATION: Final = Interpolation.BILINEAR
_AAC_FRAME_SAMPLES: Final = 1024
_AAC_SAMPLE_RATES: Final = frozenset({8000, 16000, 24000, 32000, 44100, 48000})
# A forward jump larger than this (capped at half a fragment, so one gap never spans two
# fragment boundaries) or any step back in video timestamps starts a new output segment.
_MAX_VIDEO_GAP: Final = Fraction(2)
_AUDIO_JITTER: Final = Fraction(1, 10)  # audio this close to its slot is taken as contiguous
_AUDIO_MAX_FILL: Final = Fraction(2)  # gaps up to this are filled with silence, beyond: resync
# Audio that stops must not stall the muxer, which holds video back until audio catches up.
_AUDIO_MAX_LAG: Final = Fraction(1)
_MAX_BAD_FRAGMENTS: Final = 3  # undecodable input fragments in a row before giving up
_STOP_POLL_SECONDS: Final = 0.5  # a worker waiting for output room rechecks for a stop
_BOX_HEADER: Final = 8


class H264Profile(IntEnum):
    """H.264 profile, with HAP's values (hksv-protocol.md §2.4)."""

    BASELINE = 0
    MAIN = 1
    HIGH = 2


class H264Level(IntEnum):
    """H.264 level, with HAP's values; HAP's enum ends at 4.0."""

    LEVEL3_1 = 0
    LEVEL3_2 = 1
    LEVEL4_0 = 2


class _LevelLimits(NamedTuple):
    """Limits of one H.264 level (H.264 Table A-1; rates for Baseline/Main)."""

    name: str
    max_mbps: int
    max_fs: int
    max_br_kbps: int
    max_cpb_kbits: int


_LEVEL_LIMITS: Final = {
    H264Level.LEVEL3_1: _LevelLimits("3.1", 108_000, 3_600, 14_000, 14_000),
    H264Level.LEVEL3_2: _LevelLimits("3.2", 216_000, 5_120, 20_000, 20_000),
    H264Level.LEVEL4_0: _LevelLimits("4.0", 245_760, 8_192, 20_000, 25_000),
}


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

    @property
    def speed(self) -> float:
        """Return the processing speed as a multiple of real time (0.0 before any output)."""
        return self.media_seconds / self.busy_seconds if self.busy_seconds > 0 else 0.0


class TranscodeError(Exception):
    """The input cannot be transcoded."""


class _Stopped(Exception):
    """The session was closed while the worker was busy."""


class _Control(Enum):
    """Markers on the input queue."""

    END = 1
    STOP = 2


@dataclass(frozen=True, slots=True)
class _NewInit:
    """A new source init segment (a discontinuity) on the input queue."""

    data: bytes


type _InputItem = bytes | _NewInit | _Control


@dataclass(slots=True)
class _Counters:
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

    def snapshot(self) -> TranscodeStats:
        """Return the counters as a frozen snapshot."""
        return TranscodeStats(*astuple(self))


def scaled_size(
    src_width: int, src_height: int, max_width: int, max_height: int
) -> tuple[int, int]:
    """Return the even size that fits the source inside the maximum, keeping aspect, never up."""
    scale = min(Fraction(max_width, src_width), Fraction(max_height, src_height), Fraction(1))
    max_mbs = _LEVEL_LIMITS[H264Level.LEVEL4_0].max_fs
    while True:
        width = max(2, int(src_width * scale) & ~1)
        height = max(2, int(src_height * scale) & ~1)
        if _macroblocks(width, height) <= max_mbs:
            return width, height
        scale *= Fraction(63, 64)


def fit_level(width: int, height: int, fps: int, requested: H264Level) -> tuple[H264Level, int]:
    """Return the lowest level from ``requested`` up that holds the picture, and the fps to use.

    A level too small for the selected size is raised rather than the picture shrunk; past 4.0
    (HAP's highest) the frame rate is lowered instead (docs/peers.md §3 #20).
    """
    mbs = _macroblocks(width, height)
    for level in H264Level:
        limits = _LEVEL_LIMITS[level]
        if level >= requested and mbs <= limits.max_fs and mbs * fps <= limits.max_mbps:
            return level, fps
    return H264Level.LEVEL4_0, max(1, min(fps, _LEVEL_LIMITS[H264Level.LEVEL4_0].max_mbps // mbs))


def _macroblocks(width: int, height: int) -> int:
    """Return the number of 16x16 macroblocks in a picture."""
    return math.ceil(width / 16) * math.ceil(height / 16)


def _fraction(time_base: AVRational | Fraction | None) -> Fraction:
    """Return a PyAV time base as a Fraction."""
    if time_base is None:
        raise TranscodeError("stream has no time base")
    return Fraction(time_base.numerator, time_base.denominator)


def _cpu_count() -> int:
    """Return the number of CPUs this process may use."""
    return os.process_cpu_count() or 1


@dataclass(frozen=True, slots=True)
class _VideoPlan:
    """The encoder settings derived from the target and the source size."""

    width: int
    height: int
    fps: int
    level: H264Level
    keyint: int
    bitrate_kbps: int
    vbv_buffer_kbits: int


def _plan_video(target: TranscodeTarget, src_width: int, src_height: int) -> _VideoPlan:
    """Return the encoder settings for ``target`` given the source size."""
    width, height = scaled_size(src_width, src_height, target.width, target.height)
    level, fps = fit_level(width, height, target.fps, target.level)
    limits = _LEVEL_LIMITS[level]
    factor = _HIGH_PROFILE_RATE_FACTOR if target.profile == H264Profile.HIGH else Fraction(1)
    bitrate = min(target.bitrate_kbps, int(limits.max_br_kbps * factor))
    buffer = min(bitrate * _VBV_BUFFER_SECONDS, int(limits.max_cpb_kbits * factor))
    keyint = max(1, math.ceil(fps * target.fragment_length_ms / 1000))
    return _VideoPlan(width, height, fps, level, keyint, bitrate, buffer)


def _box_end(view: memoryview, pos: int) -> int | None:
    """Return where the box at ``pos`` ends, or None while it is incomplete."""
    available = len(view) - pos
    if available < _BOX_HEADER:
        return None
    size = int.from_bytes(view[pos : pos + 4], "big")
    if size == 1:  # 64-bit largesize (ISO/IEC 14496-12 §4.2)
        if available < 16:
            return None
        size = int.from_bytes(view[pos + 8 : pos + 16], "big")
    if size < _BOX_HEADER:
        raise TranscodeError(f"muxer wrote a box of size {size}")
    return pos + size if size <= available else None


class _BoxSplitter:
    """Write-only file for the mp4 muxer that cuts its output at top-level box boundaries."""

    __slots__ = ("_buffer", "_init", "ready")

    def __init__(self) -> None:
        """Start with nothing buffered."""
        self._buffer = bytearray()
        self._init = bytearray()
        self.ready: list[bytes] = []  # ftyp+moov, then one moof+mdat per entry

    def write(self, data: bytes | memoryview) -> int:
        """Take muxer output and move each complete init or fragment to ``ready``."""
        self._buffer += data
        pos = 0
        with memoryview(self._buffer) as view:
            while (end := _box_end(view, pos)) is not None:
                box_type = bytes(view[pos + 4 : pos + 8])
                if box_type == b"moof":
                    # Cut moof and mdat together: one copy per fragment.
                    mdat_end = _box_end(view, end)
                    if mdat_end is None:
                        break
                    if bytes(view[end + 4 : end + 8]) == b"mdat":
                        self.ready.append(bytes(view[pos:mdat_end]))
                    end = mdat_end
                elif box_type in (b"ftyp", b"moov"):
                    self._init += view[pos:end]
                    if box_type == b"moov":
                        self.ready.append(bytes(self._init))
                # Anything else (sidx, mfra, free) is nothing the hub needs.
                pos = end
        del self._buffer[:pos]
        return len(data)


class _Source:
    """One source init segment: its tracks and decoders, and a demuxer for its fragments."""

    __slots__ = ("_container", "_init", "audio", "video")

    def __init__(self, init: bytes) -> None:
        """Read the tracks of ``init``; raise TranscodeError when it has no usable video."""
        try:
            container = av.open(io.BytesIO(init), "r", format="mp4", options=_DEMUX_OPTIONS)
        except (av.FFmpegError, ValueError) as err:
            raise TranscodeError(f"unreadable source init segment: {err}") from err
        self._container: InputContainer = container
        self._init = init
        video_ctx: VideoCodecContext | None = (
            container.streams.video[0].codec_context if container.streams.video else None
        )
        if video_ctx is None or video_ctx.width < 2 or video_ctx.height < 2:
            container.close()
            raise TranscodeError("source init segment has no decodable video track")
        self.video: VideoStream = container.streams.video[0]
        video_ctx.thread_type = "AUTO"
        video_ctx.thread_count = min(_MAX_DECODER_THREADS, _cpu_count())
        audio_ctx: AudioCodecContext | None = (
            container.streams.audio[0].codec_context if container.streams.audio else None
        )
        self.audio: AudioStream | None = (
            container.streams.audio[0] if audio_ctx is not None else None
        )

    def describe(self) -> str:
        """Return a short description of the tracks for logs."""
        ctx = self.video.codec_context
        audio = "no audio"
        if self.audio is not None:
            actx = self.audio.codec_context
            audio = f"{actx.name} {actx.sample_rate} Hz x{actx.channels}"
        return f"{ctx.name} {ctx.width}x{ctx.height}, {audio}"

    def same_video(self, other: _Source) -> bool:
        """Return whether ``other`` carries the same coded video parameters."""
        mine, theirs = self.video.codec_context, other.video.codec_context
        return (mine.name, mine.width, mine.height, mine.extradata) == (
            theirs.name,
            theirs.width,
            theirs.height,
            theirs.extradata,
        )

    def demux(self, fragment: bytes) -> tuple[list[_Packet], list[_Packet]]:
        """Return the video and audio packets of one moof+mdat, each in decode order."""
        video: list[_Packet] = []
        audio: list[_Packet] = []
        audio_index = self.audio.index if self.audio is not None else -1
        # One short-lived demuxer per fragment: a corrupt fragment then costs only itself,
        # where a long-lived demuxer would lose its place in the stream.
        with av.open(
            io.BytesIO(self._init + fragment), "r", format="mp4", options=_DEMUX_OPTIONS
        ) as container:
            for packet in container.demux():
                if packet.dts is None or packet.size == 0:
                    continue
                if packet.stream_index == self.video.index:
                    video.append(packet)
                elif packet.stream_index == audio_index:
                    audio.append(packet)
        return video, audio

    def close(self) -> None:
        """Release the demuxer and the decoders."""
        self._container.close()


class _Clock:
    """Map source timestamps onto one output timeline that starts at 0 and never goes back."""

    __slots__ = ("_last_dts", "_max_gap", "_offset", "_rebase", "_step", "discontinuities")

    def __init__(self, step: Fraction, max_gap: Fraction) -> None:
        """Start before the first keyframe."""
        self._offset: Fraction | None = None
        self._last_dts = Fraction(0)
        self._step = step
        self._max_gap = max_gap
        self._rebase = True
        self.discontinuities = 0

    @property
    def offset(self) -> Fraction | None:
        """Return the seconds added to source times, None before the first keyframe."""
        return self._offset

    def rebase(self) -> None:
        """Continue right after the output so far, from the next keyframe on."""
        self._rebase = True

    def video(self, dts: Fraction, pts: Fraction, keyframe: bool) -> Fraction | None:
        """Return the offset for a video packet (source seconds), or None to drop it."""
        if self._rebase:
            if not keyframe:
                return None
            self._rebase = False
            if self._offset is None:
                self._offset = -pts
            else:
                self._offset = self._last_dts + self._step - dts
        else:
            if TYPE_CHECKING:
                assert self._offset is not None
            mapped = dts + self._offset
            if mapped <= self._last_dts or mapped > self._last_dts + self._max_gap:
                self.discontinuities += 1
                self._offset = self._last_dts + self._step - dts
        self._last_dts = dts + self._offset
        return self._offset


def _shift(packet: _Packet, offset: Fraction) -> None:
    """Move a packet's timestamps by ``offset`` seconds."""
    ticks = round(offset / _fraction(packet.time_base))
    if packet.dts is not None:
        packet.dts += ticks
    packet.pts = packet.dts if packet.pts is None else packet.pts + ticks


class _VideoEncoder:
    """Scale, pace and encode frames to H.264 with an IDR exactly at every fragment boundary."""

    __slots__ = (
        "_counters",
        "_encoder",
        "_fps",
        "_fragment_ticks",
        "_frame_ticks",
        "_height",
        "_last_slot",
        "_next_boundary",
        "_reformatter",
        "_width",
        "end_ticks",
    )

    def __init__(
        self,
        container: OutputContainer,
        target: TranscodeTarget,
        plan: _VideoPlan,
        counters: _Counters,
    ) -> None:
        """Add the libx264 stream to ``container``."""
        stream = container.add_stream("libx264", rate=plan.fps)
        stream.time_base = _OUTPUT_TIME_BASE
        ctx = stream.codec_context
        ctx.width, ctx.height, ctx.pix_fmt = plan.width, plan.height, "yuv420p"
        ctx.time_base = _OUTPUT_TIME_BASE
        ctx.framerate = Fraction(plan.fps)
        ctx.gop_size = plan.keyint
        ctx.bit_rate = plan.bitrate_kbps * 1000
        ctx.max_bit_rate = plan.bitrate_kbps * 1000
        ctx.rc_buffer_size = plan.vbv_buffer_kbits * 1000
        # Frame threads: x264's sliced threads (PyAV's default thread type) ran ~40% slower.
        ctx.thread_type = "FRAME"
        ctx.thread_count = min(_MAX_ENCODER_THREADS, _cpu_count() * 3 // 2)
        ctx.options = {
            "preset": X264_PRESET,
            "profile": _X264_PROFILES[target.profile],
            "level": _LEVEL_LIMITS[plan.level].name,
            "forced-idr": "1",
            # Keyframes only where we force them (peers.md §3 #8): a GOP of one fragment, no
            # scene cuts. No B-frames: Baseline forbids them, they delay output by the
            # reorder depth and add composition offsets, for little gain at these presets.
            "x264-params": f"keyint={plan.keyint}:scenecut=0:bframes=0:open-gop=0",
        }
        # Encode through the stream: only it stamps packets with their output track.
        self._encoder: VideoStream = stream
        self._reformatter = VideoReformatter()
        self._width, self._height, self._fps = plan.width, plan.height, plan.fps
        self._frame_ticks = round(Fraction(OUTPUT_TIMESCALE, plan.fps))
        self._fragment_ticks = target.fragment_length_ms * OUTPUT_TIMESCALE // 1000
        self._next_boundary = 0
        self._last_slot = -1
        self._counters = counters
        self.end_ticks = 0

    def encode(self, frame: VideoFrame) -> list[_Packet]:
        """Encode a frame stamped on the output timeline, unless its frame slot is taken."""
        if frame.pts is None:
            self._counters.frames_dropped += 1
            return []
        # Resample by timestamp onto a grid at the target rate: a faster source loses the
        # frames that land on a taken slot, a slower one keeps its own rate (never upsampled).
        slot = math.floor(frame.pts * _fraction(frame.time_base) * self._fps + Fraction(1, 2))
        if slot <= self._last_slot:
            self._counters.frames_dropped += 1
            return []
        self._last_slot = slot
        pts = round(Fraction(slot * OUTPUT_TIMESCALE, self._fps))
        keyframe = pts >= self._next_boundary
        if keyframe:
            # The first frame at or past a boundary moves back onto it, so every fragment
            # starts exactly on the grid and lasts at most one fragment length.
            pts = self._next_boundary
            self._next_boundary += self._fragment_ticks
        out = self._reformatter.reformat(
            frame,
            self._width,
            self._height,
            "yuv420p",
            interpolation=_INTERPOLATION,
            # Full-range sources go to the limited range the encoder signals; anything else
            # of the right size and format passes through without a copy.
            dst_color_range=ColorRange.MPEG if frame.color_range == ColorRange.JPEG else None,
        )
        out.pts = pts
        out.time_base = _OUTPUT_TIME_BASE
        # Decoded frames keep the source's picture type, which x264 would honour as a
        # forced keyframe at every source IDR.
        out.pict_type = PictureType.I if keyframe else PictureType.NONE
        self.end_ticks = pts + self._frame_ticks
        self._counters.frames_out += 1
        return self._stamp(self._encoder.encode(out))

    def flush(self) -> list[_Packet]:
        """Return the packets the encoder still holds."""
        return self._stamp(self._encoder.encode(None))

    def _stamp(self, packets: list[_Packet]) -> list[_Packet]:
        """Give packets a nominal duration, which the muxer needs for the last sample."""
        for packet in packets:
            packet.duration = self._frame_ticks
        return packets


class _AudioEncoder:
    """Place source audio (or silence) on the output timeline and encode it to AAC-LC."""

    __slots__ = (
        "_channels",
        "_encoded",
        "_encoder",
        "_fifo",
        "_layout",
        "_padding",
        "_rate",
        "_resampler",
        "_time_base",
        "_written",
        "resyncs",
    )

    def __init__(self, container: OutputContainer, target: AudioTarget) -> None:
        """Add the AAC stream to ``container``."""
        self._rate = target.sample_rate
        self._channels = target.channels
        self._layout = "mono" if target.channels == 1 else "stereo"
        self._time_base = Fraction(1, self._rate)
        stream = container.add_stream("aac", rate=self._rate)
        stream.time_base = self._time_base
        ctx = stream.codec_context
        ctx.layout = self._layout
        ctx.format = "fltp"
        ctx.bit_rate = target.bitrate_kbps * 1000
        ctx.profile = "LC"  # the native encoder; AAC-ELD needs libfdk_aac (peers.md §3 #11)
        ctx.time_base = self._time_base
        self._encoder: AudioStream = stream
        self._fifo = AudioFifo()
        self._resampler = self._new_resampler()
        self._written = 0  # samples placed on the output timeline so far
        self._encoded = 0  # samples handed to the encoder so far
        self._padding: int | None = None  # encoder delay, known once the encoder is open
        self.resyncs = 0

    @property
    def position(self) -> Fraction:
        """Return the output time up to which audio has been placed."""
        return Fraction(self._written, self._rate)

    def new_source(self) -> None:
        """Forget the previous source's format."""
        self._resampler = self._new_resampler()

    def push(self, frame: AudioFrame | None) -> list[_Packet]:
        """Resample a decoded source frame (None flushes) onto the timeline and encode."""
        for out in self._resampler.resample(frame):
            self._place(out)
        return self._drain(final=False)

    def pad_to(self, end: Fraction, *, final: bool = False) -> list[_Packet]:
        """Fill silence up to ``end`` seconds and encode; ``final`` also flushes the encoder."""
        missing = math.ceil(end * self._rate) - self._written
        if missing >= (1 if final else _AAC_FRAME_SAMPLES):
            self._write(self._silence(missing))
        return self._drain(final)

    def _place(self, frame: AudioFrame) -> None:
        """Write a resampled frame where its timestamp says, within jitter."""
        samples = frame.samples
        if frame.pts is None or frame.time_base is None:
            self._write(frame)
            return
        start = round(frame.pts * _fraction(frame.time_base) * self._rate)
        if start + samples <= 0:
            return  # before the first video frame
        if start < 0:
            self._write(self._trimmed(frame, -start))
            return
        gap = start - self._written
        jitter = int(_AUDIO_JITTER * self._rate)
        max_fill = int(_AUDIO_MAX_FILL * self._rate)
        if abs(gap) <= jitter:
            self._write(frame)
        elif jitter < gap <= max_fill:
            self._write(self._silence(gap))
            self._write(frame)
        elif -max_fill <= gap < -jitter:
            if samples > -gap:
                self._write(self._trimmed(frame, -gap))
        else:
            self.resyncs += 1  # a jump the video clock did not see: keep audio contiguous
            self._write(frame)

    def _write(self, frame: AudioFrame) -> None:
        """Append a frame to the timeline."""
        frame.pts = None
        self._fifo.write(frame)
        self._written += frame.samples

    def _trimmed(self, frame: AudioFrame, skip: int) -> AudioFrame:
        """Return ``frame`` without its first ``skip`` samples."""
        data = np.ascontiguousarray(frame.to_ndarray()[:, skip:], dtype=np.float32)
        out = AudioFrame.from_ndarray(data, format="fltp", layout=self._layout)
        out.sample_rate = self._rate
        return out

    def _silence(self, samples: int) -> AudioFrame:
        """Return ``samples`` of silence."""
        data = np.zeros((self._channels, samples), dtype=np.float32)
        out = AudioFrame.from_ndarray(data, format="fltp", layout=self._layout)
        out.sample_rate = self._rate
        return out

    def _drain(self, final: bool) -> list[_Packet]:
        """Encode whole AAC frames from the timeline; ``final`` also takes the remainder."""
        packets: list[_Packet] = []
        padding = self._padding
        if padding is None:
            # The encoder's first packet is priming, stamped -initial_padding. An empty_moov
            # fMP4 has no edit list to hide it and a negative timestamp would make the muxer
            # shift every track, so packets move up by the padding and the first padding's
            # worth of timeline is skipped: in sync, and no click (dropping the priming
            # packet instead leaves the decoder without its first overlap).
            padding = self._encoder.codec_context.initial_padding
            if self._fifo.samples < padding and not final:
                return packets
            if padding:
                self._fifo.read(padding, partial=True)
            self._padding = padding
        while (frame := self._fifo.read(_AAC_FRAME_SAMPLES, partial=final)) is not None:
            frame.pts = self._encoded
            frame.time_base = self._time_base
            self._encoded += frame.samples
            packets += self._encoder.encode(frame)
        if final:
            packets += self._encoder.encode(None)
        for packet in packets:
            if packet.pts is not None and packet.dts is not None:
                packet.pts += padding
                packet.dts += padding
        return packets

    def _new_resampler(self) -> AudioResampler:
        """Return a resampler to the output format, rate and layout."""
        return AudioResampler(format="fltp", layout=self._layout, rate=self._rate)


class _Pipeline:
    """All PyAV state of one session; lives and dies on the worker thread."""

    __slots__ = (
        "_audio",
        "_bad_in_a_row",
        "_clock",
        "_copy_stream",
        "_counters",
        "_emit",
        "_fragment_limit",
        "_last_copy_key",
        "_log_name",
        "_muxer",
        "_silent",
        "_source",
        "_splitter",
        "_stopping",
        "_target",
        "_video",
        "_video_end",
        "_warned_long",
    )

    def __init__(
        self,
        target: TranscodeTarget,
        log_name: str,
        counters: _Counters,
        emit: Callable[[bytes], None],
        stopping: threading.Event,
    ) -> None:
        """Prepare; nothing is opened until ``open``."""
        self._target = target
        self._log_name = log_name
        self._counters = counters
        self._emit = emit
        self._stopping = stopping
        self._source: _Source | None = None
        self._splitter = _BoxSplitter()
        self._muxer: OutputContainer | None = None
        self._video: _VideoEncoder | None = None
        self._copy_stream: VideoStream | None = None
        self._audio: _AudioEncoder | None = None
        self._silent = False
        self._fragment_limit = Fraction(target.fragment_length_ms, 1000)
        step = Fraction(1, target.fps)
        self._clock = _Clock(step, min(_MAX_VIDEO_GAP, self._fragment_limit / 2))
        self._video_end = Fraction(0)
        self._bad_in_a_row = 0
        self._last_copy_key: Fraction | None = None
        self._warned_long = False

    def open(self, init: bytes) -> None:
        """Read the source init, open the encoders and muxer, and emit the output init."""
        source = self._source = _Source(init)
        target = self._target
        self._muxer = muxer = av.open(
            self._splitter, "w", format="mp4", container_options={"movflags": _MOVFLAGS}
        )
        ctx = source.video.codec_context
        if target.copy_video:
            self._copy_stream = muxer.add_stream_from_template(source.video)
            width, height, fps, level = ctx.width, ctx.height, target.fps, None
        else:
            plan = _plan_video(target, ctx.width, ctx.height)
            self._video = _VideoEncoder(muxer, target, plan, self._counters)
            width, height, fps, level = plan.width, plan.height, plan.fps, plan.level
        if target.audio is not None:
            self._audio = _AudioEncoder(muxer, target.audio)
            self._silent = source.audio is None
        counters = self._counters
        counters.width, counters.height, counters.fps, counters.level = width, height, fps, level
        # With libx264's global header the avcC exists once the encoder is open, so the muxer
        # writes ftyp+moov now: the init goes out before any input fragment arrives.
        muxer.start_encoding()
        _LOGGER.debug(
            "%s: transcoding %s to H.264 %s %dx%d@%d level %s, audio %s",
            self._log_name,
            source.describe(),
            "copy" if target.copy_video else X264_PRESET,
            width,
            height,
            fps,
            level,
            target.audio,
        )
        self._deliver()

    def process(self, fragment: bytes) -> None:
        """Transcode one source moof+mdat and emit the output fragments it completes."""
        source = self._require_source()
        try:
            video, audio = source.demux(fragment)
        except (av.FFmpegError, ValueError) as err:
            self._bad_fragment(str(err))
            return
        if not video and not audio:
            self._bad_fragment("no samples")
            return
        errors = self._counters.decode_errors
        for packet in video:
            self._video_packet(packet)
        if video and self._counters.decode_errors - errors >= len(video):
            self._bad_fragment("no decodable video")
            return
        self._bad_in_a_row = 0
        if self._audio is not None and not self._silent:
            for packet in audio:
                self._audio_packet(packet)
            if self._video_end - self._audio.position > _AUDIO_MAX_LAG:
                self._mux(self._audio.pad_to(self._video_end - _AUDIO_MAX_LAG))
        self._deliver()

    def new_init(self, init: bytes) -> None:
        """Switch to a new source init segment and continue the output timeline."""
        old = self._require_source()
        self._flush_decoders(old)
        new = _Source(init)
        if self._target.copy_video and not old.same_video(new):
            new.close()
            raise TranscodeError("video parameters changed; copied video cannot continue")
        self._source = new
        old.close()
        self._clock.rebase()
        self._clock.discontinuities += 1
        self._counters.discontinuities = self._clock.discontinuities
        if self._audio is not None:
            self._audio.new_source()
            self._silent = new.audio is None
        _LOGGER.debug("%s: new source init: %s", self._log_name, new.describe())
        self._deliver()

    def finish(self) -> None:
        """Flush decoders and encoders, write the last fragment and emit it."""
        source = self._require_source()
        self._flush_decoders(source)
        if self._video is not None:
            self._mux(self._video.flush())
        if self._audio is not None:
            self._mux(self._audio.pad_to(self._video_end, final=True))
        if self._muxer is not None:
            self._muxer.close()
        self._deliver()

    def close(self) -> None:
        """Release every PyAV object; safe in any state."""
        for closer in (
            self._muxer.close if self._muxer is not None else None,
            self._source.close if self._source is not None else None,
        ):
            if closer is None:
                continue
            try:
                closer()
            except (av.FFmpegError, TranscodeError, ValueError) as err:
                _LOGGER.debug("%s: error while closing: %s", self._log_name, err)
        self._muxer = self._source = None
        self._video = self._audio = None
        self._copy_stream = None

    def _require_source(self) -> _Source:
        """Return the current source."""
        if self._source is None:
            raise TranscodeError("no source init segment")
        return self._source

    def _bad_fragment(self, reason: str) -> None:
        """Skip an unreadable input fragment, and give up after too many in a row."""
        self._counters.skipped_fragments += 1
        self._bad_in_a_row += 1
        _LOGGER.warning("%s: skipping unreadable input fragment: %s", self._log_name, reason)
        if self._bad_in_a_row >= _MAX_BAD_FRAGMENTS:
            raise TranscodeError(f"{self._bad_in_a_row} unreadable input fragments in a row")

    def _video_packet(self, packet: _Packet) -> None:
        """Map one video packet onto the output timeline and decode or copy it."""
        if self._stopping.is_set():
            raise _Stopped
        if TYPE_CHECKING:
            assert packet.dts is not None
        time_base = _fraction(packet.time_base)
        pts = packet.dts if packet.pts is None else packet.pts
        offset = self._clock.video(packet.dts * time_base, pts * time_base, packet.is_keyframe)
        self._counters.discontinuities = self._clock.discontinuities
        if offset is None:
            self._counters.frames_dropped += 1
            return
        _shift(packet, offset)
        if self._copy_stream is not None:
            self._copy_packet(packet, time_base)
            return
        try:
            frames = self._require_source().video.codec_context.decode(packet)
        except (av.FFmpegError, ValueError) as err:
            self._counters.decode_errors += 1
            _LOGGER.debug("%s: video decode error: %s", self._log_name, err)
            return
        for frame in frames:
            self._encode_frame(frame)

    def _encode_frame(self, frame: VideoFrame) -> None:
        """Encode one decoded frame and keep silent audio level with the video."""
        if TYPE_CHECKING:
            assert self._video is not None
        self._counters.frames_in += 1
        self._mux(self._video.encode(frame))
        self._advance_video(Fraction(self._video.end_ticks, OUTPUT_TIMESCALE))

    def _copy_packet(self, packet: _Packet, time_base: Fraction) -> None:
        """Mux a copied video packet; the muxer starts a fragment at each source keyframe."""
        if TYPE_CHECKING:
            assert self._copy_stream is not None
            assert packet.pts is not None
        if packet.is_keyframe:
            start = Fraction(packet.pts) * time_base
            last = self._last_copy_key
            if last is not None and not self._warned_long and start - last > self._fragment_limit:
                self._warned_long = True
                _LOGGER.warning(
                    "%s: source keyframe interval %.1f s exceeds the fragment length",
                    self._log_name,
                    start - last,
                )
            self._last_copy_key = start
        packet.stream = self._copy_stream
        self._counters.frames_in += 1
        self._counters.frames_out += 1
        self._mux((packet,))
        self._advance_video((packet.pts + (packet.duration or 0)) * time_base)

    def _advance_video(self, end: Fraction) -> None:
        """Record how far the video reaches and bring silent audio up to it."""
        if end > self._video_end:
            self._video_end = end
            self._counters.media_seconds = float(end)
        if self._silent and self._audio is not None:
            self._mux(self._audio.pad_to(end))

    def _audio_packet(self, packet: _Packet) -> None:
        """Map one audio packet onto the output timeline, decode and encode it."""
        offset = self._clock.offset
        source = self._require_source()
        if offset is None or self._audio is None or source.audio is None:
            return
        _shift(packet, offset)
        try:
            frames = source.audio.codec_context.decode(packet)
        except (av.FFmpegError, ValueError) as err:
            self._counters.decode_errors += 1
            _LOGGER.debug("%s: audio decode error: %s", self._log_name, err)
            return
        for frame in frames:
            self._mux(self._audio.push(frame))

    def _flush_decoders(self, source: _Source) -> None:
        """Drain the frames ``source``'s decoders still hold into the encoders."""
        if self._video is not None:
            try:
                frames = source.video.codec_context.decode(None)
            except (av.FFmpegError, ValueError) as err:
                _LOGGER.debug("%s: video decoder flush: %s", self._log_name, err)
                frames = []
            for frame in frames:
                self._encode_frame(frame)
        if self._audio is not None and source.audio is not None and not self._silent:
            try:
                frames_a = source.audio.codec_context.decode(None)
            except (av.FFmpegError, ValueError) as err:
                _LOGGER.debug("%s: audio decoder flush: %s", self._log_name, err)
                frames_a = []
            for frame_a in frames_a:
                self._mux(self._audio.push(frame_a))
            self._mux(self._audio.push(None))

    def _mux(self, packets: Iterable[_Packet]) -> None:
        """Hand encoded packets to the muxer."""
        if TYPE_CHECKING:
            assert self._muxer is not None
        for packet in packets:
            self._muxer.mux_one(packet)
        self._deliver()  # a fragment leaves as soon as the muxer has written it

    def _deliver(self) -> None:
        """Emit whatever complete init or fragments the muxer has written."""
        ready = self._splitter.ready
        if not ready:
            return
        self._splitter.ready = []
        counters = self._counters
        for chunk in ready:
            if counters.bytes_out:
                counters.fragments_out += 1
            counters.bytes_out += len(chunk)
            self._emit(chunk)


class Transcoder:
    """Re-encode an fMP4 stream to the target on one worker thread; the loop only queues bytes."""

    __slots__ = (
        "_closed",
        "_counters",
        "_done",
        "_eof",
        "_input",
        "_input_ended",
        "_input_slots",
        "_log_name",
        "_loop",
        "_output",
        "_output_slots",
        "_stopping",
        "_target",
        "_thread",
        "_waited",
        "_worker_exited",
    )

    def __init__(
        self,
        target: TranscodeTarget,
        *,
        log_name: str,
        max_queued_input: int = DEFAULT_MAX_QUEUED_INPUT,
        max_queued_output: int = DEFAULT_MAX_QUEUED_OUTPUT,
    ) -> None:
        """Prepare a session; nothing runs until ``start``."""
        if max_queued_input < 1 or max_queued_output < 1:
            raise ValueError("queue bounds must be at least 1")
        self._target = target
        self._log_name = log_name
        self._counters = _Counters()
        self._input: queue.SimpleQueue[_InputItem] = queue.SimpleQueue()
        self._input_slots = asyncio.Semaphore(max_queued_input)
        self._output: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._output_slots = threading.Semaphore(max_queued_output)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Future[None] | None = None
        self._input_ended = False
        self._closed = False
        self._eof = False
        self._worker_exited = False
        self._waited = 0.0

    @property
    def stats(self) -> TranscodeStats:
        """Return a snapshot of the session's counters."""
        return self._counters.snapshot()

    async def start(self, source_init: bytes) -> None:
        """Start the worker thread on the source init segment (ftyp+moov)."""
        if self._thread is not None or self._closed:
            raise RuntimeError("transcoder already started")
        self._loop = loop = asyncio.get_running_loop()
        self._done = loop.create_future()
        self._thread = threading.Thread(
            target=self._run,
            args=(bytes(source_init),),
            name=f"hksv-transcode {self._log_name}",
            daemon=True,
        )
        self._thread.start()

    async def feed(self, fragment: bytes | memoryview) -> None:
        """Queue one source moof+mdat, waiting while the input queue is full."""
        await self._put(bytes(fragment))

    async def new_source_init(self, source_init: bytes) -> None:
        """Queue a new source init segment (discontinuity); the output timeline continues."""
        await self._put(_NewInit(bytes(source_init)))

    def end_of_input(self) -> None:
        """Mark the end of the input; the worker flushes and then ends the output."""
        self._require_started()
        if not self._input_ended:
            self._input_ended = True
            self._input.put(_Control.END)

    async def read(self) -> bytes | None:
        """Return the output init first, then one moof+mdat per call, and None at the end."""
        self._require_started()
        if self._eof:
            return None
        item = await self._output.get()
        if item is None:
            self._eof = True
            return None
        self._output_slots.release()
        return item

    async def close(self) -> None:
        """Stop the worker if needed and join its thread; safe to call more than once."""
        self._closed = True
        if self._thread is None or self._done is None:
            return
        if not self._stopping.is_set():
            self._stopping.set()
            self._input.put(_Control.STOP)
            self._output_slots.release()  # wake a worker waiting for output room
        await asyncio.shield(self._done)
        self._thread.join()

    def _require_started(self) -> None:
        """Raise unless ``start`` was called."""
        if self._thread is None:
            raise RuntimeError("transcoder not started")

    def _gone(self) -> bool:
        """Return whether input can no longer reach a worker."""
        return self._closed or self._worker_exited

    async def _put(self, item: bytes | _NewInit) -> None:
        """Queue an input item once the bounded input queue has room."""
        self._require_started()
        if self._input_ended:
            raise RuntimeError("input already ended")
        if self._gone():
            return
        await self._input_slots.acquire()
        if self._gone():
            self._input_slots.release()  # pass the wake-up on to the next waiting feeder
            return
        self._input.put(item)

    # Worker thread from here on: no asyncio calls except through _post.

    def _run(self, init: bytes) -> None:
        """Run the whole session on the worker thread."""
        pipeline = _Pipeline(
            self._target, self._log_name, self._counters, self._emit, self._stopping
        )
        error: str | None = None
        started = time.perf_counter()
        try:
            pipeline.open(init)
            self._counters.busy_seconds = time.perf_counter() - started - self._waited
            self._work(pipeline)
        except _Stopped:
            pass
        except TranscodeError as err:
            error = str(err)
        except (av.FFmpegError, ValueError, OSError) as err:
            error = f"{type(err).__name__}: {err}"
        except Exception as err:  # any crash must end the session, never leave read() hanging
            _LOGGER.exception("%s: transcoder crashed", self._log_name)
            error = f"{type(err).__name__}: {err}"
        finally:
            pipeline.close()
            if error is not None:
                self._counters.last_error = error
                _LOGGER.warning("%s: transcoding stopped: %s", self._log_name, error)
            self._post(self._on_worker_exit)

    def _work(self, pipeline: _Pipeline) -> None:
        """Process input items until the end, a stop or an error."""
        counters = self._counters
        while True:
            item = self._input.get()
            if self._stopping.is_set() or item is _Control.STOP:
                return
            started = time.perf_counter()
            waited = self._waited
            if item is _Control.END:
                pipeline.finish()
            else:
                self._post(self._input_slots.release)
                if isinstance(item, _NewInit):
                    pipeline.new_init(item.data)
                else:
                    pipeline.process(item)
            counters.busy_seconds += time.perf_counter() - started - (self._waited - waited)
            if item is _Control.END:
                return

    def _emit(self, data: bytes) -> None:
        """Queue one output item for ``read``, waiting while the output queue is full."""
        started = time.perf_counter()
        while not self._output_slots.acquire(timeout=_STOP_POLL_SECONDS):
            if self._stopping.is_set():
                raise _Stopped
        self._waited += time.perf_counter() - started
        if self._stopping.is_set():
            raise _Stopped
        self._post(self._output.put_nowait, data)

    def _post(self, callback: Callable[..., object], *args: object) -> None:
        """Run ``callback`` on the event loop."""
        if TYPE_CHECKING:
            assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is left to read
            self._stopping.set()

    def _on_worker_exit(self) -> None:
        """Record on the loop that the worker has finished."""
        self._worker_exited = True
        self._output.put_nowait(None)
        self._input_slots.release()  # wake a feeder blocked on a queue nobody drains
        if self._done is not None and not self._done.done():
            self._done.set_result(None)
