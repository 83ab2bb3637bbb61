"""The one PyAV worker (media/pyav_worker.py): order, bounds, errors, and one stop path.

Real threads throughout, and real PyAV where a job does codec work. Waits that could hang use
a generous safety timeout (the machine is shared); nothing asserts how long anything took.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from fractions import Fraction
import threading

import av
from hypothesis import given, settings, strategies as st
import pytest

from custom_components.hksv.media import pyav_worker
from custom_components.hksv.media.pyav_worker import PyAVWorker, WorkerStopped
from tests.media import ClipSpec, make_video_frame

SAFETY = 60  # seconds: only to turn a hang into a failure


def worker_threads(name: str) -> list[threading.Thread]:
    """Return the live threads called ``name``."""
    return [t for t in threading.enumerate() if t.name == name and t.is_alive()]


def blocker() -> tuple[threading.Event, threading.Event, Callable[[], None]]:
    """Return (entered, release, job): the job signals ``entered`` and waits for ``release``."""
    entered, release = threading.Event(), threading.Event()

    def job() -> None:
        entered.set()
        assert release.wait(SAFETY)

    return entered, release, job


async def yield_to_loop(times: int = 20) -> None:
    """Let the loop run callbacks the worker posted (no time limit is involved)."""
    for _ in range(times):
        await asyncio.sleep(0)


async def test_jobs_run_in_order_on_the_named_thread_and_stop_joins_it() -> None:
    """Jobs run one after the other on one named daemon thread; async_stop leaves none."""
    ran: list[tuple[int, str]] = []
    worker: PyAVWorker[None] = PyAVWorker("hksv_test_order", max_jobs=8)
    worker.start()
    for index in range(5):
        assert await worker.put(lambda i=index: ran.append((i, threading.current_thread().name)))
    assert await worker.call(lambda: "done") == "done"  # runs after the five before it
    assert ran == [(i, "hksv_test_order") for i in range(5)]
    assert worker.running and worker_threads("hksv_test_order")[0].daemon
    await worker.async_stop()
    await worker.async_stop()  # a second stop is harmless
    assert not worker.running and worker.ended
    assert worker_threads("hksv_test_order") == []
    assert not await worker.put(lambda: None)
    assert not worker.offer(lambda: None)


async def test_real_pyav_work_runs_off_the_loop() -> None:
    """A call opens and runs a real encoder on the worker thread and returns its result."""
    loop_thread = threading.current_thread()
    spec = ClipSpec(width=320, height=240, fps=30)

    def encode() -> tuple[int, bool]:
        encoder = av.CodecContext.create("libx264", "w")
        encoder.width, encoder.height, encoder.pix_fmt = 320, 240, "yuv420p"
        encoder.time_base = Fraction(1, spec.fps)
        encoder.options = {"preset": "ultrafast", "tune": "zerolatency"}
        packets = []
        for index in range(10):
            frame = make_video_frame(spec, index)
            frame.pts = index
            packets += encoder.encode(frame)
        packets += encoder.encode(None)
        return len(packets), threading.current_thread() is not loop_thread

    worker: PyAVWorker[None] = PyAVWorker("hksv_test_pyav", max_jobs=1)
    worker.start()
    try:
        assert await worker.call(encode) == (10, True)
    finally:
        await worker.async_stop()


def test_offer_drops_when_full_and_waits_only_when_asked() -> None:
    """offer() refuses a job when the queue is full; with a timeout it waits for room."""
    entered, release, job = blocker()
    ran: list[int] = []
    worker: PyAVWorker[None] = PyAVWorker("hksv_test_offer", max_jobs=2)
    worker.start()  # no event loop: a worker driven from threads
    try:
        assert worker.offer(job)
        assert entered.wait(SAFETY)
        assert worker.offer(lambda: ran.append(1))
        assert worker.offer(lambda: ran.append(2))
        assert not worker.offer(lambda: ran.append(3)), "a full queue drops"
        assert worker.queued_jobs == 2
        threading.Timer(0.2, release.set).start()
        assert worker.offer(lambda: ran.append(4), timeout=SAFETY), "waits for room"
        done = threading.Event()
        worker.end_input(done.set)
        assert done.wait(SAFETY)
    finally:
        release.set()
        worker.join()
    assert ran == [1, 2, 4]
    assert worker_threads("hksv_test_offer") == []


@settings(max_examples=25, deadline=None)
@given(max_jobs=st.integers(1, 6), offers=st.integers(0, 12))
def test_bound_holds_for_any_queue_size(max_jobs: int, offers: int) -> None:
    """Behind a busy job exactly ``max_jobs`` offers are taken, and they run in order."""
    entered, release, job = blocker()
    ran: list[int] = []
    worker: PyAVWorker[None] = PyAVWorker("hksv_test_bound", max_jobs=max_jobs)
    worker.start()
    try:
        assert worker.offer(job)
        assert entered.wait(SAFETY)
        accepted = [i for i in range(offers) if worker.offer(lambda i=i: ran.append(i))]
        release.set()
        done = threading.Event()
        worker.end_input(done.set)  # past the bound: an end is never dropped
        assert done.wait(SAFETY)
    finally:
        release.set()
        worker.join()
    assert accepted == list(range(min(offers, max_jobs)))
    assert ran == accepted


async def test_put_waits_for_room_on_the_loop() -> None:
    """put() does not return while the queue is full; it does once the worker takes a job."""
    entered, release, job = blocker()
    worker: PyAVWorker[None] = PyAVWorker("hksv_test_put", max_jobs=1)
    worker.start()
    try:
        assert await worker.put(job)
        await asyncio.to_thread(entered.wait, SAFETY)
        assert await worker.put(lambda: None)  # fills the queue
        waiting = asyncio.ensure_future(worker.put(lambda: None))
        await yield_to_loop()
        assert not waiting.done(), "put must wait while the queue is full"
        release.set()
        async with asyncio.timeout(SAFETY):
            assert await waiting
    finally:
        release.set()
        await worker.async_stop()


async def test_results_are_bounded_and_end_with_none() -> None:
    """emit() blocks the worker, never the loop, while max_results wait unread."""
    worker: PyAVWorker[int] = PyAVWorker("hksv_test_results", max_jobs=4, max_results=2)
    worker.start()
    emitted: list[int] = []

    def produce() -> None:
        for value in range(5):
            worker.emit(value)
            emitted.append(value)

    try:
        assert await worker.put(produce)
        worker.end_input()
        async with asyncio.timeout(SAFETY):
            while not worker.waiting_for_reader:
                await asyncio.sleep(0.01)
        assert emitted == [0, 1] and worker.queued_results == 2
        results = []
        async with asyncio.timeout(SAFETY):
            while (result := await worker.get_result()) is not None:
                results.append(result)
        assert results == [0, 1, 2, 3, 4]
        assert await worker.get_result() is None  # and stays None
    finally:
        await worker.async_stop()
    assert worker.error is None


async def test_a_failing_job_ends_the_worker_and_reaches_the_owner() -> None:
    """A job's exception ends the worker: kept in ``error``, passed to on_exit on its thread."""
    exits: list[tuple[Exception | None, str]] = []
    worker: PyAVWorker[bytes] = PyAVWorker(
        "hksv_test_error",
        max_jobs=4,
        max_results=1,
        on_exit=lambda err: exits.append((err, threading.current_thread().name)),
    )
    worker.start()
    ran: list[str] = []

    def fail() -> None:
        raise av.error.InvalidDataError(22, "broken input")

    assert await worker.put(fail)
    await worker.put(lambda: ran.append("after"))  # may be refused once the worker ended
    async with asyncio.timeout(SAFETY):
        assert await worker.get_result() is None  # readers are not left waiting
    await worker.async_stop()
    assert isinstance(worker.error, av.error.InvalidDataError)
    assert len(exits) == 1 and exits[0] == (worker.error, "hksv_test_error")
    assert ran == [], "nothing runs after the failure"
    assert worker_threads("hksv_test_error") == []


async def test_a_failing_call_raises_to_its_caller_and_the_worker_goes_on() -> None:
    """A call's exception is raised where it was awaited; later calls still run."""
    worker: PyAVWorker[None] = PyAVWorker("hksv_test_call_error", max_jobs=2)
    worker.start()
    try:

        def fail() -> None:
            raise ValueError("bad sample")

        with pytest.raises(ValueError, match="bad sample"):
            await worker.call(fail)
        assert await worker.call(lambda: 7) == 7
        assert worker.error is None
    finally:
        await worker.async_stop()


async def test_stop_while_busy_drops_the_queue_and_joins() -> None:
    """stop() during a job: queued jobs never run, queued calls fail, the thread ends."""
    entered, release, job = blocker()
    ran: list[str] = []
    worker: PyAVWorker[None] = PyAVWorker("hksv_test_busy", max_jobs=4)
    worker.start()
    assert await worker.put(job)
    await asyncio.to_thread(entered.wait, SAFETY)
    assert await worker.put(lambda: ran.append("queued"))
    pending_call = asyncio.ensure_future(worker.call(lambda: ran.append("call")))
    await yield_to_loop()
    worker.stop()
    with pytest.raises(WorkerStopped):
        await pending_call
    stopping = asyncio.ensure_future(worker.async_stop())
    await yield_to_loop()
    assert not stopping.done(), "async_stop waits for the job in progress"
    release.set()
    async with asyncio.timeout(SAFETY):
        await stopping
    assert ran == []
    assert worker_threads("hksv_test_busy") == [] and worker.error is None


async def test_a_job_stuck_for_good_does_not_hold_up_async_stop(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A job that never returns (a native call stuck in PyAV): async_stop gives up, says so."""
    monkeypatch.setattr(pyav_worker, "STOP_TIMEOUT_SECONDS", 0.2)
    entered, release, job = blocker()
    worker: PyAVWorker[None] = PyAVWorker("hksv_test_stuck", max_jobs=1)
    worker.start()
    assert await worker.put(job)
    await asyncio.to_thread(entered.wait, SAFETY)
    async with asyncio.timeout(SAFETY):
        await worker.async_stop()
    assert "hksv_test_stuck did not stop within" in caplog.text
    assert worker_threads("hksv_test_stuck"), "the stuck thread is left behind, not joined"
    release.set()  # the job returns after all: the thread ends on its own
    async with asyncio.timeout(SAFETY):
        while worker_threads("hksv_test_stuck"):
            await asyncio.sleep(0.05)


async def test_stop_wakes_a_worker_waiting_for_its_reader() -> None:
    """A worker blocked in emit() (nobody reads) ends at stop: emit raises WorkerStopped."""
    raised: list[BaseException] = []
    worker: PyAVWorker[int] = PyAVWorker("hksv_test_reader", max_jobs=1, max_results=1)
    worker.start()

    def produce() -> None:
        try:
            for value in range(3):
                worker.emit(value)
        except WorkerStopped as err:
            raised.append(err)
            raise

    assert await worker.put(produce)
    async with asyncio.timeout(SAFETY):
        while not worker.waiting_for_reader:
            await asyncio.sleep(0.01)
        await worker.async_stop()
    assert len(raised) == 1 and worker.error is None
    assert worker_threads("hksv_test_reader") == []


async def test_put_waiting_for_room_is_released_by_stop() -> None:
    """A coroutine waiting in put() gets False when the worker stops, instead of hanging."""
    entered, release, job = blocker()
    worker: PyAVWorker[None] = PyAVWorker("hksv_test_put_stop", max_jobs=1)
    worker.start()
    assert await worker.put(job)
    await asyncio.to_thread(entered.wait, SAFETY)
    assert await worker.put(lambda: None)
    waiting = asyncio.ensure_future(worker.put(lambda: None))
    await yield_to_loop()
    worker.stop()
    async with asyncio.timeout(SAFETY):
        assert await waiting is False
    release.set()
    await worker.async_stop()


def test_bounds_are_checked() -> None:
    """A queue that can hold nothing is refused at once."""
    with pytest.raises(ValueError, match="at least 1"):
        PyAVWorker("hksv_test_bounds", max_jobs=0)


async def test_async_stop_never_joins_on_the_event_loop() -> None:
    """A thread still unwinding after its last act is waited for without blocking the loop.

    What the thread lets go of last (here: a job it dropped as it ended) is freed as it
    unwinds; freeing codecs joins their threads, which can take long.
    """
    go, release = threading.Event(), threading.Event()

    class SlowToFree:
        def __del__(self) -> None:
            release.wait(SAFETY)

    def ending_job() -> None:
        assert go.wait(SAFETY)
        raise WorkerStopped  # as check_stop does: the worker ends, dropping the next job

    held = SlowToFree()
    worker: PyAVWorker[None] = PyAVWorker("hksv_test_unwind", max_jobs=2)
    worker.start()
    assert await worker.put(ending_job)
    assert await worker.put(lambda held=held: held)  # dropped at the end, freed last
    del held
    go.set()
    async with asyncio.timeout(SAFETY):
        while not worker.ended:
            await asyncio.sleep(0.01)
    stopping = asyncio.ensure_future(worker.async_stop())
    await yield_to_loop()  # the loop turns (a blocking join would hold it until release)
    assert not stopping.done(), "async_stop waits until the thread is gone"
    assert worker_threads("hksv_test_unwind"), "the thread is still freeing what it held"
    release.set()
    async with asyncio.timeout(SAFETY):
        await stopping
    assert worker_threads("hksv_test_unwind") == []
