"""Keeping the prebuffer attached to its camera while it runs: start, stop, close, retry.

How to attach is Home Assistant's stream business (``source/prebuffer.py``); when to, and
what happens while an attach fails, is here.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
import asyncio
from collections.abc import Callable
from datetime import datetime, timedelta
import logging
from typing import Final

from homeassistant.core import CALLBACK_TYPE, HomeAssistant
from homeassistant.helpers.event import async_call_later, async_track_time_interval

from .gop_buffer import GopBuffer

_LOGGER = logging.getLogger(__name__)

# How often to check that our output is still attached (the camera entity may have reloaded
# and made a new Stream, or the provider idled out while the camera was down).
WATCHDOG_INTERVAL_SECONDS: Final = 15


class AttachedGopBuffer(GopBuffer, ABC):
    """A ``GopBuffer`` attached to the camera while running; a watchdog retries and re-attaches."""

    def __init__(self, hass: HomeAssistant, *, keep_seconds: float, log_name: str) -> None:
        """Prepare; nothing runs until async_start."""
        super().__init__(keep_seconds=keep_seconds, log_name=log_name)
        self._hass = hass
        self._watchdog: CALLBACK_TYPE | None = None
        self._reattach_now: CALLBACK_TYPE | None = None  # after HA dropped our output
        # Start, stop and re-attach one at a time: a start during a stop's worker join would
        # add our provider to a Stream whose finishing worker then removes it again.
        self._lock = asyncio.Lock()
        self._closed = False
        self.running = False
        # Why the last attach failed (None once attached); the owner logs and shows it.
        self.source_problem: str | None = None
        self.on_source_change: Callable[[], None] | None = None

    @property
    @abstractmethod
    def attached(self) -> bool:
        """Return True while attached to the camera's stream."""

    @abstractmethod
    async def _async_attach(self) -> None:
        """Attach to the camera's stream (a failure: ``_set_source_problem``)."""

    @abstractmethod
    async def _async_detach(self) -> None:
        """Leave the camera's stream."""

    @abstractmethod
    async def _async_reattach(self) -> None:
        """Attach again unless still attached to the camera's current stream."""

    async def async_start(self) -> None:
        """Attach to the camera's stream and keep it running while we need it."""
        async with self._lock:
            if self.running or self._closed or self._hass.is_stopping:
                return
            self.running = True
            # Armed before the first attach: whatever that attach meets, the watchdog retries.
            self._watchdog = async_track_time_interval(
                self._hass,
                self._async_check_attached,
                timedelta(seconds=WATCHDOG_INTERVAL_SECONDS),
                cancel_on_shutdown=True,
            )
            await self._async_attach()

    async def async_stop(self) -> None:
        """Detach from the stream (stopping the worker if nobody else uses it)."""
        async with self._lock:
            if self._holders and not self._closed:
                return  # live view is watching; it stops the prebuffer after its last viewer
            self.running = False
            if self._watchdog is not None:
                self._watchdog()
                self._watchdog = None
            if self._reattach_now is not None:
                self._reattach_now()
                self._reattach_now = None
            await self._async_detach()
            self._clear()

    async def async_close(self) -> None:
        """Stop for good (unload, Home Assistant stopping): nothing restarts the stream."""
        self._closed = True  # holds no longer count: the stream stops whoever watches
        await self.async_stop()

    def _set_source_problem(self, problem: str | None) -> None:
        """Remember whether the camera's stream could be attached; tell the owner on change."""
        if problem is not None:
            _LOGGER.debug("%s: %s", self._log_name, problem)
        if problem != self.source_problem:
            self.source_problem = problem
            if self.on_source_change is not None:
                self.on_source_change()

    async def async_attach_now(self) -> None:
        """Attach at once when running but not attached, without waiting for the watchdog.

        For a camera entity that appears after hksv started (its integration loaded later,
        as after a restart) and for a hub's open that finds no stream attached.
        """
        async with self._lock:
            if (
                self.running
                and not self.attached
                and not self._closed
                and not self._hass.is_stopping
            ):
                await self._async_reattach()

    def _output_removed(self) -> None:
        """Home Assistant dropped our output (no media for its idle timeout): attach again now.

        A camera outage that outlasts HA's reconnect backoff and its 30 s output idle timeout
        ends so, often just as the camera is back (the worker, if ours was its last output,
        stops with it): waiting for the watchdog would leave the camera unused up to 15 s more.
        """
        if self.running and not self._closed and not self._hass.is_stopping:
            if self._reattach_now is not None:
                self._reattach_now()
            self._reattach_now = async_call_later(self._hass, 0, self._async_reattach_now)

    async def _async_reattach_now(self, now: datetime) -> None:
        self._reattach_now = None
        await self._async_check_attached(now)

    async def _async_check_attached(self, _now: datetime) -> None:
        """Re-attach after a camera reload or an idled-out provider."""
        async with self._lock:
            if self.running and not self._hass.is_stopping:
                await self._async_reattach()
