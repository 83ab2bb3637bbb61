"""The outgoing side of one HDS connection: pause at the high-water mark, drain, send progress.

A hub that keeps the connection open but stops reading is found at the socket: when the kernel
takes no byte of a non-empty send queue for SEND_STALL_TIMEOUT, every producer fails with
`HDSSendStalledError`, whether or not the queue reached the high-water mark.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final, Protocol

from .errors import HDSClosedError, HDSSendStalledError

_LOGGER = logging.getLogger(__name__)

# No byte of a non-empty send queue taken by the kernel for this long: the hub stopped
# reading, and sending fails (dataSend closes the stream with TIMEOUT) so that it does not
# hold the camera's only recording slot. Longer than a 4 s fragment and a few TCP
# retransmission backoffs, so a slow or briefly lossy hub that still reads is never cut off.
SEND_STALL_TIMEOUT: Final = 5.0
# How often a non-empty send queue is checked for progress.
SEND_STALL_CHECK_INTERVAL: Final = 0.5


class Sender(Protocol):
    """What the send flow reads from its connection."""

    peer: str
    bytes_sent: int

    @property
    def write_buffer_size(self) -> int:
        """Return the bytes queued in the transport."""

    @property
    def is_closed(self) -> bool:
        """Return True once the connection is closed."""


class SendFlow:
    """Backpressure and the send-progress watch of one connection."""

    __slots__ = (
        "_log_name",
        "_loop",
        "_send_stall",
        "_sender",
        "_sent_mark",
        "_sent_mark_time",
        "_stall_timer",
        "_waiters",
        "paused",
    )

    def __init__(self, sender: Sender, loop: asyncio.AbstractEventLoop, log_name: str) -> None:
        """Create the flow of a connection that has sent nothing yet."""
        self._sender = sender
        self._loop = loop
        self._log_name = log_name
        self._waiters: list[asyncio.Future[None]] = []
        # Send progress at the socket: bytes the kernel took, and when that last grew.
        self._stall_timer: asyncio.TimerHandle | None = None
        self._sent_mark = 0
        self._sent_mark_time = 0.0
        self._send_stall: HDSSendStalledError | None = None
        self.paused = False

    @property
    def watching(self) -> bool:
        """Return True while a non-empty send queue is being watched for progress."""
        return self._stall_timer is not None

    def pause(self) -> None:
        """Stop producers: the transport buffer reached the high-water mark."""
        self.paused = True

    def resume(self) -> None:
        """Wake producers waiting in wait()."""
        self.paused = False
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self) -> None:
        """Wait until the transport accepts more data; raise HDSSendStalledError on a stall."""
        if self._send_stall is not None:
            raise self._send_stall
        if not self.paused:
            return
        waiter = self._loop.create_future()
        self._waiters.append(waiter)
        await waiter

    def frame_sent(self) -> None:
        """Start watching once a sent frame left bytes queued."""
        if self._stall_timer is None and self._sender.write_buffer_size:
            self._watch_send_progress()

    def close(self, message: str) -> None:
        """Stop the watch and fail the waiting producers with HDSClosedError(message)."""
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(HDSClosedError(message))

    def _bytes_taken_by_kernel(self) -> int:
        """Return the bytes the socket accepted so far (sent minus still queued)."""
        return self._sender.bytes_sent - self._sender.write_buffer_size

    def _watch_send_progress(self) -> None:
        """Start checking a non-empty send queue for progress at the socket."""
        self._sent_mark = self._bytes_taken_by_kernel()
        self._sent_mark_time = self._loop.time()
        self._stall_timer = self._loop.call_at(
            self._sent_mark_time + SEND_STALL_CHECK_INTERVAL, self._check_send_progress
        )

    def _check_send_progress(self) -> None:
        """Note progress; fail sending once the kernel took nothing for SEND_STALL_TIMEOUT."""
        self._stall_timer = None
        if self._sender.is_closed:
            return
        now = self._loop.time()
        if (taken := self._bytes_taken_by_kernel()) != self._sent_mark:
            self._sent_mark = taken
            self._sent_mark_time = now
            self._send_stall = None
        elif self._send_stall is None and now - self._sent_mark_time >= SEND_STALL_TIMEOUT:
            self._on_send_stall()
        if self._sender.write_buffer_size:
            self._stall_timer = self._loop.call_at(
                now + SEND_STALL_CHECK_INTERVAL, self._check_send_progress
            )
        else:
            self._send_stall = None

    def _on_send_stall(self) -> None:
        """Fail the producers: the hub keeps the connection open but reads nothing."""
        stall = HDSSendStalledError(f"the hub read nothing for {SEND_STALL_TIMEOUT:g} s")
        self._send_stall = stall
        _LOGGER.info(
            "%s: HDS connection %s: %s with %d bytes queued",
            self._log_name,
            self._sender.peer,
            stall,
            self._sender.write_buffer_size,
        )
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(stall)
