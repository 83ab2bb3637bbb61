"""Where a live viewer's start time went, for diagnostics (docs/live-view.md §2.9).

Every moment is measured from the Selected START write: the camera stream ready for the viewer
(connecting to the camera first when it was not running), the first part of the camera's
video handed to the session, the first keyframe sent and the first RTP packet sent. The start
either replays the GOP in progress (its keyframe is that old already) or waits for the next
keyframe; which one, and how old the replayed keyframe was, says why the first keyframe came
when it did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import time
from typing import Any


@dataclass(slots=True)
class StartTimeline:
    """Monotonic moments of one viewer's start, from the Selected START write."""

    selected: float = field(default_factory=time.monotonic)
    stream_was_running: bool | None = None
    stream_ready: float | None = None
    gop_in_progress_age: float | None = None  # seconds; None: waited for the next keyframe
    first_part: float | None = None
    first_keyframe: float | None = None
    first_keyframe_source: str | None = None  # "parts" (HA's stream) or "direct"
    first_packet: float | None = None

    def stream_joined(self, *, was_running: bool) -> None:
        """Record that the camera stream is running for this viewer."""
        if self.stream_ready is None:
            self.stream_ready = time.monotonic()
            self.stream_was_running = was_running

    def replayed_gop(self, age_seconds: float) -> None:
        """Record that the start replays the GOP in progress, whose keyframe is this old."""
        self.gop_in_progress_age = age_seconds

    def part_received(self) -> None:
        """Record a part of new video reaching the session (the first one counts)."""
        if self.first_part is None and self.stream_ready is not None:
            self.first_part = time.monotonic()

    def sent(self, *, keyframe: bool, now: float, source: str) -> None:
        """Record an access unit sent (the first one, and the first keyframe, count)."""
        if self.first_packet is None:
            self.first_packet = now
        if keyframe and self.first_keyframe is None:
            self.first_keyframe = now
            self.first_keyframe_source = source

    def ms_since_selected(self, moment: float | None) -> float | None:
        """Return milliseconds from the Selected START write to ``moment``."""
        return None if moment is None else round((moment - self.selected) * 1000, 1)

    def as_dict(self) -> dict[str, Any]:
        """Return the start's moments (ms from START) and what the first keyframe was."""
        if self.stream_was_running is None:
            camera = None
        else:
            camera = "already running" if self.stream_was_running else "connected for this viewer"
        return {
            "camera_stream": camera,
            "camera_ready_ms": self.ms_since_selected(self.stream_ready),
            "first_keyframe_from": (
                None
                if self.stream_ready is None
                else "next keyframe"
                if self.gop_in_progress_age is None
                else "keyframe in progress"
            ),
            "keyframe_in_progress_age_ms": (
                None
                if self.gop_in_progress_age is None
                else round(self.gop_in_progress_age * 1000, 1)
            ),
            "first_part_ms": self.ms_since_selected(self.first_part),
            "first_keyframe_ms": self.ms_since_selected(self.first_keyframe),
            "first_keyframe_source": self.first_keyframe_source,
            "first_packet_ms": self.ms_since_selected(self.first_packet),
        }
