"""The camera as live view sees it: Home Assistant's parts, parsed once, fanned out to viewers.

The feed rides on the recording prebuffer (one connection to the camera, shared with HLS and
recording). It holds the prebuffer running while anyone watches, even with recording off, and
lets it go ``linger`` seconds after the last viewer so a quick re-open starts at once. The
prebuffer parses each part once (source/part.py) for recording and live view alike; the feed
hands that parsed part to every session. A new session also gets the GOP in progress, so it can
start from its keyframe without waiting for the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import logging
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from ..source.gop import Gop
    from ..source.gop_buffer import ConsumerErrorListener, LiveView, PartListener
    from ..source.part import MediaPart

_LOGGER = logging.getLogger(__name__)

HOLDER: Final = "live_view"
# Keep the stream a while after the last viewer: the Home app re-opens streams often.
DEFAULT_LINGER_SECONDS: Final = 30.0


class PrebufferLike(Protocol):
    """What the feed needs from source.prebuffer.Prebuffer."""

    running: bool

    @property
    def stale(self) -> bool:
        """Return True if the camera has sent nothing for a while (it froze)."""

    def hold(self, holder: str) -> None:
        """Keep the stream running for ``holder``."""

    def release(self, holder: str) -> None:
        """Drop the hold."""

    async def async_start(self) -> None:
        """Attach to the camera stream."""

    async def async_stop(self) -> None:
        """Detach (only if nobody holds it)."""

    def open_live(
        self,
        on_gop: None = None,
        on_part: PartListener | None = None,
        on_error: ConsumerErrorListener | None = None,
    ) -> LiveView:
        """Snapshot the GOP in progress and follow parts (``on_error``: it raised, dropped)."""


class FeedListener(Protocol):
    """A live session, as the feed sees it."""

    def on_part(self, part: MediaPart) -> None:
        """Take a new part (event loop; must not block)."""


class LiveFeed:
    """Parse the camera's parts once and hand them to every watching session."""

    def __init__(
        self,
        prebuffer: PrebufferLike,
        *,
        recording_wants_stream: Callable[[], bool],
        linger_seconds: float = DEFAULT_LINGER_SECONDS,
        log_name: str,
    ) -> None:
        """Prepare; the prebuffer is held from the first viewer on."""
        self._prebuffer = prebuffer
        self._recording_wants_stream = recording_wants_stream
        self.linger_seconds = linger_seconds
        self._log_name = log_name
        self._listeners: list[FeedListener] = []
        self._unsubscribe: Callable[[], None] | None = None
        self._linger: asyncio.TimerHandle | None = None
        self._release_task: asyncio.Task[None] | None = None  # async_stop waits for it
        self.parts = 0
        # A listener that raised is dropped; its owner is told so it can end its session.
        self.on_listener_failed: Callable[[FeedListener, Exception], None] | None = None
        self.failed_listeners = 0

    @property
    def viewers(self) -> int:
        """Return how many sessions are fed."""
        return len(self._listeners)

    @property
    def stream_running(self) -> bool:
        """Return True while the camera stream runs (a new viewer needs no camera connect)."""
        return self._prebuffer.running

    @property
    def holding(self) -> bool:
        """Return True while the feed keeps the prebuffer running."""
        return self._unsubscribe is not None

    async def async_add(self, listener: FeedListener) -> Gop | None:
        """Feed ``listener`` from now on; return the GOP in progress (None if not known)."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        self._listeners.append(listener)
        if self._unsubscribe is None:
            self._prebuffer.hold(HOLDER)
            self._unsubscribe = self._prebuffer.open_live(
                on_part=self._on_part, on_error=self._on_feed_failed
            ).unsubscribe
        if not self._prebuffer.running:
            await self._prebuffer.async_start()
        if listener not in self._listeners:
            return None  # removed while the stream started
        return self.gop_in_progress()

    def gop_in_progress(self) -> Gop | None:
        """Return the GOP in progress of a running feed (None before the first keyframe).

        None too when the camera has frozen: a viewer then waits for its next keyframe
        instead of starting on an old picture.
        """
        if self._unsubscribe is None or self._prebuffer.stale:
            return None
        # Snapshot on the loop between two parts: every sample is in it or in a later part.
        view = self._prebuffer.open_live()
        view.unsubscribe()
        return view.pending

    def add_listener(self, listener: FeedListener) -> None:
        """Feed a shared consumer (a transcoder, an audio encoder) of a running feed."""
        if listener not in self._listeners:
            self._listeners.append(listener)

    def remove(self, listener: FeedListener) -> None:
        """Stop feeding ``listener``; the stream lingers after the last one."""
        if listener in self._listeners:
            self._listeners.remove(listener)
        if not self._listeners and self._unsubscribe is not None and self._linger is None:
            loop = asyncio.get_running_loop()
            self._linger = loop.call_later(self.linger_seconds, self._linger_expired)

    def _linger_expired(self) -> None:
        """Let the prebuffer go: nobody came back in time."""
        self._linger = None
        if not self._listeners and self._release_task is None:
            task = asyncio.get_running_loop().create_task(
                self.async_release(), name=f"{self._log_name} live release"
            )
            self._release_task = task
            task.add_done_callback(self._release_done)

    def _release_done(self, _task: asyncio.Task[None]) -> None:
        """Forget the finished release task."""
        self._release_task = None

    async def async_release(self) -> None:
        """Stop following parts and stop the stream unless recording needs it."""
        if self._linger is not None:
            self._linger.cancel()
            self._linger = None
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        self._prebuffer.release(HOLDER)
        if not self._listeners and not self._recording_wants_stream():
            _LOGGER.debug("%s: last viewer gone; stopping the camera stream", self._log_name)
            await self._prebuffer.async_stop()

    async def async_stop(self) -> None:
        """Forget every listener and release the stream (unload)."""
        self._listeners.clear()
        if self._release_task is not None:
            await asyncio.gather(self._release_task, return_exceptions=True)
        await self.async_release()

    def _on_part(self, part: MediaPart) -> None:
        """Hand one part (parsed once by the prebuffer) to every listener (event loop)."""
        self.parts += 1
        for listener in list(self._listeners):
            if listener not in self._listeners:
                continue  # dropped while this part was handed out
            try:
                listener.on_part(part)
            except Exception as err:
                _LOGGER.exception("%s: a live view consumer failed and was stopped", self._log_name)
                self._drop_failed(listener, err)

    def _on_feed_failed(self, err: Exception) -> None:
        """The prebuffer dropped this feed (it raised): every listener lost its media."""
        self._unsubscribe = None  # the next viewer subscribes again
        for listener in list(self._listeners):
            self._drop_failed(listener, err)

    def _drop_failed(self, listener: FeedListener, err: Exception) -> None:
        """Stop feeding a listener that cannot go on, and tell its owner."""
        self.failed_listeners += 1
        self.remove(listener)
        if self.on_listener_failed is not None:
            self.on_listener_failed(listener, err)
