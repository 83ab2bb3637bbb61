"""One thread for PyAV work, in order, behind bounded queues: recording's and live view's codecs.

PyAV calls block (decode, encode, open) and its objects are not thread-safe, so each codec
session owns one `PyAVWorker`: a named daemon thread that runs the session's jobs one after
the other. Everything the owner's jobs create lives and dies on that thread.

- Jobs wait in a bounded queue. The owner picks what a full queue means: ``offer`` drops (or
  waits, off the event loop only), ``put`` waits on the event loop, ``call`` waits and returns
  the job's result to the awaiting coroutine.
- A job hands results to the event loop with ``emit``; at most ``max_results`` wait unread
  and ``emit`` blocks the worker (never the loop) until ``get_result`` takes one.
- One stop path: ``stop`` (any thread, never blocks) drops queued jobs and wakes the worker,
  which ends after its current job (jobs may call ``check_stop`` between frames); ``join`` or
  ``async_stop`` wait for the thread to be gone (``async_stop`` at most STOP_TIMEOUT_SECONDS:
  a native call stuck for good leaves its daemon thread behind with a warning, never a hang).
- Errors reach the owner: a ``call``'s exception is raised to its caller; any other job's
  exception ends the worker and is kept in ``error`` and passed to ``on_exit``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
import contextlib
import logging
import threading
import time
from typing import Final

type Job = Callable[[], object]

_LOGGER = logging.getLogger(__name__)

_NO_RESULTS: Final = 0
# How long async_stop waits for the thread's last act (a job's work at most, normally).
STOP_TIMEOUT_SECONDS: Final = 10
_EXIT_POLL_SECONDS: Final = 0.005


class WorkerStopped(Exception):
    """The worker was stopped (or has ended): the job did not run or did not finish."""


class _Call[T]:
    """A job whose result or exception goes back to an awaiting coroutine."""

    __slots__ = ("_fn", "_future", "_loop")

    def __init__(
        self, fn: Callable[[], T], future: asyncio.Future[T], loop: asyncio.AbstractEventLoop
    ) -> None:
        """Run ``fn`` later; settle ``future`` on ``loop``."""
        self._fn = fn
        self._future = future
        self._loop = loop

    def __call__(self) -> None:
        """Run on the worker thread; the outcome goes to the caller, never ends the worker."""
        try:
            result = self._fn()
        except Exception as err:  # noqa: BLE001 - handed to the caller, who decides
            self._post(self._fail, err)
        else:
            self._post(self._succeed, result)

    def drop(self) -> None:
        """Tell the caller the job will never run."""
        self._post(self._fail, WorkerStopped("the worker stopped before this job"))

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody is waiting any more
            self._loop.call_soon_threadsafe(callback, *args)

    def _succeed(self, result: T) -> None:
        if not self._future.done():  # the caller may have been cancelled
            self._future.set_result(result)

    def _fail(self, error: BaseException) -> None:
        if not self._future.done():
            self._future.set_exception(error)


class PyAVWorker[R]:
    """A named daemon thread running jobs from a bounded queue; ``R`` results go to the loop."""

    __slots__ = (
        "_cond",
        "_error",
        "_exit_future",
        "_exited",
        "_input_ended",
        "_jobs",
        "_loop",
        "_max_jobs",
        "_max_results",
        "_name",
        "_on_exit",
        "_results",
        "_results_ended",
        "_room_waiters",
        "_stopping",
        "_thread",
        "_unread",
        "_waiting_for_reader",
        "waited_seconds",
    )

    def __init__(
        self,
        name: str,
        *,
        max_jobs: int,
        max_results: int = _NO_RESULTS,
        on_exit: Callable[[Exception | None], None] | None = None,
    ) -> None:
        """Prepare the worker; nothing runs until ``start``.

        ``max_results`` bounds the results ``emit`` may leave unread (0: no results expected,
        ``emit`` refuses). ``on_exit`` runs on the worker thread as its last act, with the
        error that ended it (None for an end or a stop): the place to close PyAV objects.
        """
        if max_jobs < 1 or max_results < 0:
            raise ValueError("queue bounds must be at least 1 (max_results: 0 for none)")
        self._name = name
        self._max_jobs = max_jobs
        self._max_results = max_results
        self._on_exit = on_exit
        self._cond = threading.Condition()
        self._jobs: deque[Job] = deque()
        self._stopping = False
        self._input_ended = False
        self._exited = threading.Event()
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._exit_future: asyncio.Future[None] | None = None
        self._results: asyncio.Queue[R | None] | None = None
        self._results_ended = False
        self._unread = 0
        self._room_waiters: list[asyncio.Future[None]] = []
        self._waiting_for_reader = False
        self.waited_seconds = 0.0  # spent in ``emit`` waiting for the reader

    @property
    def name(self) -> str:
        """Return the thread's name."""
        return self._name

    @property
    def running(self) -> bool:
        """Return whether the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def stopping(self) -> bool:
        """Return whether ``stop`` was called."""
        return self._stopping

    @property
    def ended(self) -> bool:
        """Return whether the thread has done its last act (its jobs can no longer run)."""
        return self._exited.is_set()

    @property
    def error(self) -> Exception | None:
        """Return the exception that ended the worker, if one did."""
        return self._error

    @property
    def queued_jobs(self) -> int:
        """Return how many jobs wait for the thread."""
        return len(self._jobs)

    @property
    def queued_results(self) -> int:
        """Return how many results wait for ``get_result``."""
        return self._unread

    @property
    def waiting_for_reader(self) -> bool:
        """Return whether the worker is blocked until ``get_result`` takes a result."""
        return self._waiting_for_reader

    def start(self) -> None:
        """Start the thread (from the event loop, for ``put``, ``call`` and results)."""
        if self._thread is not None or self._stopping:
            raise RuntimeError(f"{self._name}: already started or stopped")
        try:
            self._loop = asyncio.get_running_loop()
            self._results = asyncio.Queue()
            self._exit_future = self._loop.create_future()
        except RuntimeError:
            self._loop = None  # a worker driven from threads only: offer, join
        self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread.start()

    # -- queueing jobs ---------------------------------------------------------------------

    def offer(self, job: Job, timeout: float = 0.0) -> bool:
        """Queue ``job`` if there is room (within ``timeout`` s: never > 0 on the loop).

        Return False when it was not queued: the queue stayed full, or the worker is stopping,
        has ended, or its input has ended.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                if self._refuses_input():
                    return False
                if len(self._jobs) < self._max_jobs:
                    self._jobs.append(job)
                    self._cond.notify_all()
                    return True
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._cond.wait(remaining)

    async def put(self, job: Job) -> bool:
        """Queue ``job``, waiting on the event loop while the queue is full.

        Return False when the worker is stopping, has ended or its input has ended.
        """
        loop = self._require_loop()
        while True:
            with self._cond:
                if self._refuses_input():
                    return False
                if len(self._jobs) < self._max_jobs:
                    self._jobs.append(job)
                    self._cond.notify_all()
                    return True
                waiter = loop.create_future()
                self._room_waiters.append(waiter)
            await waiter

    async def call[T](self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the thread (after the jobs queued before it) and return its result."""
        loop = self._require_loop()
        future: asyncio.Future[T] = loop.create_future()
        if not await self.put(_Call(fn, future, loop)):
            raise WorkerStopped(f"{self._name} has stopped")
        return await future

    def end_input(self, last: Job | None = None) -> None:
        """Queue ``last`` past the bound (an end must neither wait nor be dropped) and take
        no more jobs; the worker ends once the queued ones have run."""
        with self._cond:
            if self._refuses_input():
                return
            if last is not None:
                self._jobs.append(last)
            self._input_ended = True
            self._cond.notify_all()

    def _refuses_input(self) -> bool:
        """Return whether a new job would never run (call with the lock held)."""
        return self._stopping or self._input_ended or self._exited.is_set()

    # -- results ---------------------------------------------------------------------------

    def emit(self, result: R) -> None:
        """Hand ``result`` to the loop (worker thread only), waiting while too many are unread.

        Raise WorkerStopped when the worker is stopped meanwhile.
        """
        if self._max_results == _NO_RESULTS or self._loop is None:
            raise RuntimeError(f"{self._name}: started without a result queue")
        started = time.perf_counter()
        with self._cond:
            if self._unread >= self._max_results and not self._stopping:
                self._waiting_for_reader = True  # the reader is behind
                while self._unread >= self._max_results and not self._stopping:
                    self._cond.wait()
                self._waiting_for_reader = False
            if self._stopping:
                raise WorkerStopped
            self._unread += 1
        self.waited_seconds += time.perf_counter() - started
        assert self._results is not None
        self._post(self._results.put_nowait, result)

    async def get_result(self) -> R | None:
        """Return the next result; None once the worker has ended and every result is read."""
        if self._results is None:
            raise RuntimeError(f"{self._name}: not started from the event loop")
        if self._results_ended:
            return None
        result = await self._results.get()
        if result is None:  # the worker's end marker
            self._results_ended = True
            return None
        with self._cond:
            self._unread -= 1
            self._cond.notify_all()
        return result

    # -- stopping --------------------------------------------------------------------------

    def check_stop(self) -> None:
        """Raise WorkerStopped if ``stop`` was called (for jobs, between frames)."""
        if self._stopping:
            raise WorkerStopped

    def stop(self) -> None:
        """Drop queued jobs and tell the worker to end after its current job (never blocks)."""
        with self._cond:
            if self._stopping:
                return
            self._stopping = True
            dropped = list(self._jobs)
            self._jobs.clear()
            self._cond.notify_all()
        for job in dropped:
            if isinstance(job, _Call):
                job.drop()
        if self._loop is not None:
            self._post(self._wake_room_waiters)

    def join(self) -> None:
        """Stop and wait for the thread to end (blocking: not on the event loop)."""
        self.stop()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()

    async def async_stop(self) -> None:
        """Stop and wait for the thread to end without blocking the event loop."""
        self.stop()
        thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        try:
            async with asyncio.timeout(STOP_TIMEOUT_SECONDS):
                if self._exit_future is not None and self._loop is asyncio.get_running_loop():
                    # Set by the thread's last act; no executor needed (gone at HA's stop).
                    await asyncio.shield(self._exit_future)
                elif not self._exited.is_set():
                    await asyncio.to_thread(self._exited.wait)
                # After its last act the thread still unwinds (its frames, anything a job
                # left it holding): wait for that too, without ever joining on the loop.
                while thread.is_alive():  # noqa: ASYNC110 - a thread's end posts nothing
                    await asyncio.sleep(_EXIT_POLL_SECONDS)
        except TimeoutError:
            # A native call that never returns must not hold up a recording's end or Home
            # Assistant's stop: the daemon thread is left behind, said once, loudly.
            _LOGGER.warning(
                "%s did not stop within %d s (stuck in PyAV); leaving its thread",
                thread.name,
                STOP_TIMEOUT_SECONDS,
            )
            return
        thread.join()  # not alive any more: returns at once, and reaps the thread

    # -- worker thread ---------------------------------------------------------------------

    def _run(self) -> None:
        """Run jobs until the input ends, a stop, or an error."""
        error: Exception | None = None
        try:
            while (job := self._take()) is not None:
                job()
        except WorkerStopped:
            pass
        except Exception as err:  # noqa: BLE001 - kept for the owner, who reports it
            error = self._error = err
        finally:
            with self._cond:
                dropped = list(self._jobs)
                self._jobs.clear()
            for job in dropped:
                if isinstance(job, _Call):
                    job.drop()
            try:
                if self._on_exit is not None:
                    self._on_exit(error)
            finally:
                self._exited.set()
                if self._loop is not None:
                    self._post(self._on_exit_loop)

    def _take(self) -> Job | None:
        """Return the next job, waiting for one; None when the worker should end."""
        with self._cond:
            while not self._jobs and not self._stopping and not self._input_ended:
                self._cond.wait()
            if self._stopping or not self._jobs:
                return None
            job = self._jobs.popleft()
            self._cond.notify_all()  # room for a thread waiting in ``offer``
            waiters = bool(self._room_waiters)
        if waiters:
            self._post(self._wake_room_waiters)
        return job

    def _post(self, callback: Callable[..., object], *args: object) -> None:
        """Run ``callback`` on the event loop."""
        assert self._loop is not None
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:  # the loop is closed: nobody is left to read or wait
            with self._cond:
                self._stopping = True
                self._cond.notify_all()

    # -- event loop ------------------------------------------------------------------------

    def _require_loop(self) -> asyncio.AbstractEventLoop:
        """Return the loop the worker was started on."""
        if self._loop is None:
            raise RuntimeError(f"{self._name}: not started from the event loop")
        return self._loop

    def _wake_room_waiters(self) -> None:
        """Let every coroutine waiting in ``put`` look for room again."""
        with self._cond:
            waiters, self._room_waiters = self._room_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _on_exit_loop(self) -> None:
        """Mark the end of the results and release everyone still waiting."""
        assert self._results is not None
        self._results.put_nowait(None)
        self._wake_room_waiters()
        if self._exit_future is not None and not self._exit_future.done():
            self._exit_future.set_result(None)
