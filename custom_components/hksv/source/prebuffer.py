"""The prebuffer: recent GOPs of the camera, taken from Home Assistant's own stream worker.

This is the only module that touches the private stream API (``stream.core``): a stream
output provider attached to the camera's shared ``Stream`` (one connection to the camera,
shared with HLS viewers) receives every segment and part the worker muxes; nothing is
decoded. If Home Assistant changes that API, this file is the one to fix
(docs/home-assistant.md §1.8–§1.9).
"""

from __future__ import annotations

from collections.abc import Callable
import logging
from typing import Any, Final, override

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
from homeassistant.core import HomeAssistant, callback
from homeassistant.exceptions import HomeAssistantError

from .attachment import AttachedGopBuffer
from .worker_log import HIDDEN_WORKER_ERROR, NO_PARAMETERS_ERROR, WorkerErrorHandler

_LOGGER = logging.getLogger(__name__)

PROVIDER_NAME: Final = "hksv"
# Segments whose parts we may still be receiving (LL-HLS delivers parts of the newest one).
_OPEN_SEGMENTS: Final = 4
# Probe long enough for a keyframe of any usual GOP (20 s) and its bytes (32 MB): used only
# after that error, on the worker's next retry. Home Assistant's stream options cannot set
# these; the worker passes Stream.pyav_options to av.open as they are.
LONG_PROBE_OPTIONS: Final = {"analyzeduration": "20000000", "probesize": "33554432"}
# Live view can send a part only once HA's worker has finished it: the LL-HLS part target of
# the streams hksv serves (HA accepts 0.2-1.5 s and defaults to 1 s) bounds its latency.
SHORT_PART_SECONDS: Final = 0.3


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
        # Told when Home Assistant removes this output (its idle timer ran out); hksv's own
        # detach clears on_part first and is not reported.
        self.on_removed: Callable[[], None] | None = None
        self._parts_seen: dict[int, int] = {}
        self._failed = False  # on_part raised once (logged once)

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
        if self.on_part is None:
            # Detached: a segment the stopping worker queued must not re-arm the idle timer,
            # whose callback removes whichever provider then has our name (a newer one).
            return
        self.idle_timer.awake()
        self._deliver()

    @override
    def part_put(self) -> None:
        """Deliver parts appended to any open segment, in order."""
        super().part_put()
        if self.on_part is not None:
            # Parts keep the output awake too: segments end only at keyframes, so a camera
            # whose GOP outlasts HA's 30 s output idle timeout would lose this provider
            # mid-GOP (docs/home-assistant.md §1.8).
            self.idle_timer.awake()
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
                for part in parts[seen:]:
                    self._hand_over(segment, part.data)

    @override
    def cleanup(self) -> None:
        """Let go of waiters and the idle timer; report a removal hksv did not ask for."""
        super().cleanup()
        if self.on_part is not None and self.on_removed is not None:
            self.on_removed()

    def _hand_over(self, segment: Segment, data: bytes) -> None:
        """Call on_part; no error may reach HA's part loop (its own HLS outputs come next)."""
        if self.on_part is None:
            return
        try:
            self.on_part(segment, data)
        except Exception:
            if not self._failed:
                self._failed = True
                _LOGGER.exception("hksv's prebuffer failed on a stream part")


PROVIDERS.register(PROVIDER_NAME)(HksvStreamOutput)


class Prebuffer(AttachedGopBuffer):
    """A ``GopBuffer`` fed by the camera entity's Stream (``AttachedGopBuffer``: when)."""

    def __init__(
        self,
        hass: HomeAssistant,
        camera_entity_id: str,
        *,
        keep_seconds: float,
        log_name: str,
        part_target_seconds: float | None = None,
    ) -> None:
        """Prepare; nothing runs until async_start.

        ``part_target_seconds``: the LL-HLS part target to give the camera's Stream while
        attached (None: leave HA's).
        """
        super().__init__(hass, keep_seconds=keep_seconds, log_name=log_name)
        self.part_target_seconds = part_target_seconds
        # The Stream whose settings we shortened, and its own (part target, advance part
        # limit, part timeout) to give back.
        self._part_settings: tuple[Stream, float, int, float] | None = None
        self._camera_entity_id = camera_entity_id
        self._stream: Stream | None = None
        self._output: HksvStreamOutput | None = None
        # Epochs: one per (attach, worker run). HA's stream ids restart at 0 with every
        # worker thread and a new Stream may reuse a freed one's id(), so neither identifies
        # a run across attaches; the counter only ever grows.
        self._attach_count = 0
        self._epochs: dict[int, int] = {}
        self._next_epoch = 0
        self._error_handler: tuple[logging.Logger, WorkerErrorHandler] | None = None
        # The camera entity's own availability callback, which ours calls first.
        self._update_hook: tuple[Stream, Callable[[], None] | None, Callable[[], None]] | None
        self._update_hook = None
        # The worker's last error since video last arrived (None while video flows).
        self.worker_error: str | None = None
        self.worker_errors = 0
        self._logged_error: str | None = None  # the text of the failure being reported
        self._run_parts = 0  # parts since the worker's current run started
        # LONG_PROBE_OPTIONS are on the camera's Stream now; what they replaced.
        self.long_probe = False
        self.long_probes = 0
        self._probe_replaced: dict[str, str | None] = {}
        # Called when worker_error changes (an error, or video flowing again).
        self.on_worker_health: Callable[[], None] | None = None
        self.parts_received = 0
        self.stream_restarts = 0  # new epochs: worker restarts and re-attaches
        self.reattachments = 0  # the watchdog found our provider gone and added it again

    # -- attaching -------------------------------------------------------------------------

    @property
    @override
    def attached(self) -> bool:
        """Return True while our provider is on a Stream."""
        return self._output is not None

    @override
    async def _async_attach(self) -> None:
        """Add our provider to the camera entity's current Stream and start it."""
        # Whatever was buffered came from a run that ended: a clip must not start with it.
        self._clear()
        self._attach_count += 1
        self._epochs.clear()
        self._assembler_failed = False
        self._run_parts = 0
        try:
            camera = get_camera_from_entity_id(self._hass, self._camera_entity_id)
            stream = await camera.async_create_stream()
        except HomeAssistantError as err:
            self._set_source_problem(f"camera stream unavailable: {err}")
            return
        except Exception as err:  # noqa: BLE001 - camera integrations raise anything here
            # TimeoutError, aiohttp's ClientError, vendor errors from stream_source(): the
            # watchdog retries as for any other unavailable stream.
            self._set_source_problem(
                f"camera stream unavailable: {type(err).__name__}: {err}"
                if str(err)
                else f"camera stream unavailable: {type(err).__name__}"
            )
            return
        if stream is None:
            self._set_source_problem("camera has no stream source")
            return
        output = stream.add_provider(PROVIDER_NAME)
        if not isinstance(output, HksvStreamOutput):
            _LOGGER.error("%s: stream provider %s is not ours", self._log_name, PROVIDER_NAME)
            return
        if self._hass.is_stopping:
            # Home Assistant began stopping while we looked the camera up: its stream
            # shutdown has run (or is running) and would not stop a worker we start now.
            await stream.remove_provider(output)
            return
        output.on_part = self._on_part
        output.on_removed = self._output_removed
        self._stream, self._output = stream, output
        self._shorten_parts(stream)
        self._watch_worker(stream)
        try:
            await stream.start()
        except Exception as err:  # noqa: BLE001 - retried by the watchdog, said why
            await self._async_detach()
            self._set_source_problem(f"camera stream could not start: {err!r}")
            return
        self._set_source_problem(None)
        _LOGGER.debug("%s: prebuffer attached to the camera stream", self._log_name)

    @override
    async def _async_detach(self) -> None:
        """Remove our provider (clears its idle timer; stops the worker if it was the last)."""
        stream, output = self._stream, self._output
        self._stream = self._output = None
        if self._error_handler is not None:
            logger, handler = self._error_handler
            logger.removeHandler(handler)
            self._error_handler = None
        if self._update_hook is not None:
            hooked, previous, ours = self._update_hook
            self._update_hook = None
            # Give the camera entity its callback back (unless someone replaced ours).
            if hooked._update_callback is ours:
                hooked._update_callback = previous
        if stream is not None:
            self._revert_long_probe(stream)
            self._restore_parts()
        if stream is not None and output is not None:
            output.on_part = None
            # HA's Stream.stop (its shutdown, a camera going away) drops outputs without
            # cleaning them up; then remove_provider would not find ours and its idle timer
            # would stay armed.
            output.cleanup()
            await stream.remove_provider(output)

    @override
    async def _async_reattach(self) -> None:
        """Attach again unless our provider is still on the camera entity's current Stream."""
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
            _LOGGER.info(
                "%s: %s; re-attaching the prebuffer",
                self._log_name,
                "camera stream changed"
                if camera.stream is not stream
                else "Home Assistant removed hksv's stream output",
            )
        # Leave the old Stream too: a reloaded camera entity does not stop its worker, and our
        # provider on it would keep its connection to the camera open.
        await self._async_detach()
        self.reattachments += 1
        await self._async_attach()

    # -- the part target ------------------------------------------------------------------

    def _shorten_parts(self, stream: Stream) -> None:
        """Give this camera's Stream the short part target, leaving every other one alone.

        HA copies its stream settings into each Stream; that copy is shared by reference with
        the Stream's worker (read as each segment starts and as each part is cut) and its HLS
        output (playlist, blocking-request limits), so a change applies to this camera only,
        from its next segment. HA's global ``stream:`` settings are not touched.
        """
        target = self.part_target_seconds
        settings = stream._stream_settings
        if (
            target is None
            or self._part_settings is not None
            or not settings.ll_hls  # the user turned LL-HLS off: parts are whole segments
            or settings.part_target_duration <= target
        ):
            return
        self._part_settings = (
            stream,
            settings.part_target_duration,
            settings.hls_advance_part_limit,
            settings.hls_part_timeout,
        )
        # As HA derives them from its part duration; the camera's extra part wait is kept.
        extra_wait = settings.hls_part_timeout - 2 * settings.part_target_duration
        settings.part_target_duration = target
        settings.hls_advance_part_limit = max(int(3 / target), 3)
        settings.hls_part_timeout = 2 * target + extra_wait

    def _restore_parts(self) -> None:
        """Give the Stream its own part settings back (detach, unload)."""
        if self._part_settings is None:
            return
        stream, part_target, advance_limit, part_timeout = self._part_settings
        self._part_settings = None
        settings = stream._stream_settings
        settings.part_target_duration = part_target
        settings.hls_advance_part_limit = advance_limit
        settings.hls_part_timeout = part_timeout

    # -- the worker's health ----------------------------------------------------------------

    def _watch_worker(self, stream: Stream) -> None:
        """Follow the worker's runs on the Stream itself, and its error text in its log.

        The Stream reports availability at every worker run: True as a run starts, False when
        one failed and the worker waits to retry. That does not depend on any log level;
        the camera entity's own callback (its availability) is kept and called first.
        """
        previous = stream._update_callback

        @callback
        def on_update() -> None:
            if previous is not None:
                previous()
            self._on_stream_update(stream)

        stream.set_update_callback(on_update)
        self._update_hook = (stream, previous, on_update)
        # HA labels the camera stream's logger with the camera entity id.
        logger = logging.getLogger(f"{Stream.__module__}.stream.{self._camera_entity_id}")
        handler = WorkerErrorHandler(self._hass.loop, self._on_worker_error_text)
        logger.addHandler(handler)
        self._error_handler = (logger, handler)

    @callback
    def _on_worker_error_text(self, error: str) -> None:
        """Keep the logged text of the failure the Stream reports next (same thread order)."""
        if self.running:
            self._logged_error = error

    @callback
    def _on_stream_update(self, stream: Stream) -> None:
        """A worker run started (available) or failed (not available; it retries later)."""
        if stream is not self._stream or not self.running:
            return
        if stream.available:
            self._run_parts = 0
            self._logged_error = None
            return
        error, self._logged_error = self._logged_error, None
        self.worker_error = error or HIDDEN_WORKER_ERROR
        self.worker_errors += 1
        if (
            self._run_parts == 0
            and not self.long_probe
            and (error is None or error.startswith(NO_PARAMETERS_ERROR))
        ):
            # No picture size before the first keyframe (or a silenced log, where the text
            # cannot tell): probe longer on the next retry, until the worker runs again.
            self._apply_long_probe(stream, error)
        if self.on_worker_health is not None:
            self.on_worker_health()

    def _apply_long_probe(self, stream: Stream, error: str | None) -> None:
        """Let the worker's next retry probe up to 20 s (its av.open takes the dict as is)."""
        self.long_probe = True
        self.long_probes += 1
        options = dict(stream.pyav_options)
        self._probe_replaced = {key: options.get(key) for key in LONG_PROBE_OPTIONS}
        options.update(LONG_PROBE_OPTIONS)
        # A new dict, not an update: the worker thread may be reading the current one.
        stream.pyav_options = options
        if error is not None:
            _LOGGER.warning(
                "%s: Home Assistant's stream worker could not start (%s): the camera's "
                "stream gave no picture size before its first keyframe; it now probes up to "
                "20 s on its next retry",
                self._log_name,
                error,
            )

    def _revert_long_probe(self, stream: Stream) -> None:
        """Give the Stream its own probe options back (the worker runs, or we leave)."""
        if not self.long_probe:
            return
        self.long_probe = False
        options = dict(stream.pyav_options)
        for key, value in self._probe_replaced.items():
            if value is None:
                options.pop(key, None)
            else:
                options[key] = value
        stream.pyav_options = options
        self._probe_replaced = {}

    # -- data -----------------------------------------------------------------------------

    @callback
    def _on_part(self, segment: Segment, data: bytes) -> None:
        """Turn one part into completed GOPs (event loop; parsing only, no copies of media)."""
        self.parts_received += 1
        self._run_parts += 1
        if self.long_probe and self._stream is not None:
            # The worker runs: its next reconnect need not wait for a 20 s probe.
            self._revert_long_probe(self._stream)
        if self.worker_error is not None:
            self.worker_error = None
            if self.on_worker_health is not None:
                self.on_worker_health()
        self._take_part(segment.init, data, self._epoch(segment))

    def _epoch(self, segment: Segment) -> int:
        """Return a counter that changes at every worker run and every attach."""
        epoch = self._epochs.get(segment.stream_id)
        if epoch is None:
            epoch = self._epochs[segment.stream_id] = self._next_epoch
            self._next_epoch += 1
            if epoch:
                self.stream_restarts += 1
        return epoch

    def diagnostics(self) -> dict[str, Any]:
        """Return counters and the worker's own diagnostics."""
        return {
            "running": self.running,
            "attached": self.attached,
            **self._buffer_diagnostics(),
            "parts_received": self.parts_received,
            "malformed_parts": self.malformed_parts,
            "stream_restarts": self.stream_restarts,
            "reattachments": self.reattachments,
            "failed_consumers": self.failed_consumers,
            "worker_error": self.worker_error,
            "worker_errors": self.worker_errors,
            "long_probe": self.long_probe,
            "long_probes": self.long_probes,
            "part_target_seconds": (
                self._part_settings[0]._stream_settings.part_target_duration
                if self._part_settings is not None
                else None
            ),
            "stream": self._stream.get_diagnostics() if self._stream is not None else None,
        }
