"""PyAV encoders of the recording transcoder: H.264 video on the fragment grid, and AAC-LC audio.

Everything here runs on the transcoder's worker thread (pipeline.py), never on the event loop.
"""

from __future__ import annotations

from fractions import Fraction
import io
import math
from typing import TYPE_CHECKING, Final, cast

import av
from av.audio.fifo import AudioFifo
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from av.video.frame import PictureType, VideoFrame
from av.video.reformatter import ColorRange, Interpolation, VideoReformatter
import numpy as np

if TYPE_CHECKING:
    from av.audio.codeccontext import AudioCodecContext
    from av.codec.context import CodecContext
    from av.container import OutputContainer
    from av.stream import Stream
    from av.video.codeccontext import VideoCodecContext

from ..media.encoders import SOFTWARE_ENCODER, hardware_options, pixel_format
from ..media.h264 import LEVEL_LIMITS
from ..media.pyav_graphs import release_filter_graphs
from .av_media import (
    DEMUX_OPTIONS,
    OUTPUT_TIME_BASE,
    OUTPUT_TIMESCALE,
    AvPacket,
    cpu_count,
    to_fraction,
)
from .encoding import AudioTarget, Counters, TranscodeError, TranscodeTarget, VideoPlan

# 1080p30 -> 720p on the 2-core dev box (benchmarks/README.md): superfast 2.0-3.3x real time
# across runs, veryfast ~2x, ultrafast ~5x. superfast keeps CABAC and 8x8 transforms, so the
# SPS signals the selected Main/High profile (ultrafast falls back to Constrained Baseline),
# and has no lookahead, so frames leave the encoder as soon as they are coded.
X264_PRESET: Final = "superfast"
_X264_PROFILES: Final = {0: "baseline", 1: "main", 2: "high"}
_MAX_ENCODER_THREADS: Final = 6  # x264's own 1.5 x cores, capped: each thread adds a frame of delay
_INTERPOLATION: Final = Interpolation.BILINEAR
AAC_FRAME_SAMPLES: Final = 1024
_AUDIO_JITTER: Final = Fraction(1, 10)  # audio this close to its slot is taken as contiguous
_AUDIO_MAX_FILL: Final = Fraction(2)  # gaps up to this are filled with silence, beyond: resync
# OutputContainer.add_stream's defaults, which the encoders had while a muxer made them: kept,
# as libx264 derives its rate control's tolerance from it.
_VIDEO_BIT_RATE_TOLERANCE: Final = 128_000
_AUDIO_BIT_RATE_TOLERANCE: Final = 32_000
# Inputs just long enough for a demuxer to name an H.264 resp. AAC stream: the muxer's tracks
# are added from these templates, and then take every parameter from the opened encoder.
_H264_TEMPLATE: Final = b""
_AAC_TEMPLATE: Final = bytes.fromhex("fff1604000fffc")  # ADTS header: AAC-LC, no payload


class VideoEncoder:
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
        "_picture",
        "_pix_fmt",
        "_reformatter",
        "_stream",
        "_width",
        "end_ticks",
    )

    def __init__(
        self,
        container: OutputContainer,
        target: TranscodeTarget,
        plan: VideoPlan,
        counters: Counters,
        encoder: str = SOFTWARE_ENCODER,
    ) -> None:
        """Open ``encoder`` (libx264 or a hardware one) and add its track to ``container``."""
        ctx = cast("VideoCodecContext", av.CodecContext.create(encoder, "w"))
        self._pix_fmt = pixel_format(encoder)
        ctx.width, ctx.height, ctx.pix_fmt = plan.width, plan.height, self._pix_fmt
        ctx.time_base = OUTPUT_TIME_BASE
        ctx.framerate = Fraction(plan.fps)
        ctx.gop_size = plan.keyint
        ctx.bit_rate = plan.bitrate_kbps * 1000
        ctx.bit_rate_tolerance = _VIDEO_BIT_RATE_TOLERANCE
        if encoder != SOFTWARE_ENCODER:
            ctx.max_b_frames = 0
            ctx.options = hardware_options(encoder, _X264_PROFILES[target.profile])
        else:
            self._x264(ctx, target, plan)
        self._stream = _open_with_track(ctx, container, "h264", _H264_TEMPLATE)
        track = cast("VideoCodecContext", self._stream.codec_context)
        track.width, track.height, track.pix_fmt = ctx.width, ctx.height, ctx.pix_fmt
        self._encoder: VideoCodecContext | None = ctx
        self._reformatter = VideoReformatter()
        self._width, self._height, self._fps = plan.width, plan.height, plan.fps
        self._picture = plan.picture
        self._frame_ticks = round(Fraction(OUTPUT_TIMESCALE, plan.fps))
        self._fragment_ticks = target.fragment_length_ms * OUTPUT_TIMESCALE // 1000
        self._next_boundary = 0
        self._last_slot = -1
        self._counters = counters
        self.end_ticks = 0

    @staticmethod
    def _x264(ctx: VideoCodecContext, target: TranscodeTarget, plan: VideoPlan) -> None:
        """Set libx264's threads and options."""
        # Frame threads: x264's sliced threads (PyAV's default thread type) ran ~40% slower.
        ctx.thread_type = "FRAME"
        ctx.thread_count = min(_MAX_ENCODER_THREADS, cpu_count() * 3 // 2)
        ctx.options = {
            "preset": X264_PRESET,
            "profile": _X264_PROFILES[target.profile],
            "level": LEVEL_LIMITS[plan.level].name,
            "forced-idr": "1",
            # VBV cap as codec options: PyAV 16 (HA 2026.3) has no writable max_bit_rate.
            "maxrate": str(plan.bitrate_kbps * 1000),
            "bufsize": str(plan.vbv_buffer_kbits * 1000),
            # Keyframes only where we force them (peers.md §3 #8): a GOP of one fragment, no
            # scene cuts. No B-frames: Baseline forbids them, they delay output by the
            # reorder depth and add composition offsets, for little gain at these presets.
            "x264-params": f"keyint={plan.keyint}:scenecut=0:bframes=0:open-gop=0",
        }

    def encode(self, frame: VideoFrame) -> list[AvPacket]:
        """Encode a frame stamped on the output timeline, unless its frame slot is taken."""
        if frame.pts is None:
            self._counters.frames_dropped += 1
            return []
        # Resample by timestamp onto a grid at the target rate: a faster source loses the
        # frames that land on a taken slot, a slower one keeps its own rate (never upsampled).
        slot = math.floor(frame.pts * to_fraction(frame.time_base) * self._fps + Fraction(1, 2))
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
        x, y, width, height = self._picture
        out = self._reformatter.reformat(
            frame,
            width,
            height,
            "yuv420p",
            interpolation=_INTERPOLATION,
            # Full-range sources go to the limited range the encoder signals; anything else
            # of the right size and format passes through without a copy.
            dst_color_range=ColorRange.MPEG if frame.color_range == ColorRange.JPEG else None,
        )
        if (width, height) != (self._width, self._height):
            out = _with_bars(out, x, y, self._width, self._height)
        if self._pix_fmt != "yuv420p":  # Quick Sync takes nv12
            out = out.reformat(format=self._pix_fmt)
        out.pts = pts
        out.time_base = OUTPUT_TIME_BASE
        # Decoded frames keep the source's picture type, which x264 would honour as a
        # forced keyframe at every source IDR.
        out.pict_type = PictureType.I if keyframe else PictureType.NONE
        self.end_ticks = pts + self._frame_ticks
        self._counters.frames_out += 1
        return self._stamp(self._require_encoder().encode(out))

    def flush(self) -> list[AvPacket]:
        """Return the packets the encoder still holds."""
        return self._stamp(self._require_encoder().encode(None))

    def close(self) -> None:
        """Drop the encoder, which frees it and its threads."""
        self._encoder = None

    def _require_encoder(self) -> VideoCodecContext:
        """Return the encoder unless closed."""
        if self._encoder is None:
            raise TranscodeError("video encoder closed")
        return self._encoder

    def _stamp(self, packets: list[AvPacket]) -> list[AvPacket]:
        """Put packets on the output track, with the nominal duration the last sample needs."""
        for packet in packets:
            packet.stream = self._stream
            packet.duration = self._frame_ticks
        return packets


def _open_with_track(
    encoder: CodecContext, container: OutputContainer, template_format: str, template: bytes
) -> Stream:
    """Open ``encoder`` and add a muxer track that carries its parameters but does not encode.

    The encoder stays a bare codec context that only its owner refers to: with PyAV 19 every
    stream of a container is in a reference cycle, so an encoder owned by a stream (its
    threads, its buffers) would live until the cyclic GC (docs/architecture.md, Recording).
    The track is copied from a template stream with ``opaque`` set, which tells PyAV 19 not to
    open it; PyAV 16 opens it as a decoder, with one thread.
    """
    # The global header puts the parameter sets (avcC, AudioSpecificConfig) in the extradata
    # the muxer needs for the init segment, instead of in-band only.
    encoder.flags |= av.codec.context.Flags.global_header
    encoder.open()
    with av.open(
        io.BytesIO(template), "r", format=template_format, options=DEMUX_OPTIONS
    ) as source:
        stream = container.add_stream_from_template(source.streams[0], opaque=True)
    track = stream.codec_context
    track.thread_count = 1
    track.extradata = encoder.extradata
    track.bit_rate = encoder.bit_rate
    stream.time_base = encoder.time_base
    return stream


def _with_bars(picture: VideoFrame, x: int, y: int, width: int, height: int) -> VideoFrame:
    """Return a ``width``x``height`` black yuv420p frame with ``picture`` placed at (x, y).

    Written through views of the frames' own planes: one fill and one copy per plane.
    """
    out = VideoFrame(width, height, "yuv420p")
    for index, (plane, source) in enumerate(zip(out.planes, picture.planes, strict=True)):
        shift = 0 if index == 0 else 1  # chroma planes are half size
        dst = np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)
        src = np.frombuffer(source, np.uint8).reshape(source.height, source.line_size)
        dst.fill(16 if index == 0 else 128)  # limited-range black
        left, top = x >> shift, y >> shift
        dst[top : top + source.height, left : left + source.width] = src[:, : source.width]
    return out


class AudioEncoder:
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
        "_stream",
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
        ctx = av.CodecContext.create("aac", "w")
        ctx.sample_rate = self._rate
        ctx.layout = self._layout
        ctx.format = "fltp"
        ctx.bit_rate = target.bitrate_kbps * 1000
        ctx.bit_rate_tolerance = _AUDIO_BIT_RATE_TOLERANCE
        ctx.profile = "LC"  # the native encoder; AAC-ELD needs libfdk_aac (peers.md §3 #11)
        ctx.time_base = self._time_base
        self._stream = _open_with_track(ctx, container, "aac", _AAC_TEMPLATE)
        track = cast("AudioCodecContext", self._stream.codec_context)
        track.sample_rate, track.layout, track.format = ctx.sample_rate, ctx.layout, ctx.format
        self._encoder: AudioCodecContext | None = ctx
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
        release_filter_graphs(self._resampler)
        self._resampler = self._new_resampler()

    def push(self, frame: AudioFrame | None) -> list[AvPacket]:
        """Resample a decoded source frame (None flushes) onto the timeline and encode."""
        for out in self._resampler.resample(frame):
            self._place(out)
        return self._drain(final=False)

    def pad_to(self, end: Fraction, *, final: bool = False) -> list[AvPacket]:
        """Fill silence up to ``end`` seconds and encode; ``final`` also flushes the encoder."""
        missing = math.ceil(end * self._rate) - self._written
        if missing >= (1 if final else AAC_FRAME_SAMPLES):
            self._write(self._silence(missing))
        return self._drain(final)

    def _place(self, frame: AudioFrame) -> None:
        """Write a resampled frame where its timestamp says, within jitter."""
        samples = frame.samples
        if frame.pts is None or frame.time_base is None:
            self._write(frame)
            return
        start = round(frame.pts * to_fraction(frame.time_base) * self._rate)
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

    def _drain(self, final: bool) -> list[AvPacket]:
        """Encode whole AAC frames from the timeline; ``final`` also takes the remainder."""
        packets: list[AvPacket] = []
        padding = self._padding
        if padding is None:
            # The encoder's first packet is priming, stamped -initial_padding. An empty_moov
            # fMP4 has no edit list to hide it and a negative timestamp would make the muxer
            # shift every track, so packets move up by the padding and the first padding's
            # worth of timeline is skipped: in sync, and no click (dropping the priming
            # packet instead leaves the decoder without its first overlap).
            # PyAV 16 (HA 2026.3) does not expose it; FFmpeg's AAC encoder primes one frame.
            padding = getattr(self._require_encoder(), "initial_padding", AAC_FRAME_SAMPLES)
            if self._fifo.samples < padding and not final:
                return packets
            if padding:
                self._fifo.read(padding, partial=True)
            self._padding = padding
        while (frame := self._fifo.read(AAC_FRAME_SAMPLES, partial=final)) is not None:
            frame.pts = self._encoded
            frame.time_base = self._time_base
            self._encoded += frame.samples
            packets += self._require_encoder().encode(frame)
        if final:
            packets += self._require_encoder().encode(None)
        for packet in packets:
            packet.stream = self._stream
            if packet.pts is not None and packet.dts is not None:
                packet.pts += padding
                packet.dts += padding
        return packets

    def close(self) -> None:
        """Drop the encoder and the resampler, which frees them and their filter graphs."""
        encoder, self._encoder = self._encoder, None
        release_filter_graphs(self._resampler, *(() if encoder is None else (encoder,)))
        self._resampler = self._new_resampler()  # holds nothing native until used

    def _require_encoder(self) -> AudioCodecContext:
        """Return the encoder unless closed."""
        if self._encoder is None:
            raise TranscodeError("audio encoder closed")
        return self._encoder

    def _new_resampler(self) -> AudioResampler:
        """Return a resampler to the output format, rate and layout."""
        return AudioResampler(format="fltp", layout=self._layout, rate=self._rate)
