"""What the user sees of live viewers: running ones, how each ended, diagnostics records.

Every viewer has a record (``viewer_start.start_record``) that its session's counters join when
it ends; the last ones are kept for diagnostics, and the Live viewers sensor shows who watches
now and how the last viewer ended.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
import time
from typing import TYPE_CHECKING, Any

from .slots import EndReason
from .viewer_start import viewer_address
from .viewers import video_summary

if TYPE_CHECKING:
    from ..hap.rtp_stream import SelectedRTPStreamConfiguration
    from .endpoint_setup import PendingSetup
    from .session import LiveSession
    from .slots import StreamSlot
    from .viewers import Viewer


def ended_record(viewer: Viewer, session: LiveSession, reason: EndReason) -> dict[str, Any]:
    """Complete a viewer's record with how it ended and its session's counters."""
    record = viewer.record
    record["end_reason"] = reason.value
    record["ended_at"] = time.time()
    record["stats"] = session.diagnostics()
    if viewer.audio is not None:
        record["audio_stats"] = viewer.audio.stats()
    return record


def refused_record(
    slot: int, setup: PendingSetup, selection: SelectedRTPStreamConfiguration, error: Exception
) -> dict[str, Any]:
    """Return the record of a START that could not be honoured, with why."""
    return {
        "slot": slot,
        "session_id": setup.session_id.hex(),
        "viewer": viewer_address(setup),
        "requested": video_summary(selection),
        "end_reason": EndReason.START_REFUSED.value,
        "error": str(error),
        "ended_at": time.time(),
    }


def viewer_summaries(slots: Iterable[StreamSlot]) -> list[dict[str, Any]]:
    """Return who watches each busy slot, copy or transcode, and why."""
    return [
        {
            "slot": slot.index,
            "viewer": slot.viewer.record["viewer"],
            "mode": slot.viewer.record["mode"],
            "reason": slot.viewer.record["reason"],
            "audio": slot.viewer.record.get("audio"),
        }
        for slot in slots
        if slot.viewer is not None
    ]


def last_ended(history: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """Return how the last session ended, and why (for the Live viewers sensor)."""
    if not history:
        return None
    record = history[-1]
    return {
        key: record[key]
        for key in ("viewer", "mode", "end_reason", "error", "audio")
        if record.get(key) is not None
    }


def active_records(slots: Iterable[StreamSlot]) -> list[dict[str, Any]]:
    """Return the records of the running sessions with their counters so far."""
    return [
        {
            **slot.viewer.record,
            "stats": slot.session.diagnostics(),
            "audio_stats": slot.viewer.audio.stats() if slot.viewer.audio else None,
        }
        for slot in slots
        if slot.viewer is not None and slot.session is not None
    ]
