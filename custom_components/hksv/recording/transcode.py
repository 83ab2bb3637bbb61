"""Re-encode an fMP4 camera stream to the selected HKSV recording configuration with PyAV.

This is the fallback for sources that do not fit what the hub selected; copying is the normal
path. All PyAV work of a session (pipeline.py) runs on its own `PyAVWorker` thread
(media/pyav_worker.py), and the event loop only hands bytes over through its bounded queues
(docs/STYLE.md, Layer 3 point 7).
"""

from __future__ import annotations

from collections.abc import Callable
import logging
import time
from typing import Final

import av

from ..media.encoders import EncoderChooser, shared_chooser
from ..media.pyav_worker import PyAVWorker
from .encoding import (
    Counters,
    TranscodeError,
    TranscodeStats,
    TranscodeTarget,
)
from .pipeline import TranscodePipeline

_LOGGER = logging.getLogger(__name__)

DEFAULT_MAX_QUEUED_INPUT: Final = 32
DEFAULT_MAX_QUEUED_OUTPUT: Final = 8


class Transcoder:
    """Re-encode an fMP4 stream to the target on one worker thread; the loop only queues bytes."""

    __slots__ = (
        "_closed",
        "_counters",
        "_encoders",
        "_input_ended",
        "_log_name",
        "_max_queued_input",
        "_max_queued_output",
        "_pipeline",
        "_target",
        "_worker",
    )

    def __init__(
        self,
        target: TranscodeTarget,
        *,
        log_name: str,
        max_queued_input: int | None = None,
        max_queued_output: int | None = None,
        encoders: EncoderChooser | None = None,
    ) -> None:
        """Prepare a session; nothing runs until ``start``.

        ``encoders`` chooses the H.264 encoder (default: the process's shared chooser).
        """
        if max_queued_input is None:
            max_queued_input = DEFAULT_MAX_QUEUED_INPUT
        if max_queued_output is None:
            max_queued_output = DEFAULT_MAX_QUEUED_OUTPUT
        if max_queued_input < 1 or max_queued_output < 1:
            raise ValueError("queue bounds must be at least 1")
        self._target = target
        self._log_name = log_name
        self._counters = Counters()
        self._max_queued_input = max_queued_input
        self._max_queued_output = max_queued_output
        self._worker: PyAVWorker[bytes] | None = None
        self._pipeline: TranscodePipeline | None = None  # worker thread only
        self._input_ended = False
        self._closed = False
        self._encoders = encoders or shared_chooser()

    @property
    def stats(self) -> TranscodeStats:
        """Return a snapshot of the session's counters."""
        return self._counters.snapshot()

    @property
    def input_backlog(self) -> int:
        """Return how many input items wait for the worker."""
        return self._worker.queued_jobs if self._worker is not None else 0

    @property
    def output_backlog(self) -> int:
        """Return how many output items wait for ``read``."""
        return self._worker.queued_results if self._worker is not None else 0

    @property
    def waiting_for_output(self) -> bool:
        """Return whether the worker is blocked until ``read`` takes output."""
        return self._worker is not None and self._worker.waiting_for_reader

    async def start(self, source_init: bytes) -> None:
        """Start the worker thread on the source init segment (ftyp+moov)."""
        if self._worker is not None or self._closed:
            raise RuntimeError("transcoder already started")
        worker = self._worker = PyAVWorker(
            f"hksv-transcode {self._log_name}",
            max_jobs=self._max_queued_input,
            max_results=self._max_queued_output,
            on_exit=self._on_exit,
        )
        worker.start()
        init = bytes(source_init)
        worker.offer(self._timed(lambda: self._open(init)))

    async def feed(self, fragment: bytes | memoryview) -> None:
        """Queue one source moof+mdat, waiting while the input queue is full."""
        data = bytes(fragment)
        await self._put(lambda pipeline: pipeline.process(data))

    async def new_source_init(self, source_init: bytes) -> None:
        """Queue a new source init segment (discontinuity); the output timeline continues."""
        init = bytes(source_init)
        await self._put(lambda pipeline: pipeline.new_init(init))

    def end_of_input(self) -> None:
        """Mark the end of the input; the worker flushes and then ends the output."""
        worker = self._require_started()
        if not self._input_ended:
            self._input_ended = True
            worker.end_input(self._timed(lambda: self._require_pipeline().finish()))

    async def read(self) -> bytes | None:
        """Return the output init first, then one moof+mdat per call, and None at the end."""
        return await self._require_started().get_result()

    def stop(self) -> None:
        """Tell the worker to stop at its next frame; ``read`` then ends (no wait here)."""
        self._closed = True
        if self._worker is not None:
            self._worker.stop()

    async def close(self) -> None:
        """Stop the worker if needed and join its thread; safe to call more than once."""
        self.stop()
        if self._worker is not None:
            await self._worker.async_stop()

    def _require_started(self) -> PyAVWorker[bytes]:
        """Return the worker; raise unless ``start`` was called."""
        if self._worker is None:
            raise RuntimeError("transcoder not started")
        return self._worker

    async def _put(self, step: Callable[[TranscodePipeline], None]) -> None:
        """Queue one input step once the bounded input queue has room (dropped when gone)."""
        worker = self._require_started()
        if self._input_ended:
            raise RuntimeError("input already ended")
        await worker.put(self._timed(lambda: step(self._require_pipeline())))

    # Worker thread from here on.

    def _timed(self, step: Callable[[], None]) -> Callable[[], None]:
        """Return ``step`` counting its time, less any wait for ``read``, as busy time."""

        def job() -> None:
            worker = self._require_started()
            started, waited = time.perf_counter(), worker.waited_seconds
            try:
                step()
            finally:
                elapsed = time.perf_counter() - started
                self._counters.busy_seconds += elapsed - (worker.waited_seconds - waited)

        return job

    def _open(self, init: bytes) -> None:
        """Create the pipeline on the worker thread and emit the output init."""
        worker = self._require_started()
        self._pipeline = TranscodePipeline(
            self._target,
            self._log_name,
            self._counters,
            worker.emit,
            worker.check_stop,
            encoders=self._encoders,
        )
        self._pipeline.open(init)

    def _require_pipeline(self) -> TranscodePipeline:
        """Return the pipeline ``_open`` made."""
        if self._pipeline is None:
            raise TranscodeError("no source init segment")
        return self._pipeline

    def _on_exit(self, error: Exception | None) -> None:
        """Release the PyAV objects and record why the session ended, on the worker thread."""
        if self._pipeline is not None:
            self._pipeline.close()
        if error is None:
            return
        if isinstance(error, TranscodeError):
            message = str(error)
        elif isinstance(error, (av.FFmpegError, ValueError, OSError)):
            message = f"{type(error).__name__}: {error}"
        else:  # any crash ends the session, never leaves read() hanging
            _LOGGER.error(
                "%s: transcoder crashed",
                self._log_name,
                exc_info=(type(error), error, error.__traceback__),
            )
            message = f"{type(error).__name__}: {error}"
        self._counters.last_error = message
        _LOGGER.warning("%s: transcoding stopped: %s", self._log_name, message)
