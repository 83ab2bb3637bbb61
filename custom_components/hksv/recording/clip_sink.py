"""Where a copy of each recording goes besides the hub (the local archive).

The recorder knows only this interface: it hands every packet it gives the HomeKit Data
Stream to the clip (``write`` must return at once and never raise), and tells it when the
recording ended. The clip then announces the finished recording, with what it kept.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol


class ClipCopy(Protocol):
    """A copy of one recording, being kept."""

    def write(self, data: bytes | memoryview) -> None:
        """Keep one packet as sent to the hub (init first, then moof+mdat fragments)."""

    def finish(
        self,
        summary: Mapping[str, Any],
        announce: Callable[[Mapping[str, Any] | None], None],
    ) -> None:
        """End the copy; call ``announce`` with what was kept (None: nothing) once done."""


class ClipSink(Protocol):
    """Makes a copy of each recording (or not: None)."""

    def open_clip(self, stream_id: int, started_at: datetime) -> ClipCopy | None:
        """Start the copy of a recording that starts now."""
