"""Live H.264 for viewers that cannot take the camera's stream as is (HEVC, watch, cellular).

`LiveVideoTranscoder` decodes the camera's samples (H.264 or HEVC, AVCC/HVCC with the init's
avcC/hvcC), scales them into the requested box (aspect kept, black bars), and encodes H.264
with zero-latency settings on its own thread. Outputs are AVCC samples with SPS/PPS in-band on
every IDR, ready for `H264Packetizer` (which turns those into its STAP-A).

Threading: `put`, `reconfigure`, `force_keyframe` and `stats` never block and may be called
from the event loop. Results arrive through the `on_sample` callback, called on the worker
thread (hand them to the loop with `call_soon_threadsafe`), or, without a callback, through
the bounded queue behind `get`. `close` joins the worker (a frame's work at most); from the
event loop use `async_close`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
import logging
import math
import queue
import threading
import time
from typing import TYPE_CHECKING, Any, Final, cast

import av
from av.video.frame import PictureType
from av.video.reformatter import Interpolation, VideoReformatter
import numpy as np

from ..media.encoders import (
    SOFTWARE_ENCODER,
    EncoderChooser,
    NoEncoderError,
    hardware_options,
    pixel_format,
    shared_chooser,
)
from ..media.h264 import LEVEL_LIMITS, H264Level, H264Profile
from .h264_rtp import avcc_parameter_sets, split_avcc

if TYPE_CHECKING:
    from av.packet import Packet
    from av.video.codeccontext import VideoCodecContext
    from av.video.frame import VideoFrame

_LOGGER = logging.getLogger(__name__)

CLOCK_RATE: Final = 90_000  # RTP video clock; input and output timestamps use it
TIME_BASE: Final = Fraction(1, CLOCK_RATE)
# Peers found iOS stalls below about this (potmat#228: 300, pi4cam#47: 1000); a watch-sized
# picture needs less, so the floor scales with the picture down to MIN_BITRATE_KBPS.
BITRATE_FLOOR_KBPS: Final = 500
MIN_BITRATE_KBPS: Final = 150
_FLOOR_PIXELS: Final = 1280 * 720
INPUT_QUEUE: Final = 60  # samples: about 2 s of 30 fps before input is dropped
OUTPUT_QUEUE: Final = 60
_POLL_SECONDS: Final = 0.1
_X264_PROFILES: Final = {
    H264Profile.BASELINE: "baseline",
    H264Profile.MAIN: "main",
    H264Profile.HIGH: "high",
}
_DECODERS: Final = {
    "h264": "h264",
    "avc1": "h264",
    "avc3": "h264",
    "hevc": "hevc",
    "hvc1": "hevc",
    "hev1": "hevc",
}
_START_CODE: Final = b"\x00\x00\x01"
_NAL_SPS: Final = 7
_NAL_PPS: Final = 8
# Hardware encoders turn a forced I picture into an IDR only when told to.


class LiveTranscodeError(Exception):
    """The transcoder cannot start (unknown codec, no usable encoder)."""


@dataclass(frozen=True, slots=True)
class LiveVideoTarget:
    """What the viewer selected: picture box, rate, profile, level and bitrate."""

    width: int
    height: int
    fps: int
    bitrate_kbps: int
    profile: H264Profile = H264Profile.MAIN
    level: H264Level = H264Level.LEVEL3_1

    def __post_init__(self) -> None:
        """Reject sizes and rates no encoder can make."""
        if min(self.width, self.height) < 16 or self.fps < 1 or self.bitrate_kbps < 1:
            raise ValueError(f"unsupported live video target: {self!r}")


@dataclass(frozen=True, slots=True)
class EncodedSample:
    """One H.264 access unit: AVCC with 4-byte lengths, 90 kHz timestamp."""

    data: bytes
    pts: int
    keyframe: bool


@dataclass(frozen=True, slots=True)
class LiveTranscodeStats:
    """A snapshot of the transcoder's counters."""

    encoder: str = ""
    bitrate_kbps: int = 0
    frames_in: int = 0  # decoded source frames
    frames_out: int = 0  # encoded frames
    frames_skipped: int = 0  # over the target frame rate
    input_dropped: int = 0  # samples refused or skipped until the next keyframe
    decode_errors: int = 0
    keyframes_out: int = 0
    reconfigures: int = 0
    busy_seconds: float = 0.0


def bitrate_for(target: LiveVideoTarget) -> int:
    """Return the bitrate to encode at: the request, raised to a floor that scales with size."""
    pixels = target.width * target.height
    floor = max(
        MIN_BITRATE_KBPS, min(BITRATE_FLOOR_KBPS, BITRATE_FLOOR_KBPS * pixels // _FLOOR_PIXELS)
    )
    return max(target.bitrate_kbps, floor)


def fit_inside(src_width: int, src_height: int, box_width: int, box_height: int) -> tuple[int, int]:
    """Return the even size of the source scaled to fit the box, aspect kept."""
    scale = min(Fraction(box_width, src_width), Fraction(box_height, src_height))
    return max(2, int(src_width * scale) & ~1), max(2, int(src_height * scale) & ~1)


def annexb_to_avcc(data: bytes) -> bytes:
    """Return Annex B NAL units as 4-byte length-prefixed AVCC."""
    out = bytearray()
    pos = data.find(_START_CODE)
    while pos != -1:
        start = pos + 3
        end = data.find(_START_CODE, start)
        nal_end = len(data) if end == -1 else end
        # A 4-byte start code leaves a zero before the next 3-byte code; trailing zeros are
        # never part of a NAL unit (H.264 §7.4.1.2.4).
        while nal_end > start and data[nal_end - 1] == 0:
            nal_end -= 1
        if nal_end > start:
            out += (nal_end - start).to_bytes(4)
            out += data[start:nal_end]
        pos = end
    return bytes(out)


def parameter_sets_of(data: bytes) -> bytes:
    """Return the SPS and PPS of Annex B, AVCC or avcC ``data`` as AVCC (empty if not both)."""
    if not data:
        return b""
    if data[0] == 1:  # an avcC record (extradata with a global header)
        try:
            sps, pps = avcc_parameter_sets(data)
        except ValueError:
            return b""
        nals = [*sps, *pps]
    else:
        avcc = (
            annexb_to_avcc(data)
            if data.startswith((b"\x00\x00\x01", b"\x00\x00\x00\x01"))
            else data
        )
        nals = [
            bytes(nal)
            for nal in split_avcc(avcc)[0]
            if nal and nal[0] & 0x1F in (_NAL_SPS, _NAL_PPS)
        ]
    types = {nal[0] & 0x1F for nal in nals}
    if not {_NAL_SPS, _NAL_PPS} <= types:
        return b""
    return b"".join(len(nal).to_bytes(4) + nal for nal in nals)


class LiveVideoTranscoder:
    """Decode, scale and encode one live picture size on a worker thread."""

    def __init__(
        self,
        *,
        codec: str,
        extradata: bytes,
        target: LiveVideoTarget,
        on_sample: Callable[[EncodedSample], None] | None = None,
        encoders: EncoderChooser | None = None,
        name: str = "live",
    ) -> None:
        """Start the worker; it opens the decoder and the encoder ``encoders`` chooses.

        ``encoders`` defaults to the process's chooser, shared with recording.
        """
        decoder_name = _DECODERS.get(codec.lower())
        if decoder_name is None:
            raise LiveTranscodeError(f"cannot decode {codec!r}")
        self._decoder_name = decoder_name
        self._extradata = extradata
        self._target = target
        self._bitrate = bitrate_for(target)
        self._on_sample = on_sample
        self._encoders = encoders or shared_chooser()
        self._name = name
        self._input: queue.Queue[tuple[bytes, int, int | None, bool]] = queue.Queue(INPUT_QUEUE)
        self._output: queue.Queue[EncodedSample] = queue.Queue(OUTPUT_QUEUE)
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._pending_bitrate: int | None = None
        self._force_keyframe = False
        self._skip_to_keyframe = False
        self._stats = LiveTranscodeStats(bitrate_kbps=self._bitrate)
        self._error: BaseException | None = None
        self._started = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"hksv_live_transcode_{name}", daemon=True
        )
        self._thread.start()

    @property
    def target(self) -> LiveVideoTarget:
        """Return the target, with the bitrate last asked for."""
        return self._target

    @property
    def running(self) -> bool:
        """Return whether the worker thread is alive."""
        return self._thread.is_alive()

    @property
    def error(self) -> BaseException | None:
        """Return what stopped the worker, if it failed."""
        return self._error

    def stats(self) -> LiveTranscodeStats:
        """Return a snapshot of the counters."""
        return self._stats

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until the worker has opened its codecs (or failed); return whether it did."""
        return self._started.wait(timeout)

    def put(
        self, sample: bytes, pts: int, keyframe: bool, dts: int | None = None, wait: float = 0.0
    ) -> bool:
        """Queue one source sample (90 kHz timestamps); False if it was dropped.

        With the queue full the sample waits up to ``wait`` seconds (never on the event loop),
        else it is dropped and so is everything up to the next keyframe.
        """
        if self._stop.is_set():
            return False
        if self._skip_to_keyframe and not keyframe:
            self._count(input_dropped=1)
            return False
        try:
            if wait > 0:
                self._input.put((sample, pts, dts, keyframe), timeout=wait)
            else:
                self._input.put_nowait((sample, pts, dts, keyframe))
        except queue.Full:
            # The decoder must not miss a reference frame: skip to the next keyframe.
            self._skip_to_keyframe = True
            self._count(input_dropped=1)
            return False
        self._skip_to_keyframe = False
        return True

    def get(self, timeout: float | None = None) -> EncodedSample | None:
        """Return the next encoded sample (only without ``on_sample``), None on timeout."""
        try:
            return self._output.get(timeout=timeout)
        except queue.Empty:
            return None

    def reconfigure(self, bitrate_kbps: int) -> None:
        """Encode at a new bitrate from the next frame on, starting with an IDR."""
        with self._lock:
            self._target = replace(self._target, bitrate_kbps=max(1, bitrate_kbps))
            self._pending_bitrate = bitrate_for(self._target)
            self._force_keyframe = True

    def force_keyframe(self) -> None:
        """Make the next encoded frame an IDR (a viewer joined or lost packets)."""
        with self._lock:
            self._force_keyframe = True

    def close(self) -> None:
        """Stop the worker and wait for it to exit."""
        self._stop.set()
        if self._thread is not threading.current_thread():
            self._thread.join()

    async def async_close(self) -> None:
        """Close without blocking the event loop."""
        await asyncio.to_thread(self.close)

    def _count(self, **deltas: int | float) -> None:
        """Add to counters (the snapshot is replaced whole, so readers never see half)."""
        with self._lock:
            current = self._stats
            self._stats = replace(
                current, **{key: getattr(current, key) + value for key, value in deltas.items()}
            )

    # -- worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        """Work until closed; a failure is kept in ``error`` and ends the worker."""
        try:
            _Worker(self).run()
        except Exception as err:  # noqa: BLE001 - a codec failure must end this thread, not HA
            self._error = err
            _LOGGER.warning("%s: live transcoder stopped: %s", self._name, err)
        finally:
            self._started.set()
            self._stop.set()


class _Worker:
    """The PyAV side of one transcoder; lives and dies on its thread."""

    def __init__(self, owner: LiveVideoTranscoder) -> None:
        """Open the decoder and encoder."""
        self._owner = owner
        self._decoder = cast("VideoCodecContext", av.CodecContext.create(owner._decoder_name, "r"))
        self._decoder.extradata = owner._extradata
        target = owner._target
        try:
            self._encoder_name = owner._encoders.encoder_for(target.width, target.height)
        except NoEncoderError as err:
            raise LiveTranscodeError(str(err)) from err
        self._bitrate = owner._bitrate
        self._encoder: VideoCodecContext | None = None
        self._reformatter = VideoReformatter()
        self._last_slot: int | None = None
        # SPS+PPS (AVCC) to put before an IDR the encoder sent without them.
        self._parameter_sets = b""
        self._canvases: dict[int, np.ndarray] = {}
        with owner._lock:
            owner._stats = replace(owner._stats, encoder=self._encoder_name)
        owner._started.set()

    def run(self) -> None:
        """Take samples until stopped."""
        owner = self._owner
        while not owner._stop.is_set():
            try:
                sample, pts, dts, keyframe = owner._input.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                continue
            started = time.monotonic()
            packet = av.Packet(sample)
            packet.pts, packet.dts, packet.time_base = (
                pts,
                dts if dts is not None else pts,
                TIME_BASE,
            )
            packet.is_keyframe = keyframe
            try:
                frames = self._decoder.decode(packet)
            except av.error.FFmpegError as err:
                owner._count(decode_errors=1)
                _LOGGER.debug("%s: undecodable sample: %s", owner._name, err)
                continue
            owner._count(frames_in=len(frames))
            for frame in frames:
                self._encode(frame)
            owner._count(busy_seconds=time.monotonic() - started)

    def _encode(self, frame: VideoFrame) -> None:
        """Scale, pad and encode one decoded frame, unless the frame rate cap skips it."""
        owner = self._owner
        pts = frame.pts
        if pts is None:
            owner._count(frames_skipped=1)
            return
        slot = math.floor(Fraction(pts * owner._target.fps, CLOCK_RATE) + Fraction(1, 2))
        if self._last_slot is not None and slot <= self._last_slot:
            owner._count(frames_skipped=1)
            return
        self._last_slot = slot
        with owner._lock:
            bitrate, owner._pending_bitrate = owner._pending_bitrate, None
            force = owner._force_keyframe
            owner._force_keyframe = False
        if bitrate is not None:
            self._bitrate = bitrate
            self._reopen()
            owner._count(reconfigures=1)
            with owner._lock:
                owner._stats = replace(owner._stats, bitrate_kbps=bitrate)
        if self._encoder is None:
            self._encoder = self._open_encoder()
            self._parameter_sets = parameter_sets_of(bytes(self._encoder.extradata or b""))
        out = self._scaled(frame)
        if self._encoder.pix_fmt != "yuv420p":  # Quick Sync takes nv12
            out = out.reformat(format=self._encoder.pix_fmt)
        out.pts, out.time_base = pts, TIME_BASE
        out.pict_type = PictureType.I if force else PictureType.NONE
        self._emit(self._encoder.encode(out))

    def _reopen(self) -> None:
        """Drain the current encoder; the next frame opens a new one (an IDR by nature)."""
        if self._encoder is not None:
            self._emit(self._encoder.encode(None))
            self._encoder = None

    def _open_encoder(self) -> VideoCodecContext:
        """Return an open encoder; a hardware one that fails here gives way to libx264."""
        try:
            return self._open_named_encoder()
        except (av.error.FFmpegError, ValueError, OSError) as err:
            owner = self._owner
            if self._encoder_name == SOFTWARE_ENCODER:
                raise
            # The chooser's test encode can pass where the bitrate, profile or level fails.
            target = owner._target
            owner._encoders.failed(self._encoder_name, target.width, target.height, err)
            self._encoder_name = SOFTWARE_ENCODER
            with owner._lock:
                owner._stats = replace(owner._stats, encoder=SOFTWARE_ENCODER)
            return self._open_named_encoder()

    def _open_named_encoder(self) -> VideoCodecContext:
        """Return the chosen H.264 encoder, open for the target at the current bitrate."""
        target = self._owner._target
        encoder = cast("VideoCodecContext", av.CodecContext.create(self._encoder_name, "w"))
        pix_fmt = pixel_format(self._encoder_name)
        encoder.width, encoder.height, encoder.pix_fmt = target.width, target.height, pix_fmt
        encoder.time_base = TIME_BASE
        encoder.framerate = Fraction(target.fps)
        encoder.gop_size = target.fps  # one-second GOP: a lost packet heals within a second
        encoder.max_b_frames = 0
        encoder.bit_rate = self._bitrate * 1000
        encoder.options = self._encoder_options(target)
        encoder.open()
        return encoder

    def _encoder_options(self, target: LiveVideoTarget) -> dict[str, str]:
        """Return the private options of the chosen encoder."""
        if self._encoder_name != SOFTWARE_ENCODER:
            return hardware_options(self._encoder_name, _X264_PROFILES[target.profile])
        rate = self._bitrate
        return {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "profile": _X264_PROFILES[target.profile],
            "level": LEVEL_LIMITS[target.level].name,
            "forced-idr": "1",
            # No scene cuts or B-frames; SPS/PPS repeated in-band before every IDR; a VBV of
            # one second so the rate holds over a GOP.
            "x264-params": (
                f"keyint={target.fps}:min-keyint={target.fps}:scenecut=0:bframes=0:"
                f"repeat-headers=1:vbv-maxrate={rate}:vbv-bufsize={rate}"
            ),
        }

    def _with_parameter_sets(self, avcc: bytes, keyframe: bool) -> bytes:
        """Return ``avcc`` with SPS+PPS in front if it is an IDR without them.

        libx264 repeats them itself (repeat-headers); hardware encoders send them with the
        first IDR only or in extradata, so they are kept and put in-band here.
        """
        found = parameter_sets_of(avcc)
        if found:
            self._parameter_sets = found
            return avcc
        if keyframe and self._parameter_sets:
            return self._parameter_sets + avcc
        return avcc

    def _scaled(self, frame: VideoFrame) -> VideoFrame:
        """Return the frame scaled into the target box, centred on black bars if needed."""
        target = self._owner._target
        width, height = fit_inside(frame.width, frame.height, target.width, target.height)
        scaled = self._reformatter.reformat(
            frame, width, height, "yuv420p", interpolation=Interpolation.BILINEAR
        )
        if (width, height) == (target.width, target.height):
            return scaled
        out = av.VideoFrame(target.width, target.height, "yuv420p")
        top, left = (target.height - height) // 4 * 2, (target.width - width) // 4 * 2
        for index, (source, dest) in enumerate(zip(scaled.planes, out.planes, strict=True)):
            shift = 0 if index == 0 else 1  # chroma planes are half size both ways
            canvas = self._canvas(index, dest.line_size, dest.height)
            rows = np.frombuffer(source, dtype=np.uint8).reshape(-1, source.line_size)
            canvas[
                top >> shift : (top >> shift) + (height >> shift),
                left >> shift : (left >> shift) + (width >> shift),
            ] = rows[: height >> shift, : width >> shift]
            dest.update(canvas.tobytes())
        return out

    def _canvas(self, plane: int, line_size: int, rows: int) -> np.ndarray:
        """Return a black plane buffer, reused between frames (only the picture area changes)."""
        canvas = self._canvases.get(plane)
        if canvas is None or canvas.shape != (rows, line_size):
            canvas = np.full((rows, line_size), 16 if plane == 0 else 128, dtype=np.uint8)
            self._canvases[plane] = canvas
        return canvas

    def _emit(self, packets: Sequence[Packet[Any]]) -> None:
        """Hand encoded packets on as AVCC samples."""
        owner = self._owner
        for packet in packets:
            if packet.pts is None:
                continue
            data = self._with_parameter_sets(annexb_to_avcc(bytes(packet)), packet.is_keyframe)
            sample = EncodedSample(data, packet.pts, packet.is_keyframe)
            owner._count(frames_out=1, keyframes_out=int(packet.is_keyframe))
            if owner._on_sample is not None:
                owner._on_sample(sample)
                continue
            while not owner._stop.is_set():
                try:
                    owner._output.put(sample, timeout=_POLL_SECONDS)
                    break
                except queue.Full:
                    continue
