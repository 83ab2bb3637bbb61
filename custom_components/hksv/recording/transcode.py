"""Re-encode an fMP4 camera stream to the selected HKSV recording configuration with PyAV.

This is the fallback for sources that do not fit what the hub selected; copying is the normal
path. All PyAV work runs on one dedicated worker thread per session, and the event loop only
hands bytes over through thread-safe queues (docs/STYLE.md, Layer 3 point 7).

Output size: exactly the selected size. The source is scaled to fit inside it with its aspect
ratio kept, and the rest is black bars (a 4:3 camera under 1280x720 is pillarboxed at 960x720),
so every fragment has the resolution the hub selected (issue 10).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from fractions import Fraction
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Final

import av

from ..media.encoders import SOFTWARE_ENCODER, EncoderChooser, is_hardware, shared_chooser

if TYPE_CHECKING:
    from av.container import OutputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream
from .av_media import (
    OUTPUT_TIMESCALE,
    AudioEncoder,
    AvPacket,
    BoxSplitter,
    SourceDemuxer,
    VideoClock,
    VideoEncoder,
    shift_packet,
    to_fraction,
)
from .encoding import (
    AudioTarget,
    Counters,
    TranscodeError,
    TranscodeStats,
    TranscodeTarget,
    VideoPlan,
    fit_level,
    picture_size,
    plan_video,
    scaled_size,
)

__all__ = [
    "AudioTarget",
    "TranscodeError",
    "TranscodeStats",
    "TranscodeTarget",
    "Transcoder",
    "fit_level",
    "picture_size",
    "scaled_size",
]

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_QUEUED_INPUT: Final = 32
DEFAULT_MAX_QUEUED_OUTPUT: Final = 8
# The flags HN-based plugins use (hksv-protocol.md §7.2); skip_sidx/skip_trailer leave only
# ftyp, moov, then one moof+mdat pair per keyframe (all tracks share the moof).
_MOVFLAGS: Final = "frag_keyframe+empty_moov+default_base_moof+skip_sidx+skip_trailer"
# A forward jump larger than this (capped at half a fragment, so one gap never spans two
# fragment boundaries) or any step back in video timestamps starts a new output segment.
_MAX_VIDEO_GAP: Final = Fraction(2)
# Audio that stops must not stall the muxer, which holds video back until audio catches up.
_AUDIO_MAX_LAG: Final = Fraction(1)
_MAX_BAD_FRAGMENTS: Final = 3  # undecodable input fragments in a row before giving up
_STOP_POLL_SECONDS: Final = 0.5  # a worker waiting for output room rechecks for a stop


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


class _Pipeline:
    """All PyAV state of one session; lives and dies on the worker thread."""

    __slots__ = (
        "_audio",
        "_bad_in_a_row",
        "_clock",
        "_copy_stream",
        "_counters",
        "_emit",
        "_encoders",
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
        counters: Counters,
        emit: Callable[[bytes], None],
        stopping: threading.Event,
        *,
        encoders: EncoderChooser,
    ) -> None:
        """Prepare; nothing is opened until ``open``."""
        self._target = target
        self._encoders = encoders
        self._log_name = log_name
        self._counters = counters
        self._emit = emit
        self._stopping = stopping
        self._source: SourceDemuxer | None = None
        self._splitter = BoxSplitter()
        self._muxer: OutputContainer | None = None
        self._video: VideoEncoder | None = None
        self._copy_stream: VideoStream | None = None
        self._audio: AudioEncoder | None = None
        self._silent = False
        self._fragment_limit = Fraction(target.fragment_length_ms, 1000)
        step = Fraction(1, target.fps)
        self._clock = VideoClock(step, min(_MAX_VIDEO_GAP, self._fragment_limit / 2))
        self._video_end = Fraction(0)
        self._bad_in_a_row = 0
        self._last_copy_key: Fraction | None = None
        self._warned_long = False

    def open(self, init: bytes) -> None:
        """Read the source init, open the encoders and muxer, and emit the output init."""
        source = self._source = SourceDemuxer(init)
        target = self._target
        ctx = source.video.codec_context
        plan = None if target.copy_video else plan_video(target, ctx.width, ctx.height)
        encoder = ""
        if plan is not None:
            encoder = self._encoders.encoder_for(plan.width, plan.height)
            try:
                self._open_muxer(source, plan, encoder)
            except (av.FFmpegError, ValueError, OSError) as err:
                if not is_hardware(encoder):
                    raise
                # A hardware encoder that cannot open at these settings gives way to libx264
                # (and the chooser remembers it for this size).
                self._encoders.failed(encoder, plan.width, plan.height, err)
                self.close_muxer()
                encoder = SOFTWARE_ENCODER
                self._open_muxer(source, plan, encoder)
        else:
            self._open_muxer(source, None, "")
        if plan is None:
            width, height, fps, level = ctx.width, ctx.height, target.fps, None
        else:
            width, height, fps, level = plan.width, plan.height, plan.fps, plan.level
        counters = self._counters
        counters.width, counters.height, counters.fps, counters.level = width, height, fps, level
        counters.encoder = encoder
        _LOGGER.debug(
            "%s: transcoding %s to H.264 %s %dx%d@%d level %s, audio %s",
            self._log_name,
            source.describe(),
            "copy" if target.copy_video else encoder,
            width,
            height,
            fps,
            level,
            target.audio,
        )
        self._deliver()

    def _open_muxer(self, source: SourceDemuxer, plan: VideoPlan | None, encoder: str) -> None:
        """Add the output tracks (video by ``encoder``, or copied) and open the encoders."""
        target = self._target
        self._splitter = BoxSplitter()
        self._muxer = muxer = av.open(
            self._splitter, "w", format="mp4", container_options={"movflags": _MOVFLAGS}
        )
        if plan is None:
            # opaque: remux only, never open an encoder (PyAV 16, HA 2026.3, opens one for
            # video by default and fails).
            self._copy_stream = muxer.add_stream_from_template(source.video, opaque=True)
        else:
            self._video = VideoEncoder(muxer, target, plan, self._counters, encoder)
        if target.audio is not None:
            self._audio = AudioEncoder(muxer, target.audio)
            self._silent = source.audio is None
        # With a global header the avcC exists once the encoder is open, so the muxer writes
        # ftyp+moov now: the init goes out before any input fragment arrives.
        muxer.start_encoding()

    def close_muxer(self) -> None:
        """Drop a muxer that failed to start, with its encoders."""
        if self._muxer is not None:
            try:
                self._muxer.close()
            except (av.FFmpegError, ValueError, OSError) as err:
                _LOGGER.debug("%s: closing a muxer that did not start: %s", self._log_name, err)
        self._muxer = None
        self._video = self._audio = None
        self._copy_stream = None

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
        new = SourceDemuxer(init)
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

    def _require_source(self) -> SourceDemuxer:
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

    def _video_packet(self, packet: AvPacket) -> None:
        """Map one video packet onto the output timeline and decode or copy it."""
        if self._stopping.is_set():
            raise _Stopped
        if TYPE_CHECKING:
            assert packet.dts is not None
        time_base = to_fraction(packet.time_base)
        pts = packet.dts if packet.pts is None else packet.pts
        offset = self._clock.video(packet.dts * time_base, pts * time_base, packet.is_keyframe)
        self._counters.discontinuities = self._clock.discontinuities
        if offset is None:
            self._counters.frames_dropped += 1
            return
        shift_packet(packet, offset)
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

    def _copy_packet(self, packet: AvPacket, time_base: Fraction) -> None:
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

    def _audio_packet(self, packet: AvPacket) -> None:
        """Map one audio packet onto the output timeline, decode and encode it."""
        offset = self._clock.offset
        source = self._require_source()
        if offset is None or self._audio is None or source.audio is None:
            return
        shift_packet(packet, offset)
        try:
            frames = source.audio.codec_context.decode(packet)
        except (av.FFmpegError, ValueError) as err:
            self._counters.decode_errors += 1
            _LOGGER.debug("%s: audio decode error: %s", self._log_name, err)
            return
        for frame in frames:
            self._mux(self._audio.push(frame))

    def _flush_decoders(self, source: SourceDemuxer) -> None:
        """Drain the frames ``source``'s decoders still hold into the encoders."""
        if self._video is not None:
            try:
                frames = source.video.codec_context.decode(None)
            except (av.FFmpegError, ValueError) as err:
                _LOGGER.debug("%s: video decoder flush: %s", self._log_name, err)
                frames = []
            for frame in frames:
                # PyAV 16 (HA 2026.3) leaves flushed frames without a time base.
                frame.time_base = frame.time_base or source.video.time_base
                self._encode_frame(frame)
        if self._audio is not None and source.audio is not None and not self._silent:
            try:
                frames_a = source.audio.codec_context.decode(None)
            except (av.FFmpegError, ValueError) as err:
                _LOGGER.debug("%s: audio decoder flush: %s", self._log_name, err)
                frames_a = []
            for frame_a in frames_a:
                frame_a.time_base = frame_a.time_base or source.audio.time_base
                self._mux(self._audio.push(frame_a))
            self._mux(self._audio.push(None))

    def _mux(self, packets: Iterable[AvPacket]) -> None:
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
        "_encoders",
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
        "_waiting_for_output",
        "_worker_exited",
    )

    def __init__(
        self,
        target: TranscodeTarget,
        *,
        log_name: str,
        max_queued_input: int | None = None,
        max_queued_output: int | None = None,
        encoders: EncoderChooser | None = None,
    ) -> None:
        """Prepare a session; nothing runs until ``start``.

        ``encoders`` chooses the H.264 encoder (default: the process's shared chooser).
        """
        if max_queued_input is None:
            max_queued_input = DEFAULT_MAX_QUEUED_INPUT
        if max_queued_output is None:
            max_queued_output = DEFAULT_MAX_QUEUED_OUTPUT
        if max_queued_input < 1 or max_queued_output < 1:
            raise ValueError("queue bounds must be at least 1")
        self._target = target
        self._log_name = log_name
        self._counters = Counters()
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
        self._waiting_for_output = False
        self._encoders = encoders or shared_chooser()

    @property
    def stats(self) -> TranscodeStats:
        """Return a snapshot of the session's counters."""
        return self._counters.snapshot()

    @property
    def input_backlog(self) -> int:
        """Return how many input items wait for the worker."""
        return self._input.qsize()

    @property
    def output_backlog(self) -> int:
        """Return how many output items wait for ``read``."""
        return self._output.qsize()

    @property
    def waiting_for_output(self) -> bool:
        """Return whether the worker is blocked until ``read`` takes output."""
        return self._waiting_for_output

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

    def stop(self) -> None:
        """Tell the worker to stop at its next frame; ``read`` then ends (no wait here)."""
        self._closed = True
        if self._thread is None or self._stopping.is_set():
            return
        self._stopping.set()
        self._input.put(_Control.STOP)
        self._output_slots.release()  # wake a worker waiting for output room

    async def close(self) -> None:
        """Stop the worker if needed and join its thread; safe to call more than once."""
        self.stop()
        if self._thread is None or self._done is None:
            return
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
            self._target,
            self._log_name,
            self._counters,
            self._emit,
            self._stopping,
            encoders=self._encoders,
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
        if not self._output_slots.acquire(blocking=False):
            self._waiting_for_output = True  # the reader (the hub's send) is behind
            try:
                while not self._output_slots.acquire(timeout=_STOP_POLL_SECONDS):
                    if self._stopping.is_set():
                        raise _Stopped
            finally:
                self._waiting_for_output = False
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
