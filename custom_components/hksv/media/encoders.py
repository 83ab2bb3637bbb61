"""One H.264 encoder choice for recording and live view: hardware first, libx264 last.

The hardware encoders this PyAV build has are tried in order, each by opening it and encoding
one frame at a small size, once per process (`decide`, blocking: call it off the event loop,
or `async_decide`). The first that works is the choice; libx264 is the last resort. A
hardware encoder can pass that probe and still refuse the real picture size (encoders have
size limits and a fixed number of sessions), so each size is tried once more before use
(`encoder_for`), and a failure when the real encoder opens is reported back (`failed`): that
size then uses libx264 from then on. Every decision and fallback is logged once and kept for
diagnostics (docs/architecture.md, "Transcoding").
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
import logging
import threading
from typing import TYPE_CHECKING, Any, Final, cast

import av

if TYPE_CHECKING:
    from av.video.codeccontext import VideoCodecContext

_LOGGER = logging.getLogger(__name__)

# Hardware first: VA-API (Intel/AMD on Linux), Quick Sync, NVENC, AMF, V4L2 mem-to-mem
# (Raspberry Pi and other SoCs), VideoToolbox (macOS). Each is used only if PyAV has it.
HARDWARE_ENCODERS: Final = (
    "h264_vaapi",
    "h264_qsv",
    "h264_nvenc",
    "h264_amf",
    "h264_v4l2m2m",
    "h264_videotoolbox",
)
SOFTWARE_ENCODER: Final = "libx264"
CANDIDATES: Final = (*HARDWARE_ENCODERS, SOFTWARE_ENCODER)
PROBE_SIZE: Final = (640, 360)
_TIME_BASE: Final = Fraction(1, 90_000)
_MAX_FALLBACKS_KEPT: Final = 8
# Private options per hardware encoder: a forced picture type I becomes an IDR (the recording
# cuts fragments there) and the encoder does not hold frames back for lookahead.
_HARDWARE_OPTIONS: Final[dict[str, dict[str, str]]] = {
    "h264_nvenc": {"preset": "p2", "forced-idr": "1", "zerolatency": "1", "delay": "0"},
    "h264_qsv": {"forced_idr": "1", "look_ahead": "0"},
    "h264_amf": {"usage": "lowlatency"},
    "h264_videotoolbox": {"realtime": "1"},
}
_PROFILE_NAMES: Final = {"h264_vaapi": {"baseline": "constrained_baseline"}}

type EncoderTrial = Callable[[str, int, int], None]


class NoEncoderError(Exception):
    """No H.264 encoder of the candidates works in this process."""


@dataclass(frozen=True, slots=True)
class EncoderDecision:
    """The encoder chosen, and what each candidate did when tried (in order)."""

    encoder: str
    hardware: bool
    tried: tuple[tuple[str, str], ...]

    def as_dict(self) -> dict[str, Any]:
        """Return the decision for diagnostics."""
        return {"encoder": self.encoder, "hardware": self.hardware, "tried": dict(self.tried)}


def is_hardware(name: str) -> bool:
    """Return whether ``name`` is a hardware encoder (anything but libx264)."""
    return name != SOFTWARE_ENCODER


def has_encoder(name: str) -> bool:
    """Return whether this PyAV build has encoder ``name``."""
    try:
        av.Codec(name, "w")
    except av.codec.codec.UnknownCodecError, ValueError:
        return False
    return True


def pixel_format(name: str) -> str:
    """Return the software pixel format to feed ``name``: yuv420p, else nv12 (Quick Sync)."""
    try:
        formats = [fmt.name for fmt in av.Codec(name, "w").video_formats or ()]
    except av.codec.codec.UnknownCodecError, ValueError:
        return "yuv420p"
    if not formats or "yuv420p" in formats:
        return "yuv420p"
    return "nv12" if "nv12" in formats else formats[0]


def hardware_options(name: str, profile: str) -> dict[str, str]:
    """Return the private options of hardware encoder ``name`` for an H.264 ``profile``."""
    options = dict(_HARDWARE_OPTIONS.get(name, {}))
    options["profile"] = _PROFILE_NAMES.get(name, {}).get(profile, profile)
    return options


def trial_encode(name: str, width: int, height: int) -> None:
    """Open encoder ``name`` at ``width``x``height`` and encode one frame; raise if it cannot."""
    fmt = pixel_format(name)
    encoder = cast("VideoCodecContext", av.CodecContext.create(name, "w"))
    encoder.width, encoder.height, encoder.pix_fmt = width, height, fmt
    encoder.time_base = _TIME_BASE
    encoder.framerate = Fraction(30)
    encoder.bit_rate = 1_000_000
    encoder.max_b_frames = 0
    encoder.open()
    frame = av.VideoFrame(width, height, "yuv420p")
    for plane in frame.planes:
        plane.update(bytes(plane.buffer_size))
    frame = frame.reformat(format=fmt) if fmt != "yuv420p" else frame
    frame.pts, frame.time_base = 0, _TIME_BASE
    encoder.encode(frame)
    encoder.encode(None)


class EncoderChooser:
    """Choose the H.264 encoder once per process, and per picture size where it fails."""

    def __init__(
        self, candidates: Sequence[str] = CANDIDATES, *, trial: EncoderTrial = trial_encode
    ) -> None:
        """Prepare; nothing is probed until the first ``decide``."""
        self._candidates = tuple(candidates)
        self._trial = trial
        self._lock = threading.Lock()
        self._decision: EncoderDecision | None = None
        self._sizes: dict[tuple[str, int, int], str | None] = {}  # error text, None: works
        self._fallbacks: deque[str] = deque(maxlen=_MAX_FALLBACKS_KEPT)

    @property
    def decision(self) -> EncoderDecision | None:
        """Return the decision if it was made."""
        return self._decision

    def decide(self) -> EncoderDecision:
        """Return the encoder to use, probing the candidates the first time (blocking)."""
        with self._lock:
            if self._decision is None:
                self._decision = self._probe()
            return self._decision

    async def async_decide(self) -> EncoderDecision:
        """Return the decision; the first probe runs on a worker thread."""
        if self._decision is not None:
            return self._decision
        return await asyncio.to_thread(self.decide)

    def encoder_for(self, width: int, height: int) -> str:
        """Return the encoder for this picture size: the choice if it works there (blocking)."""
        name = self.decide().encoder
        if not is_hardware(name):
            return name
        key = (name, width, height)
        with self._lock:
            if key not in self._sizes:
                try:
                    self._trial(name, width, height)
                except (av.FFmpegError, ValueError, OSError) as err:
                    self._note_fallback(key, str(err) or type(err).__name__)
                else:
                    self._sizes[key] = None
            usable = self._sizes[key] is None
        if usable:
            return name
        if SOFTWARE_ENCODER not in self._candidates:
            raise NoEncoderError(f"{name} cannot encode {width}x{height}: {self._sizes[key]}")
        return SOFTWARE_ENCODER

    def failed(self, name: str, width: int, height: int, error: BaseException | str) -> None:
        """Note that ``name`` failed to open for real at this size: libx264 takes it over."""
        with self._lock:
            self._note_fallback((name, width, height), str(error) or type(error).__name__)

    def diagnostics(self) -> dict[str, Any]:
        """Return the decision and the fallbacks so far."""
        decision = self._decision
        return {
            "decision": decision.as_dict() if decision is not None else None,
            "fallbacks": list(self._fallbacks),
        }

    def _note_fallback(self, key: tuple[str, int, int], error: str) -> None:
        """Record (under the lock) that an encoder fails at one size, and say so once."""
        if self._sizes.get(key, None) is not None:
            return
        self._sizes[key] = error
        name, width, height = key
        text = f"{name} failed at {width}x{height} ({error}); using {SOFTWARE_ENCODER} there"
        self._fallbacks.append(text)
        _LOGGER.warning("H.264 encoder %s", text)

    def _probe(self) -> EncoderDecision:
        """Try each candidate in order (under the lock) and return the first that works."""
        tried: list[tuple[str, str]] = []
        for name in self._candidates:
            if not has_encoder(name):
                tried.append((name, "not in this PyAV build"))
                continue
            if not is_hardware(name):
                tried.append((name, "software"))
                return self._decided(name, tried)
            try:
                self._trial(name, *PROBE_SIZE)
            except (av.FFmpegError, ValueError, OSError) as err:
                tried.append((name, f"does not open: {err}"))
                _LOGGER.debug("H.264 encoder %s unusable: %s", name, err)
                continue
            tried.append((name, "works"))
            return self._decided(name, tried)
        raise NoEncoderError(
            "no usable H.264 encoder: " + "; ".join(f"{n}: {what}" for n, what in tried)
        )

    def _decided(self, name: str, tried: list[tuple[str, str]]) -> EncoderDecision:
        """Log and return the decision."""
        decision = EncoderDecision(name, is_hardware(name), tuple(tried))
        _LOGGER.info(
            "H.264 encoder for recording and live view: %s (%s); tried %s",
            name,
            "hardware" if decision.hardware else "software",
            ", ".join(f"{n}: {what}" for n, what in tried),
        )
        return decision


_SHARED: Final = EncoderChooser()


def shared_chooser() -> EncoderChooser:
    """Return the process's encoder chooser (hardware is per machine, so is the choice)."""
    return _SHARED
