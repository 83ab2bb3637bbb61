"""How much transcoding this machine can do at once, shared by recording and live view.

The unit is one 1280x720 encode at 30 fps; a transcode costs its output pixel rate over that
(a 1080p30 recording 2.25, a 640x360 live view at 30 fps 0.25). The capacity is measured once
per process, off the event loop, the first time it is needed: the chosen encoder (hardware
when there is one) encodes synthetic 720p frames with the recording's settings in five short
windows, and how many times real time the median window ran, times ``HEADROOM``, is how many
units fit.
The headroom leaves room for what the measurement does not include: decoding the camera,
scaling, audio, and Home Assistant itself (docs/architecture.md, "Transcoding").

A transcode holds its reservation while it runs; one is always admitted when nothing else
transcodes, so a slow machine still records (and says when its encoder falls behind).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
import logging
import math
import os
import threading
import time
from typing import TYPE_CHECKING, Any, Final, cast

import av
import numpy as np

from .encoders import (
    EncoderChooser,
    NoEncoderError,
    hardware_options,
    is_hardware,
    pixel_format,
    shared_chooser,
)

if TYPE_CHECKING:
    from av.video.codeccontext import VideoCodecContext

_LOGGER = logging.getLogger(__name__)

REFERENCE_SIZE: Final = (1280, 720)
REFERENCE_FPS: Final = 30
REFERENCE_PIXEL_RATE: Final = REFERENCE_SIZE[0] * REFERENCE_SIZE[1] * REFERENCE_FPS
HEADROOM: Final = 0.6
# Five windows of at least this long and this many frames, after a warm-up that fills the
# encoder's frame threads; the median window counts (one busy moment on a shared box does not).
MEASURE_WINDOW_SECONDS: Final = 0.25
MEASURE_MIN_FRAMES: Final = 8
MEASURE_WINDOWS: Final = 5
MEASURE_X264_PRESET: Final = "superfast"  # the recording preset (recording/av_encode.py)
_MEASURE_PATTERNS: Final = 8
_POLL_SECONDS: Final = 0.1


@dataclass(frozen=True, slots=True)
class Capacity:
    """How many 720p30 encodes fit at once, and where that number comes from."""

    units: float
    encoder: str
    speed: float  # measured: one 720p30 encode ran this many times real time
    source: str  # "measured", "configured", or why it could not be measured

    def as_dict(self) -> dict[str, Any]:
        """Return the capacity for diagnostics (None units: no limit)."""
        return {
            "units_720p30": round(self.units, 2) if math.isfinite(self.units) else None,
            "encoder": self.encoder,
            "speed_720p30": round(self.speed, 2),
            "source": self.source,
        }


def transcode_cost(width: int, height: int, fps: float) -> float:
    """Return what a transcode to ``width``x``height`` at ``fps`` costs, in 720p30 units."""
    return width * height * fps / REFERENCE_PIXEL_RATE


def probe_luma_planes(width: int, height: int) -> list[np.ndarray]:
    """Return luma planes with detail and motion, roughly as hard to code as a camera's."""
    rng = np.random.default_rng(13)
    base = rng.integers(16, 235, size=(height // 8 + 1, width // 8 + 1), dtype=np.uint8)
    blocks = np.kron(base, np.ones((8, 8), dtype=np.uint8))[:height, :width]
    planes = []
    for step in range(_MEASURE_PATTERNS):
        moved = np.roll(blocks, (step * 3, step * 5), axis=(0, 1))
        noise = rng.integers(0, 12, size=(height, width), dtype=np.uint8)
        planes.append(np.clip(moved.astype(np.int16) + noise, 16, 235).astype(np.uint8))
    return planes


def measure_capacity(chooser: EncoderChooser) -> Capacity:
    """Measure how fast the chosen encoder codes 720p30 and return the capacity (blocking)."""
    width, height = REFERENCE_SIZE
    name = chooser.encoder_for(width, height)
    fmt = pixel_format(name)
    encoder = cast("VideoCodecContext", av.CodecContext.create(name, "w"))
    encoder.width, encoder.height, encoder.pix_fmt = width, height, fmt
    encoder.time_base = Fraction(1, REFERENCE_FPS)
    encoder.framerate = Fraction(REFERENCE_FPS)
    encoder.bit_rate = 2_000_000
    encoder.gop_size = REFERENCE_FPS * 4
    encoder.max_b_frames = 0
    if is_hardware(name):
        encoder.options = hardware_options(name, "main")
    else:
        cpus = os.process_cpu_count() or 1
        encoder.thread_type = "FRAME"
        encoder.thread_count = min(6, cpus * 3 // 2)
        encoder.options = {"preset": MEASURE_X264_PRESET, "x264-params": "scenecut=0:bframes=0"}
    encoder.open()
    frames = []
    for luma in probe_luma_planes(width, height):
        frame = av.VideoFrame(width, height, "yuv420p")
        frame.planes[0].update(luma.tobytes())
        for plane in frame.planes[1:]:
            plane.update(bytes([128]) * plane.buffer_size)
        frames.append(frame.reformat(format=fmt) if fmt != "yuv420p" else frame)
    count = 0

    def encode_for(seconds: float, least: int) -> float:
        """Encode for at least ``seconds`` and ``least`` frames; return x real time."""
        nonlocal count
        started, first = time.perf_counter(), count
        while count - first < least or time.perf_counter() - started < seconds:
            frame = frames[count % len(frames)]
            frame.pts = count
            encoder.encode(frame)
            count += 1
        return (count - first) / REFERENCE_FPS / (time.perf_counter() - started)

    encode_for(0.0, len(frames))  # warm-up
    speeds = sorted(
        encode_for(MEASURE_WINDOW_SECONDS, MEASURE_MIN_FRAMES) for _ in range(MEASURE_WINDOWS)
    )
    encoder.encode(None)
    speed = speeds[len(speeds) // 2]
    capacity = Capacity(speed * HEADROOM, name, speed, "measured")
    _LOGGER.info(
        "Transcode capacity: %s codes 720p30 at %.2fx real time; %.2f such transcodes at once",
        name,
        speed,
        capacity.units,
    )
    return capacity


class Reservation:
    """One transcode's share of the budget; ``release`` is idempotent."""

    __slots__ = ("_budget", "cost", "label", "released")

    def __init__(self, budget: TranscodeBudget, cost: float, label: str) -> None:
        """Hold ``cost`` units for ``label``."""
        self._budget = budget
        self.cost = cost
        self.label = label
        self.released = False

    def release(self) -> None:
        """Give the units back (once)."""
        if not self.released:
            self.released = True
            self._budget._release(self)


class TranscodeBudget:
    """Admit transcodes while they fit the capacity; thread-safe, any event loop."""

    def __init__(
        self,
        chooser: EncoderChooser | None = None,
        *,
        capacity: float | None = None,
        measure: Callable[[EncoderChooser], Capacity] = measure_capacity,
    ) -> None:
        """Use a configured ``capacity`` (720p30 units), or measure it when first needed."""
        self._chooser = chooser or shared_chooser()
        self._measure = measure
        self._capacity: Capacity | None = (
            Capacity(capacity, "", 0.0, "configured") if capacity is not None else None
        )
        self._lock = threading.Lock()
        self._measure_lock = threading.Lock()
        self._held: list[Reservation] = []
        self.refused = 0

    @property
    def capacity(self) -> Capacity | None:
        """Return the capacity, None until measured."""
        return self._capacity

    @property
    def in_use(self) -> float:
        """Return the units held by running transcodes."""
        with self._lock:
            return sum(held.cost for held in self._held)

    @property
    def held(self) -> list[str]:
        """Return who holds a reservation."""
        with self._lock:
            return [held.label for held in self._held]

    def measure(self) -> Capacity:
        """Return the capacity, measuring it the first time (blocking)."""
        with self._measure_lock:
            if self._capacity is None:
                try:
                    self._capacity = self._measure(self._chooser)
                except (av.FFmpegError, ValueError, OSError, NoEncoderError) as err:
                    # Without a number nothing is limited; each transcode then reports itself
                    # (and the encoder's own failure shows on the recording).
                    _LOGGER.warning("Transcode capacity could not be measured: %s", err)
                    self._capacity = Capacity(math.inf, "", 0.0, f"not measured: {err}")
            return self._capacity

    async def async_measure(self) -> Capacity:
        """Return the capacity; the measurement runs on a worker thread."""
        if self._capacity is not None:
            return self._capacity
        return await asyncio.to_thread(self.measure)

    def try_reserve(self, cost: float, label: str) -> Reservation | None:
        """Reserve ``cost`` units now, or return None when they do not fit.

        Before the capacity is known every transcode is admitted.
        """
        reservation = self._admit(cost, label)
        if reservation is None:
            self.refused += 1
        return reservation

    async def reserve(self, cost: float, label: str, *, wait: float) -> Reservation | None:
        """Reserve ``cost`` units, waiting up to ``wait`` seconds for room; None if none came."""
        await self.async_measure()
        deadline = time.monotonic() + wait
        while (reservation := self._admit(cost, label)) is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.refused += 1
                return None
            await asyncio.sleep(min(_POLL_SECONDS, remaining))
        return reservation

    def explain(self, cost: float) -> str:
        """Return why a transcode of ``cost`` units does not fit now."""
        capacity = self._capacity
        with self._lock:
            labels = [held.label for held in self._held]
            in_use = sum(held.cost for held in self._held)
        units = capacity.units if capacity is not None else math.inf
        return (
            f"this machine's transcoding capacity is in use ({len(labels)} running: "
            f"{', '.join(labels)}; {in_use:.2f} of {units:.2f} units of 720p30, "
            f"{cost:.2f} more needed)"
        )

    def diagnostics(self) -> dict[str, Any]:
        """Return capacity, holders and refusals."""
        capacity = self._capacity
        with self._lock:
            held = [{"label": h.label, "cost": round(h.cost, 2)} for h in self._held]
        return {
            "capacity": capacity.as_dict() if capacity is not None else None,
            "running": held,
            "refused": self.refused,
            "encoder": self._chooser.diagnostics(),
        }

    def _admit(self, cost: float, label: str) -> Reservation | None:
        """Return a reservation if ``cost`` fits (or nothing else runs), else None."""
        capacity = self._capacity
        with self._lock:
            in_use = sum(held.cost for held in self._held)
            if capacity is not None and self._held and in_use + cost > capacity.units:
                return None
            reservation = Reservation(self, cost, label)
            self._held.append(reservation)
            return reservation

    def _release(self, reservation: Reservation) -> None:
        """Remove a reservation."""
        with self._lock:
            if reservation in self._held:
                self._held.remove(reservation)


_SHARED: TranscodeBudget | None = None


def shared_budget() -> TranscodeBudget:
    """Return the process's transcode budget (the CPU and encoders are per machine)."""
    global _SHARED  # noqa: PLW0603 - one budget per process, created on first use
    if _SHARED is None:
        _SHARED = TranscodeBudget()
    return _SHARED
