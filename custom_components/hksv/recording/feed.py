"""Live media for one recording: a bounded queue, and a clock that notices a silent camera.

A hub that falls far behind must not grow memory (the queue drops everything it holds once
past its bound, and the reader ends the clip); a camera that stops sending must not leave the
hub waiting (the reader gives up once no media arrived for the clock's limit).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
import time

from ..hds import DataSendCloseReason, HDSProtocolError


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

    def remaining(self) -> float:
        """Return the seconds left before the camera counts as lost."""
        return self.limit - (time.monotonic() - self.last)


class LiveFeed[T]:
    """Live items for one recording; a hub that falls this far behind ends the clip."""

    def __init__(self, limit: int) -> None:
        """Create an empty feed holding at most ``limit`` unread items."""
        self._queue: asyncio.Queue[T] = asyncio.Queue()
        self._limit = limit
        self.overflowed = False
        self.enabled = True
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
            if media is None or not self._queue.empty():
                item = await self.get()
            else:
                remaining = media.remaining()
                if remaining <= 0:
                    media.lost = True
                    raise CameraStreamLost
                try:
                    async with asyncio.timeout(remaining):
                        item = await self.get()
                except TimeoutError:
                    continue  # media may have arrived meanwhile (a part, not a GOP)
            if self.overflowed:
                raise HDSProtocolError(
                    DataSendCloseReason.UNEXPECTED_FAILURE,
                    "the hub is not keeping up with live video",
                )
            yield item
