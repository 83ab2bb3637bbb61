"""The prebuffer's bookkeeping, apart from Home Assistant: the GOP ring, holds, consumers.

``GopBuffer`` turns parsed parts into complete GOPs, keeps the newest ``keep_seconds`` of
them (and at most ``MAX_BUFFER_BYTES``), and hands every GOP and part to its consumers; a
consumer that raises is dropped and its owner told. ``source/prebuffer.py`` feeds it from
Home Assistant's stream worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
import logging
import time
from typing import Any, Final

from ..media.fmp4 import Fmp4Error
from .gop import Gop, GopAssembler
from .part import MediaPart, PartParser

_LOGGER = logging.getLogger(__name__)

# A safety cap in case a camera sends an absurd bitrate; duration is the real bound.
MAX_BUFFER_BYTES: Final = 64 * 1024 * 1024
# A camera that sent nothing for this long has frozen, though its connection may stay open
# (Home Assistant's worker gives up on a silent source only after its own timeout): what the
# buffer holds is then no longer the moments before an event, and is not sent as pre-roll.
# Shorter silences keep it: the last pictures before a camera died a few seconds before the
# event are worth a clip (which then ends as "camera stream lost"). HA's own outputs count
# as idle after the same 30 s.
STALE_MEDIA_SECONDS: Final = 30.0

type GopListener = Callable[[Gop], None]
type PartListener = Callable[[MediaPart], None]  # each HA part, parsed once
# Told once when its consumer raised and was dropped (so it can end its clip or session).
type ConsumerErrorListener = Callable[[Exception], None]


@dataclass(frozen=True, slots=True)
class LiveView:
    """What a recording starts from: complete GOPs, the GOP in progress, and a way out."""

    history: tuple[Gop, ...]
    pending: Gop | None
    unsubscribe: Callable[[], None]


class Consumer[T]:
    """One listener of the prebuffer, and whom to tell if it fails."""

    __slots__ = ("call", "on_error")

    def __init__(self, call: T, on_error: Callable[[Exception], None] | None) -> None:
        self.call = call
        self.on_error = on_error


class GopBuffer:
    """Keep the last ``keep_seconds`` of the camera as complete GOPs, bounded by duration."""

    def __init__(self, *, keep_seconds: float, log_name: str) -> None:
        """Start empty."""
        self.keep_seconds = keep_seconds
        self._log_name = log_name
        self._gops: deque[Gop] = deque()
        self._bytes = 0
        self._seconds = 0.0
        self._listeners: list[Consumer[Callable[[Gop], None]]] = []
        self._part_listeners: list[Consumer[Callable[[MediaPart], None]]] = []
        self._parser = PartParser()  # the one parse of each part, for every consumer
        self._assembler = GopAssembler()
        self._assembler_failed = False  # the assembler raised once since the last attach
        self._last_arrival: float | None = None  # time.monotonic() of the newest part
        # Consumers other than recording (live view) that need the stream running.
        self._holders: set[str] = set()
        self.malformed_parts = 0
        self.failed_consumers = 0  # listeners dropped because they raised

    # -- holds ----------------------------------------------------------------------------

    def hold(self, holder: str) -> None:
        """Keep the prebuffer running for ``holder`` even when recording stops it."""
        self._holders.add(holder)

    def release(self, holder: str) -> None:
        """Drop a hold; the caller stops the prebuffer if nothing else needs it."""
        self._holders.discard(holder)

    @property
    def held(self) -> bool:
        """Return True while a consumer other than recording needs the stream."""
        return bool(self._holders)

    # -- data -----------------------------------------------------------------------------

    def _clear(self) -> None:
        """Forget the buffered GOPs and the GOP in progress."""
        self._gops.clear()
        self._bytes = 0
        self._seconds = 0.0
        self._assembler = GopAssembler()
        self._last_arrival = None

    def _take_part(self, init: bytes, data: bytes, epoch: int) -> None:
        """Turn one part into completed GOPs and hand it on (parsing only, no media copies)."""
        try:
            part = self._parser.parse(init, data, epoch, time.monotonic())
        except Fmp4Error as err:
            self.malformed_parts += 1
            self._assembler.lost_part()
            # Once as a warning, then quietly: a broken stream must not flood the log.
            log = _LOGGER.warning if self.malformed_parts == 1 else _LOGGER.debug
            log("%s: skipping a malformed stream part: %s", self._log_name, err)
            return
        self._last_arrival = part.arrived
        gops: list[Gop] = []
        try:
            gops = self._assembler.add(part)
        except Exception:
            # A fault of ours must not cost live view its parts: start over at a keyframe.
            self._assembler = GopAssembler()
            if not self._assembler_failed:
                self._assembler_failed = True
                _LOGGER.exception("%s: the prebuffer could not read a part", self._log_name)
        for gop in gops:
            self._append(gop)
        for consumer in list(self._part_listeners):
            self._call(self._part_listeners, consumer, part)

    def _call[*Args](
        self,
        consumers: list[Consumer[Callable[[*Args], None]]],
        consumer: Consumer[Callable[[*Args], None]],
        *args: *Args,
    ) -> None:
        """Call one consumer; one that raises is dropped, logged once, and its owner told."""
        if consumer not in consumers:
            return  # removed by an earlier consumer of this part
        try:
            consumer.call(*args)
        except Exception as err:
            consumers.remove(consumer)
            self.failed_consumers += 1
            _LOGGER.exception(
                "%s: a consumer of the camera stream failed and was stopped", self._log_name
            )
            if consumer.on_error is not None:
                try:
                    consumer.on_error(err)
                except Exception:
                    _LOGGER.exception("%s: telling a failed consumer failed", self._log_name)

    def _append(self, gop: Gop) -> None:
        """Store a completed GOP, trim by duration, and tell listeners."""
        self._gops.append(gop)
        self._bytes += gop.nbytes
        self._seconds += gop.duration_seconds
        self._trim()
        for consumer in list(self._listeners):
            self._call(self._listeners, consumer, gop)

    def _trim(self) -> None:
        """Drop the oldest GOPs while the rest still covers ``keep_seconds`` (or bytes overflow)."""
        gops = self._gops
        while len(gops) > 1 and (
            self._seconds - gops[0].duration_seconds >= self.keep_seconds
            or self._bytes > MAX_BUFFER_BYTES
        ):
            oldest = gops.popleft()
            self._bytes -= oldest.nbytes
            self._seconds -= oldest.duration_seconds

    # -- consumers ------------------------------------------------------------------------

    @property
    def gops(self) -> Sequence[Gop]:
        """Return the buffered GOPs, oldest first."""
        return tuple(self._gops)

    @property
    def buffered_seconds(self) -> float:
        """Return the media duration held."""
        return self._seconds

    @property
    def buffered_bytes(self) -> int:
        """Return the media bytes held."""
        return self._bytes

    def subscribe(
        self,
        listener: Callable[[Gop], None],
        on_error: Callable[[Exception], None] | None = None,
    ) -> Callable[[], None]:
        """Call ``listener`` with every GOP completed from now on.

        A listener that raises is dropped; ``on_error`` is then told why.
        """
        consumer = Consumer(listener, on_error)
        self._listeners.append(consumer)

        def unsubscribe() -> None:
            if consumer in self._listeners:
                self._listeners.remove(consumer)

        return unsubscribe

    def _follow_parts(
        self, listener: Callable[[MediaPart], None], on_error: Callable[[Exception], None]
    ) -> Callable[[], None]:
        """Call ``listener`` with every part from now on; return how to stop."""
        consumer = Consumer(listener, on_error)
        self._part_listeners.append(consumer)

        def remove_part_listener() -> None:
            if consumer in self._part_listeners:
                self._part_listeners.remove(consumer)

        return remove_part_listener

    def open_live(
        self,
        on_gop: GopListener | None = None,
        on_part: PartListener | None = None,
        on_error: ConsumerErrorListener | None = None,
    ) -> LiveView:
        """Snapshot the buffer and the GOP in progress, and follow new GOPs and/or parts.

        Done in one step on the loop, so every sample is in exactly one of: the history, the
        pending GOP, or a part delivered later. If ``on_gop`` or ``on_part`` raises, both are
        dropped and ``on_error`` is told (the consumer has lost media and must end).
        """
        unsubscribers: list[Callable[[], None]] = []

        def unsubscribe() -> None:
            for unsub in unsubscribers:
                unsub()

        def failed(err: Exception) -> None:
            unsubscribe()
            if on_error is not None:
                on_error(err)

        if on_gop is not None:
            unsubscribers.append(self.subscribe(on_gop, failed))
        if on_part is not None:
            unsubscribers.append(self._follow_parts(on_part, failed))

        return LiveView(tuple(self._gops), self._assembler.pending(), unsubscribe)

    @property
    def has_keyframe(self) -> bool:
        """Return True if a recording could start now (a GOP, or one in progress)."""
        return bool(self._gops) or self._assembler.has_pending()

    @property
    def seconds_since_media(self) -> float | None:
        """Return how long ago the camera's newest part arrived (None: none since the attach)."""
        if self._last_arrival is None:
            return None
        return time.monotonic() - self._last_arrival

    @property
    def stale(self) -> bool:
        """Return True if the camera has sent nothing for ``STALE_MEDIA_SECONDS``."""
        age = self.seconds_since_media
        return age is not None and age > STALE_MEDIA_SECONDS

    def _buffer_diagnostics(self) -> dict[str, Any]:
        """Return what is buffered and who holds it."""
        return {
            "held_by": sorted(self._holders),
            "gops": len(self._gops),
            "buffered_seconds": round(self.buffered_seconds, 3),
            "buffered_bytes": self._bytes,
            "seconds_since_media": (
                None if (age := self.seconds_since_media) is None else round(age, 1)
            ),
        }
