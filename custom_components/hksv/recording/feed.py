"""Live media for one recording: a bounded queue, and a clock that notices a silent camera.

A hub that falls far behind must not grow memory (the queue drops everything it holds once
past its bound, and the reader ends the clip); a camera that stops sending must not leave the
hub waiting (the reader gives up once no media arrived for the clock's limit).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
import time

from ..hds import DataSendCloseReason, HDSProtocolError

_HUB_BEHIND = "the hub is not keeping up with live video (HomeKit Data Stream's send queue is full)"


class CameraStreamLost(Exception):
    """No media arrived from the camera for longer than the recording's stall limit."""


class MediaClock:
    """When the camera last sent media to one recording, and whether it was given up."""

    def __init__(self, limit: float) -> None:
        """Start counting from the open; ``limit`` seconds without media count as lost."""
        self.limit = limit
        self.last = time.monotonic()
        self.lost = False

    def touch(self) -> None:
        """Note that media arrived."""
        self.last = time.monotonic()

    def silent_for(self) -> float:
        """Return the seconds since media last arrived."""
        return time.monotonic() - self.last

    def remaining(self) -> float:
        """Return the seconds left before the camera counts as lost."""
        return self.limit - self.silent_for()


class LiveFeed[T]:
    """Live items for one recording; a hub that falls this far behind ends the clip."""

    def __init__(self, limit: int) -> None:
        """Create an empty feed holding at most ``limit`` unread items."""
        self._queue: asyncio.Queue[T] = asyncio.Queue()
        self._limit = limit
        self.overflowed = False
        self.enabled = True
        # Says who fell behind, asked the moment the feed overflows (where things wait then
        # is the evidence); without it, the only reader is the hub.
        self.describe_overflow: Callable[[], str] | None = None
        self.overflow_reason = _HUB_BEHIND
        # Called once at the overflow, for a reader that is not waiting on this feed.
        self.on_overflow: Callable[[], None] | None = None
        self.failure: str | None = None

    def fail(self, reason: str) -> None:
        """End the reader with ``reason``: the media's producer failed (media is lost)."""
        self.failure = reason
        self.enabled = False
        self._queue.shutdown(immediate=True)

    def put(self, item: T) -> None:
        """Queue an item (called on the loop by the prebuffer)."""
        if not self.enabled:
            return
        if self._queue.qsize() >= self._limit:
            # Stop holding media for a hub that is not reading: free it all at once and
            # leave one item to wake the reader, which then ends the clip.
            self.overflowed = True
            self.enabled = False
            if self.describe_overflow is not None:
                self.overflow_reason = self.describe_overflow()
            if self.on_overflow is not None:
                self.on_overflow()
            while not self._queue.empty():
                self._queue.get_nowait()
        self._queue.put_nowait(item)

    async def get(self) -> T:
        """Return the next item."""
        try:
            return await self._queue.get()
        except asyncio.QueueShutDown:
            raise self._failed() from None

    def _failed(self) -> HDSProtocolError:
        """Return the error that ends a clip whose media stopped coming (see ``fail``)."""
        return HDSProtocolError(DataSendCloseReason.UNEXPECTED_FAILURE, self.failure or "")

    async def items(self, media: MediaClock | None = None) -> AsyncIterator[T]:
        """Yield items as they come; raise CameraStreamLost once ``media`` stalls."""
        while True:
            item = await self.next(media)
            if item is not None:
                yield item

    async def next(
        self, media: MediaClock | None = None, *, quiet: float | None = None
    ) -> T | None:
        """Return the next item; raise CameraStreamLost once ``media`` stalls.

        With ``quiet``, return None instead once no media arrived for that many seconds (the
        camera may be going away: the caller can send what it holds while the hub waits).
        """
        while True:
            if media is None or not self._queue.empty():
                item = await self.get()
            else:
                remaining = media.remaining()
                if remaining <= 0:
                    media.lost = True
                    raise CameraStreamLost
                if quiet is not None:
                    until_quiet = quiet - media.silent_for()
                    if until_quiet <= 0:
                        return None
                    remaining = min(remaining, until_quiet)
                try:
                    async with asyncio.timeout(remaining):
                        item = await self.get()
                except TimeoutError:
                    continue  # media may have arrived meanwhile (a part, not a GOP)
            if self.overflowed:
                raise HDSProtocolError(DataSendCloseReason.UNEXPECTED_FAILURE, self.overflow_reason)
            return item
