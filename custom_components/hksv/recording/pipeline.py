"""The PyAV side of a recording transcode: one source fMP4 in, the selected HKSV fMP4 out.

`TranscodePipeline` holds every PyAV object of one session and runs on the session's worker
thread only (transcode.py queues its jobs; media/pyav_worker.py is the thread).

Output size: exactly the selected size. The source is scaled to fit inside it with its aspect
ratio kept, and the rest is black bars (a 4:3 camera under 1280x720 is pillarboxed at 960x720),
so every fragment has the resolution the hub selected (issue 10).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from fractions import Fraction
import logging
from typing import TYPE_CHECKING, Final

import av

from ..media.encoders import SOFTWARE_ENCODER, EncoderChooser, is_hardware
from .av_encode import AudioEncoder, VideoEncoder
from .av_media import (
    OUTPUT_TIMESCALE,
    AvPacket,
    BoxSplitter,
    SourceDemuxer,
    VideoClock,
    shift_packet,
    to_fraction,
)
from .encoding import Counters, TranscodeError, TranscodeTarget, VideoPlan, plan_video

if TYPE_CHECKING:
    from av.container import OutputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

_LOGGER = logging.getLogger(__name__)

# The flags HN-based plugins use (hksv-protocol.md §7.2); skip_sidx/skip_trailer leave only
# ftyp, moov, then one moof+mdat pair per keyframe (all tracks share the moof).
_MOVFLAGS: Final = "frag_keyframe+empty_moov+default_base_moof+skip_sidx+skip_trailer"
# A forward jump larger than this (capped at half a fragment, so one gap never spans two
# fragment boundaries) or any step back in video timestamps starts a new output segment.
_MAX_VIDEO_GAP: Final = Fraction(2)
# Audio that stops must not stall the muxer, which holds video back until audio catches up.
_AUDIO_MAX_LAG: Final = Fraction(1)
_MAX_BAD_FRAGMENTS: Final = 3  # undecodable input fragments in a row before giving up


class TranscodePipeline:
    """All PyAV state of one session; lives and dies on the worker thread."""

    __slots__ = (
        "_audio",
        "_bad_in_a_row",
        "_check_stop",
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
        check_stop: Callable[[], None],
        *,
        encoders: EncoderChooser,
    ) -> None:
        """Prepare; nothing is opened until ``open``."""
        self._target = target
        self._encoders = encoders
        self._log_name = log_name
        self._counters = counters
        self._emit = emit
        self._check_stop = check_stop  # raises once the session is stopped
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
        self._close_encoders()

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
        self._close_encoders()

    def _close_encoders(self) -> None:
        """Free the encoders now, even while a kept traceback still refers to their owners."""
        for encoder in (self._video, self._audio):
            if encoder is not None:
                encoder.close()
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
        self._check_stop()
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
            frames = self._require_source().decode_video(packet)
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
            frames = source.decode_audio(packet)
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
                frames = source.decode_video(None)
            except (av.FFmpegError, ValueError) as err:
                _LOGGER.debug("%s: video decoder flush: %s", self._log_name, err)
                frames = []
            for frame in frames:
                # PyAV 16 (HA 2026.3) leaves flushed frames without a time base.
                frame.time_base = frame.time_base or source.video.time_base
                self._encode_frame(frame)
        if self._audio is not None and source.audio is not None and not self._silent:
            try:
                frames_a = source.decode_audio(None)
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
