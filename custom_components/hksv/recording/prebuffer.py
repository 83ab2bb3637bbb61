"""The prebuffer: recent GOPs of the camera, taken from Home Assistant's own stream worker.

This is the only module that touches the private stream API (``stream.core``): a stream
output provider attached to the camera's shared ``Stream`` (one connection to the camera,
shared with HLS viewers) receives every segment and part the worker muxes; nothing is
decoded. If Home Assistant changes that API, this file is the one to fix
(docs/home-assistant.md §1.8–§1.9).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
import logging
from typing import TYPE_CHECKING, Any, Final, override

from homeassistant.components.camera.helper import get_camera_from_entity_id
from homeassistant.components.camera.prefs import DynamicStreamSettings
from homeassistant.components.stream import Stream
from homeassistant.components.stream.core import (
    PROVIDERS,
    IdleTimer,
    Segment,
    StreamOutput,
    StreamSettings,
)
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers.event import async_track_time_interval

from .fmp4 import Fmp4Error
from .gop import Gop, GopAssembler

if TYPE_CHECKING:
    from datetime import datetime

_LOGGER = logging.getLogger(__name__)

PROVIDER_NAME: Final = "hksv"
# How often to check that our output is still attached (the camera entity may have reloaded
# and made a new Stream, or the provider idled out while the camera was down).
WATCHDOG_INTERVAL_SECONDS: Final = 15
# A safety cap in case a camera sends an absurd bitrate; duration is the real bound.
MAX_BUFFER_BYTES: Final = 64 * 1024 * 1024
# Segments whose parts we may still be receiving (LL-HLS delivers parts of the newest one).
_OPEN_SEGMENTS: Final = 4

type GopListener = Callable[[Gop], None]
type PartListener = Callable[[bytes, bytes, int], None]  # (init, moof+mdat, epoch)


@dataclass(frozen=True, slots=True)
class LiveView:
    """What a recording starts from: complete GOPs, the GOP in progress, and a way out."""

    history: tuple[Gop, ...]
    pending: Gop | None
    unsubscribe: CALLBACK_TYPE


class HksvStreamOutput(StreamOutput):
    """A stream output that hands every new part to a callback; stores nothing itself."""

    def __init__(
        self,
        hass: HomeAssistant,
        idle_timer: IdleTimer,
        stream_settings: StreamSettings,
        dynamic_stream_settings: DynamicStreamSettings,
    ) -> None:
        """Create the output with the four arguments Stream.add_provider passes."""
        super().__init__(
            hass, idle_timer, stream_settings, dynamic_stream_settings, deque_maxlen=_OPEN_SEGMENTS
        )
        self.on_part: Callable[[Segment, bytes], None] | None = None
        self._parts_seen: dict[int, int] = {}

    @property
    @override
    def name(self) -> str:
        """Return the provider name."""
        return PROVIDER_NAME

    @callback
    @override
    def _async_put(self, segment: Segment) -> None:
        """Accept a new segment; data flowing keeps the output from idling out."""
        super()._async_put(segment)
        self.idle_timer.awake()
        self._deliver()

    @override
    def part_put(self) -> None:
        """Deliver parts appended to any open segment, in order."""
        super().part_put()
        self._deliver()

    def _deliver(self) -> None:
        """Hand over every part not seen yet (the worker appends parts on the loop)."""
        live = {id(segment) for segment in self._segments}
        for key in [key for key in self._parts_seen if key not in live]:
            del self._parts_seen[key]
        for segment in self._segments:
            seen = self._parts_seen.get(id(segment), 0)
            parts = segment.parts
            if seen < len(parts):
                self._parts_seen[id(segment)] = len(parts)
                if self.on_part is not None:
                    for part in parts[seen:]:
                        self.on_part(segment, part.data)


PROVIDERS.register(PROVIDER_NAME)(HksvStreamOutput)


class Prebuffer:
    """Keep the last ``keep_seconds`` of the camera as complete GOPs, bounded by duration."""

    def __init__(
        self, hass: HomeAssistant, camera_entity_id: str, *, keep_seconds: float, log_name: str
    ) -> None:
        """Prepare; nothing runs until async_start."""
        self._hass = hass
        self._camera_entity_id = camera_entity_id
        self.keep_seconds = keep_seconds
        self._log_name = log_name
        self._gops: deque[Gop] = deque()
        self._bytes = 0
        self._seconds = 0.0
        self._listeners: list[GopListener] = []
        self._part_listeners: list[PartListener] = []
        self._assembler = GopAssembler()
        self._stream: Stream | None = None
        self._output: HksvStreamOutput | None = None
        self._epochs: dict[tuple[int, int], int] = {}
        self._watchdog: CALLBACK_TYPE | None = None
        self.running = False
        self.parts_received = 0
        self.stream_restarts = 0  # new epochs: worker restarts and new Stream objects
        self.reattachments = 0  # the watchdog found our provider gone and added it again
        # Why the last attach failed (None once attached); the owner logs and shows it.
        self.source_problem: str | None = None
        self.on_source_change: Callable[[], None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def async_start(self) -> None:
        """Attach to the camera's stream and keep it running while we need it."""
        if self.running:
            return
        self.running = True
        await self._async_attach()
        self._watchdog = async_track_time_interval(
            self._hass, self._async_check_attached, timedelta(seconds=WATCHDOG_INTERVAL_SECONDS)
        )

    async def async_stop(self) -> None:
        """Detach from the stream (stopping the worker if nobody else uses it)."""
        self.running = False
        if self._watchdog is not None:
            self._watchdog()
            self._watchdog = None
        await self._async_detach()
        self._gops.clear()
        self._bytes = 0
        self._seconds = 0.0
        self._assembler = GopAssembler()

    async def _async_attach(self) -> None:
        """Add our provider to the camera entity's current Stream and start it."""
        try:
            camera = get_camera_from_entity_id(self._hass, self._camera_entity_id)
            stream = await camera.async_create_stream()
        except HomeAssistantError as err:
            self._set_source_problem(f"camera stream unavailable: {err}")
            return
        if stream is None:
            self._set_source_problem("camera has no stream source")
            return
        output = stream.add_provider(PROVIDER_NAME)
        if not isinstance(output, HksvStreamOutput):
            _LOGGER.error("%s: stream provider %s is not ours", self._log_name, PROVIDER_NAME)
            return
        output.on_part = self._on_part
        self._stream, self._output = stream, output
        await stream.start()
        self._set_source_problem(None)
        _LOGGER.debug("%s: prebuffer attached to the camera stream", self._log_name)

    def _set_source_problem(self, problem: str | None) -> None:
        """Remember whether the camera's stream could be attached; tell the owner on change."""
        if problem is not None:
            _LOGGER.debug("%s: %s", self._log_name, problem)
        if problem != self.source_problem:
            self.source_problem = problem
            if self.on_source_change is not None:
                self.on_source_change()

    async def _async_detach(self) -> None:
        """Remove our provider (clears its idle timer; stops the worker if it was the last)."""
        stream, output = self._stream, self._output
        self._stream = self._output = None
        if stream is not None and output is not None:
            output.on_part = None
            await stream.remove_provider(output)

    async def _async_check_attached(self, _now: datetime) -> None:
        """Re-attach after a camera reload or an idled-out provider."""
        if not self.running:
            return
        try:
            camera = get_camera_from_entity_id(self._hass, self._camera_entity_id)
        except HomeAssistantError:
            return
        stream, output = self._stream, self._output
        if (
            stream is not None
            and camera.stream is stream
            and output is not None
            and stream.outputs().get(PROVIDER_NAME) is output
        ):
            return
        if stream is not None:
            _LOGGER.info("%s: camera stream changed; re-attaching the prebuffer", self._log_name)
        # Leave the old Stream too: a reloaded camera entity does not stop its worker, and our
        # provider on it would keep its connection to the camera open.
        await self._async_detach()
        self.reattachments += 1
        await self._async_attach()

    # -- data -----------------------------------------------------------------------------

    @callback
    def _on_part(self, segment: Segment, data: bytes) -> None:
        """Turn one part into completed GOPs (event loop; parsing only, no copies of media)."""
        self.parts_received += 1
        epoch = self._epoch(segment)
        try:
            gops = self._assembler.feed(segment.init, data, epoch)
        except Fmp4Error as err:
            _LOGGER.warning("%s: skipping a malformed stream part: %s", self._log_name, err)
            return
        for gop in gops:
            self._append(gop)
        for listener in list(self._part_listeners):
            listener(segment.init, data, epoch)

    def _epoch(self, segment: Segment) -> int:
        """Return a counter that changes at every worker restart or new Stream object."""
        key = (id(self._stream), segment.stream_id)
        epoch = self._epochs.get(key)
        if epoch is None:
            epoch = self._epochs[key] = len(self._epochs)
            if epoch:
                self.stream_restarts += 1
        return epoch

    def _append(self, gop: Gop) -> None:
        """Store a completed GOP, trim by duration, and tell listeners."""
        self._gops.append(gop)
        self._bytes += gop.nbytes
        self._seconds += gop.duration_seconds
        self._trim()
        for listener in list(self._listeners):
            listener(gop)

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

    @callback
    def subscribe(self, listener: GopListener) -> CALLBACK_TYPE:
        """Call ``listener`` with every GOP completed from now on."""
        self._listeners.append(listener)

        def unsubscribe() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return unsubscribe

    @callback
    def open_live(
        self, on_gop: GopListener | None = None, on_part: PartListener | None = None
    ) -> LiveView:
        """Snapshot the buffer and the GOP in progress, and follow new GOPs and/or parts.

        Done in one step on the loop, so every sample is in exactly one of: the history, the
        pending GOP, or a part delivered later.
        """
        unsubscribers = []
        if on_gop is not None:
            unsubscribers.append(self.subscribe(on_gop))
        if on_part is not None:
            self._part_listeners.append(on_part)

            def remove_part_listener() -> None:
                if on_part in self._part_listeners:
                    self._part_listeners.remove(on_part)

            unsubscribers.append(remove_part_listener)

        def unsubscribe() -> None:
            for unsub in unsubscribers:
                unsub()

        return LiveView(tuple(self._gops), self._assembler.pending(), unsubscribe)

    def diagnostics(self) -> dict[str, Any]:
        """Return counters and the worker's own diagnostics."""
        return {
            "running": self.running,
            "attached": self._output is not None,
            "gops": len(self._gops),
            "buffered_seconds": round(self.buffered_seconds, 3),
            "buffered_bytes": self._bytes,
            "parts_received": self.parts_received,
            "stream_restarts": self.stream_restarts,
            "reattachments": self.reattachments,
            "stream": self._stream.get_diagnostics() if self._stream is not None else None,
        }
