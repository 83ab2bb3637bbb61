"""How a recording ended: its outcome and summary, for the sensors, events and diagnostics."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

from ..hds import DataSendCloseReason


class RecordingOutcome(StrEnum):
    """How a recording ended."""

    COMPLETED = "completed"  # the hub closed it normally, or acknowledged its end
    HUB_ERROR = "hub_error"  # the hub closed it with an error (TIMEOUT, BAD_DATA, ...)
    MAX_DURATION = "max_duration"
    CAMERA_STREAM_LOST = "camera_stream_lost"
    HUB_NOT_READING = "hub_not_reading"
    CAMERA_TURNED_OFF = "camera_turned_off"
    CONNECTION_LOST = "connection_lost"
    TIMED_OUT = "timed_out"
    FAILED = "failed"
    # The hub asked to record but has no selected configuration: the open was refused.
    NOT_CONFIGURED = "not_configured"


# A recording that reached the hub; one clears the not-configured repair.
SUCCESSFUL_OUTCOMES: Final = frozenset({RecordingOutcome.COMPLETED, RecordingOutcome.MAX_DURATION})

# Outcomes the recording itself decided; how the stream closes afterwards does not change them.
FINAL_OUTCOMES: Final = frozenset(
    {
        RecordingOutcome.CAMERA_STREAM_LOST,
        RecordingOutcome.HUB_NOT_READING,
        RecordingOutcome.FAILED,
    }
)


@dataclass(slots=True)
class RecordingSummary:
    """What happened to one recording, for the "last recording" sensor and diagnostics."""

    stream_id: int
    started_at: datetime
    mode: str = ""
    mode_reasons: list[str] = field(default_factory=list)
    # The same reasons as codes with the measured values (mode.ModeReason.as_dict).
    mode_reason_codes: list[dict[str, str]] = field(default_factory=list)
    fragments: int = 0
    bytes: int = 0
    media_seconds: float = 0.0
    prebuffer_seconds: float = 0.0
    first_data_ms: float | None = None
    encoder: str = ""  # the H.264 encoder of a transcoded clip
    ended_at: datetime | None = None
    outcome: RecordingOutcome | None = None
    hub_close_reason: str | None = None
    error: str | None = None

    def as_attributes(self) -> dict[str, Any]:
        """Return JSON-able details."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["ended_at"] = self.ended_at.isoformat() if self.ended_at else None
        data["outcome"] = self.outcome.value if self.outcome else None
        data["media_seconds"] = round(self.media_seconds, 3)
        data["prebuffer_seconds"] = round(self.prebuffer_seconds, 3)
        return data


# Closes the accessory itself sends: they say more than "reached the maximum length".
ACCESSORY_CLOSES: Final = frozenset(
    {
        DataSendCloseReason.NOT_ALLOWED,
        DataSendCloseReason.CANCELLED,
        DataSendCloseReason.UNEXPECTED_FAILURE,
    }
)


def outcome_of_close(reason: DataSendCloseReason | None) -> RecordingOutcome:
    """Map a close reason to how the recording ended."""
    if reason is None:
        return RecordingOutcome.CONNECTION_LOST
    return {
        DataSendCloseReason.NORMAL: RecordingOutcome.COMPLETED,
        DataSendCloseReason.NOT_ALLOWED: RecordingOutcome.CAMERA_TURNED_OFF,
        DataSendCloseReason.CANCELLED: RecordingOutcome.TIMED_OUT,
        DataSendCloseReason.UNEXPECTED_FAILURE: RecordingOutcome.FAILED,
    }.get(reason, RecordingOutcome.HUB_ERROR)
