"""The codec side of live transcoding: what a viewer asked for, and the PyAV work on the worker.

`LiveVideoCodec` decodes the camera's samples (H.264 or HEVC, AVCC/HVCC with the init's
avcC/hvcC), scales them into the requested box (aspect kept, black bars), and encodes H.264
with zero-latency settings. It runs on its transcoder's worker thread only (transcode.py);
`LiveControls` carries the loop's requests to it and its counters back, under a lock.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
import logging
import math
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
)
from ..media.h264 import LEVEL_LIMITS, H264Level, H264Profile
from .avcc import annexb_to_avcc, parameter_sets_of

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
_X264_PROFILES: Final = {
    H264Profile.BASELINE: "baseline",
    H264Profile.MAIN: "main",
    H264Profile.HIGH: "high",
}
DECODERS: Final = {
    "h264": "h264",
    "avc1": "h264",
    "avc3": "h264",
    "hevc": "hevc",
    "hvc1": "hevc",
    "hev1": "hevc",
}


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


class LiveControls:
    """The target, the loop's pending requests (bitrate, an IDR) and the counters; thread-safe."""

    __slots__ = ("_force_keyframe", "_lock", "_pending_bitrate", "stats", "target")

    def __init__(self, target: LiveVideoTarget) -> None:
        """Start with ``target`` at its bitrate (raised to the floor)."""
        self._lock = threading.Lock()
        self.target = target
        self._pending_bitrate: int | None = None
        self._force_keyframe = False
        # Replaced whole under the lock, so readers never see half an update.
        self.stats = LiveTranscodeStats(bitrate_kbps=bitrate_for(target))

    def reconfigure(self, bitrate_kbps: int) -> None:
        """Ask for a new bitrate from the next frame on, starting with an IDR."""
        with self._lock:
            self.target = replace(self.target, bitrate_kbps=max(1, bitrate_kbps))
            self._pending_bitrate = bitrate_for(self.target)
            self._force_keyframe = True

    def force_keyframe(self) -> None:
        """Ask for an IDR as the next encoded frame."""
        with self._lock:
            self._force_keyframe = True

    def take_requests(self) -> tuple[int | None, bool]:
        """Return and clear the pending bitrate and keyframe requests (worker thread)."""
        with self._lock:
            bitrate, self._pending_bitrate = self._pending_bitrate, None
            force, self._force_keyframe = self._force_keyframe, False
        return bitrate, force

    def count(self, **deltas: int | float) -> None:
        """Add to counters."""
        with self._lock:
            current = self.stats
            self.stats = replace(
                current, **{key: getattr(current, key) + value for key, value in deltas.items()}
            )

    def update(self, **values: str | int) -> None:
        """Set counters (the encoder's name, the bitrate in use)."""
        with self._lock:
            self.stats = replace(self.stats, **values)  # type: ignore[arg-type]


class LiveVideoCodec:
    """The PyAV side of one live transcoder: decoder, scaler, encoder; lives on its worker."""

    def __init__(
        self,
        *,
        decoder_name: str,
        extradata: bytes,
        controls: LiveControls,
        encoders: EncoderChooser,
        on_sample: Callable[[EncodedSample], None],
        name: str,
    ) -> None:
        """Open the decoder and choose the encoder (it opens with the first frame)."""
        self._controls = controls
        self._encoders = encoders
        self._on_sample = on_sample
        self._name = name
        self._decoder = cast("VideoCodecContext", av.CodecContext.create(decoder_name, "r"))
        self._decoder.extradata = extradata
        target = controls.target
        try:
            self._encoder_name = encoders.encoder_for(target.width, target.height)
        except NoEncoderError as err:
            raise LiveTranscodeError(str(err)) from err
        self._bitrate = controls.stats.bitrate_kbps
        self._encoder: VideoCodecContext | None = None
        self._reformatter = VideoReformatter()
        self._last_slot: int | None = None
        # SPS+PPS (AVCC) to put before an IDR the encoder sent without them.
        self._parameter_sets = b""
        self._canvases: dict[int, np.ndarray] = {}
        controls.update(encoder=self._encoder_name)

    def transcode(self, sample: bytes, pts: int, dts: int | None, keyframe: bool) -> None:
        """Decode one source sample (90 kHz timestamps) and encode the frames it completes."""
        controls = self._controls
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
            controls.count(decode_errors=1)
            _LOGGER.debug("%s: undecodable sample: %s", self._name, err)
            return
        controls.count(frames_in=len(frames))
        for frame in frames:
            self._encode(frame)
        controls.count(busy_seconds=time.monotonic() - started)

    def _encode(self, frame: VideoFrame) -> None:
        """Scale, pad and encode one decoded frame, unless the frame rate cap skips it."""
        controls = self._controls
        pts = frame.pts
        if pts is None:
            controls.count(frames_skipped=1)
            return
        slot = math.floor(Fraction(pts * controls.target.fps, CLOCK_RATE) + Fraction(1, 2))
        if self._last_slot is not None and slot <= self._last_slot:
            controls.count(frames_skipped=1)
            return
        self._last_slot = slot
        bitrate, force = controls.take_requests()
        if bitrate is not None:
            self._bitrate = bitrate
            self._reopen()
            controls.count(reconfigures=1)
            controls.update(bitrate_kbps=bitrate)
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
            if self._encoder_name == SOFTWARE_ENCODER:
                raise
            # The chooser's test encode can pass where the bitrate, profile or level fails.
            target = self._controls.target
            self._encoders.failed(self._encoder_name, target.width, target.height, err)
            self._encoder_name = SOFTWARE_ENCODER
            self._controls.update(encoder=SOFTWARE_ENCODER)
            return self._open_named_encoder()

    def _open_named_encoder(self) -> VideoCodecContext:
        """Return the chosen H.264 encoder, open for the target at the current bitrate."""
        target = self._controls.target
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
        target = self._controls.target
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
        for packet in packets:
            if packet.pts is None:
                continue
            data = self._with_parameter_sets(annexb_to_avcc(bytes(packet)), packet.is_keyframe)
            sample = EncodedSample(data, packet.pts, packet.is_keyframe)
            self._controls.count(frames_out=1, keyframes_out=int(packet.is_keyframe))
            self._on_sample(sample)
