"""The text of Home Assistant's stream worker errors, taken from its log for the prebuffer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import contextlib
import logging
from typing import Final, override

# HA's worker logs its failures (and nothing else tells us): "Error from stream worker: …".
_WORKER_ERROR_PREFIX: Final = "Error from stream worker: "
# The worker's error when the source's first keyframe reached the muxer without a picture size:
# ffmpeg's probe (about 5 s by default) ended before the first SPS, as with an MPEG-TS/HTTP
# source of long GOPs joined mid-GOP (docs/home-assistant.md §1.1).
NO_PARAMETERS_ERROR: Final = "Error muxing first keyframe"
# The worker's failure when its log is silenced: its error text comes only from its log.
HIDDEN_WORKER_ERROR: Final = "no reason logged (Home Assistant's stream logger is set above ERROR)"


class WorkerErrorHandler(logging.Handler):
    """Pass the text of the stream worker's logged errors (worker thread) to the event loop.

    Only the text: a user who silenced HA's stream logger gets no record at all, so whether
    the worker runs is judged from the Stream itself (``Prebuffer._on_stream_update``).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, on_error: Callable[[str], None]) -> None:
        super().__init__(logging.ERROR)
        self._loop = loop
        self._on_error = on_error

    @override
    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if not message.startswith(_WORKER_ERROR_PREFIX):
            return
        # RuntimeError: the loop is closed, Home Assistant has stopped.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(
                self._on_error, message.removeprefix(_WORKER_ERROR_PREFIX)
            )
