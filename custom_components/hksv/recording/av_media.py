"""PyAV building blocks of the transcoder's input and output: fMP4 demuxing and cutting, clocks.

Everything here runs on the transcoder's worker thread (pipeline.py), never on the event loop.
The encoders are in av_encode.py.
"""

from __future__ import annotations

from fractions import Fraction
import io
import os
from typing import TYPE_CHECKING, Final, cast

import av

if TYPE_CHECKING:
    from av.audio.codeccontext import AudioCodecContext
    from av.audio.frame import AudioFrame
    from av.audio.stream import AudioStream
    from av.codec.context import CodecContext
    from av.container import InputContainer
    from av.packet import Packet
    from av.rational import AVRational
    from av.stream import Stream
    from av.video.codeccontext import VideoCodecContext
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

from .encoding import (
    TranscodeError,
)

type AvPacket = Packet[Stream]

OUTPUT_TIMESCALE: Final = 90_000  # the video timescale HA's stream worker writes as well
OUTPUT_TIME_BASE: Final = Fraction(1, OUTPUT_TIMESCALE)
# Codec parameters come from the init segment, so the demuxer need not probe any samples.
DEMUX_OPTIONS: Final = {"probesize": "32", "analyzeduration": "0"}
MAX_DECODER_THREADS: Final = 2
# Slice threads only: frame threads go on decoding after decode() returns, and one that logs
# (a damaged picture) needs the GIL that closing the decoder holds while it waits for them. A
# transcoder closed mid-stream then never ends (seen with PyAV 16: the worker thread in close,
# two `av:h264:df` threads waiting). Slice threads finish within each decode call.
DECODER_THREAD_TYPE: Final = "SLICE"
_BOX_HEADER: Final = 8


def to_fraction(time_base: AVRational | Fraction | None) -> Fraction:
    """Return a PyAV time base as a Fraction."""
    if time_base is None:
        raise TranscodeError("stream has no time base")
    return Fraction(time_base.numerator, time_base.denominator)


def cpu_count() -> int:
    """Return the number of CPUs this process may use."""
    return os.process_cpu_count() or 1


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


class BoxSplitter:
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


class SourceDemuxer:
    """One source init segment: its tracks and decoders, and a demuxer for its fragments.

    The decoders are bare codec contexts made from the tracks' parameters, owned by this object
    alone: with PyAV 19 a container's streams are in a reference cycle, so a decoder owned by a
    stream (and its threads) would live on until the cyclic GC (docs/architecture.md).
    """

    __slots__ = (
        "_audio_decoder",
        "_container",
        "_init",
        "_init_file",
        "_video_decoder",
        "audio",
        "video",
    )

    def __init__(self, init: bytes) -> None:
        """Read the tracks of ``init``; raise TranscodeError when it has no usable video."""
        self._init_file = io.BytesIO(init)
        try:
            container = av.open(self._init_file, "r", format="mp4", options=DEMUX_OPTIONS)
        except (av.FFmpegError, ValueError) as err:
            self._init_file.close()
            raise TranscodeError(f"unreadable source init segment: {err}") from err
        self._container: InputContainer = container
        self._init = init
        video_params: VideoCodecContext | None = (
            container.streams.video[0].codec_context if container.streams.video else None
        )
        if video_params is None or video_params.width < 2 or video_params.height < 2:
            container.close()
            self._init_file.close()
            raise TranscodeError("source init segment has no decodable video track")
        self.video: VideoStream = container.streams.video[0]
        self.audio: AudioStream | None = (
            container.streams.audio[0]
            if container.streams.audio and container.streams.audio[0].codec_context is not None
            else None
        )
        self._video_decoder: VideoCodecContext | None = _video_decoder(self.video)
        self._audio_decoder: AudioCodecContext | None = (
            _audio_decoder(self.audio) if self.audio is not None else None
        )

    def describe(self) -> str:
        """Return a short description of the tracks for logs."""
        ctx = self.video.codec_context
        audio = "no audio"
        if self.audio is not None:
            actx = self.audio.codec_context
            audio = f"{actx.name} {actx.sample_rate} Hz x{actx.channels}"
        return f"{ctx.name} {ctx.width}x{ctx.height}, {audio}"

    def same_video(self, other: SourceDemuxer) -> bool:
        """Return whether ``other`` carries the same coded video parameters."""
        mine, theirs = self.video.codec_context, other.video.codec_context
        return (mine.name, mine.width, mine.height, mine.extradata) == (
            theirs.name,
            theirs.width,
            theirs.height,
            theirs.extradata,
        )

    def demux(self, fragment: bytes) -> tuple[list[AvPacket], list[AvPacket]]:
        """Return the video and audio packets of one moof+mdat, each in decode order."""
        video: list[AvPacket] = []
        audio: list[AvPacket] = []
        audio_index = self.audio.index if self.audio is not None else -1
        # One short-lived demuxer per fragment: a corrupt fragment then costs only itself,
        # where a long-lived demuxer would lose its place in the stream.
        data = io.BytesIO(self._init + fragment)
        try:
            with av.open(data, "r", format="mp4", options=DEMUX_OPTIONS) as container:
                for packet in container.demux():
                    if packet.dts is None or packet.size == 0:
                        continue
                    if packet.stream_index == self.video.index:
                        video.append(packet)
                    elif packet.stream_index == audio_index:
                        audio.append(packet)
        finally:
            # The packets own copies. The closed container keeps its file until the cyclic
            # GC (PyAV 19), so the file lets go of the fragment now.
            data.close()
        return video, audio

    def decode_video(self, packet: AvPacket | None) -> list[VideoFrame]:
        """Decode one video packet (None: flush) and return the frames it completes."""
        # No local reference to a decoder: a traceback kept after an error holds locals.
        if self._video_decoder is None:
            raise TranscodeError("source closed")
        return self._video_decoder.decode(packet)

    def decode_audio(self, packet: AvPacket | None) -> list[AudioFrame]:
        """Decode one audio packet (None: flush); nothing without a source audio track."""
        if self._audio_decoder is None:
            return []
        return self._audio_decoder.decode(packet)

    def close(self) -> None:
        """Release the demuxer and drop the decoders, which frees them (and their threads)."""
        self._video_decoder = self._audio_decoder = None
        self._container.close()
        self._init_file.close()


def _video_decoder(stream: VideoStream) -> VideoCodecContext:
    """Return an unopened decoder for ``stream`` that no container owns."""
    params = stream.codec_context
    decoder = cast("VideoCodecContext", av.CodecContext.create(params.name, "r"))
    decoder.extradata = params.extradata  # avcC/hvcC: the parameter sets
    decoder.width, decoder.height = params.width, params.height
    if params.pix_fmt is not None:
        decoder.pix_fmt = params.pix_fmt
    _set_packet_time_base(decoder, stream)
    decoder.thread_type = DECODER_THREAD_TYPE
    decoder.thread_count = min(MAX_DECODER_THREADS, cpu_count())
    return decoder


def _audio_decoder(stream: AudioStream) -> AudioCodecContext:
    """Return an unopened decoder for ``stream`` that no container owns."""
    params = stream.codec_context
    decoder = cast("AudioCodecContext", av.CodecContext.create(params.name, "r"))
    decoder.extradata = params.extradata  # AAC: the AudioSpecificConfig
    decoder.sample_rate = params.sample_rate
    decoder.layout = params.layout
    _set_packet_time_base(decoder, stream)
    return decoder


def _set_packet_time_base(decoder: CodecContext, stream: Stream) -> None:
    """Tell a decoder its packets' time base, as a container does for its own decoders."""
    # PyAV 16 (HA 2026.3) has no pkt_timebase; its frames take the packets' time base anyway.
    if hasattr(decoder, "pkt_timebase") and stream.time_base is not None:
        decoder.pkt_timebase = stream.time_base


class VideoClock:
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


def shift_packet(packet: AvPacket, offset: Fraction) -> None:
    """Move a packet's timestamps by ``offset`` seconds."""
    ticks = round(offset / to_fraction(packet.time_base))
    if packet.dts is not None:
        packet.dts += ticks
    packet.pts = packet.dts if packet.pts is None else packet.pts + ticks
