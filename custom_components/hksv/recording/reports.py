"""What the user sees of recordings: the last one, the finished event, and the repairs.

The last recording (sensors, diagnostics), ``hksv_recording_finished`` on the event bus, and
the repairs about recordings: a hub that keeps asking without a selection, a stream the worker
cannot start, a camera copy-only cannot copy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import logging
from typing import Any, Final

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util

from ..const import DOMAIN
from ..events import async_fire_recording_finished
from ..hds import DataSendCloseReason
from ..issues import (
    async_copy_problems,
    async_recording_configured,
    async_recording_not_configured,
)
from .clip_sink import ClipCopy
from .mode import ModeReason
from .summary import SUCCESSFUL_OUTCOMES, RecordingOutcome, RecordingSummary

_LOGGER = logging.getLogger(__name__)

# Worker errors meaning the stream cannot start between keyframes: no picture size before the
# first keyframe (ffmpeg's probe ended first), or no timestamps before it (RTSP joined mid-GOP).
STREAM_START_ERRORS: Final = ("Error muxing first keyframe", "No dts in")
# Opens refused for want of a selection, in a row, before a repair asks the user to act.
REFUSALS_FOR_REPAIR: Final = 2


class RecordingReports:
    """One camera's recordings as the user sees them: last recording, events, repairs."""

    def __init__(
        self, hass: HomeAssistant, *, entry_id: str, name: str, camera_entity_id: str
    ) -> None:
        """Start with no recording and no repair."""
        self._hass = hass
        self._entry_id = entry_id
        self._name = name
        self._camera_entity_id = camera_entity_id
        self._start_issue = False
        self.refused_in_a_row = 0
        self.last_recording: RecordingSummary | None = None

    def opened(self) -> None:
        """A recording started: the refusals in a row end."""
        self.refused_in_a_row = 0

    def closed(self, summary: RecordingSummary, copy: ClipCopy | None) -> None:
        """Finish a recording the hub received; a successful one clears the repair."""
        self.finish(summary, copy)
        _LOGGER.info(
            "%s: recording %s ended (%s, %s): %d fragments, %.1f s, %d bytes",
            self._name,
            summary.stream_id,
            summary.outcome,
            summary.hub_close_reason,
            summary.fragments,
            summary.media_seconds,
            summary.bytes,
        )
        if summary.outcome in SUCCESSFUL_OUTCOMES:
            async_recording_configured(self._hass, self._entry_id)

    def refused(self, stream_id: int, reason: DataSendCloseReason) -> None:
        """Show an open refused for want of a selection; a repair once it repeats."""
        now = dt_util.utcnow()
        summary = RecordingSummary(
            stream_id=stream_id,
            started_at=now,
            ended_at=now,
            outcome=RecordingOutcome.NOT_CONFIGURED,
            hub_close_reason=reason.name,
            error=(
                "the home hub asked to record, but it has not selected a recording "
                "configuration for this camera"
            ),
        )
        self.refused_in_a_row += 1
        _LOGGER.warning(
            "%s: refused recording %s: the home hub has selected no recording configuration "
            "(%d in a row); choosing the camera's Recording Options in the Home app again "
            "makes it select one",
            self._name,
            stream_id,
            self.refused_in_a_row,
        )
        self.finish(summary)
        if self.refused_in_a_row >= REFUSALS_FOR_REPAIR:
            async_recording_not_configured(
                self._hass, self._entry_id, self._name, self.refused_in_a_row
            )

    def finish(self, summary: RecordingSummary, copy: ClipCopy | None = None) -> None:
        """Make ``summary`` the last recording and announce it on the event bus.

        With a copy being kept (archive/), the event waits for it, so automations get a
        playable file.
        """
        self.last_recording = summary
        attributes = summary.as_attributes()

        def announce(clip: Mapping[str, Any] | None) -> None:
            async_fire_recording_finished(
                self._hass,
                entry_id=self._entry_id,
                name=self._name,
                camera_entity_id=self._camera_entity_id,
                summary=attributes,
                clip=clip,
            )

        if copy is None:
            announce(None)
        else:
            copy.finish(attributes, announce)

    def copy_problems(self, problems: Sequence[ModeReason]) -> None:
        """Raise (or clear) the repairs that explain why copy-only cannot work."""
        if problems:
            _LOGGER.warning(
                "%s: copy-only recording does not fit: %s",
                self._name,
                "; ".join(p.problem for p in problems),
            )
        async_copy_problems(self._hass, self._entry_id, self._name, problems)

    def worker_health(self, error: str | None) -> None:
        """Raise the repair while the worker cannot start the stream; clear it once video flows."""
        issue_id = f"stream_cannot_start_{self._entry_id}"
        if error is None:
            if self._start_issue:
                self._start_issue = False
                ir.async_delete_issue(self._hass, DOMAIN, issue_id)
                _LOGGER.info("%s: the camera stream runs again; recording works", self._name)
            return
        if self._start_issue or not error.startswith(STREAM_START_ERRORS):
            return
        self._start_issue = True
        _LOGGER.warning(
            "%s: Home Assistant's stream worker cannot start the camera stream (%s); "
            "recordings fail until it does: set the camera's keyframe interval to 4 s or "
            "less, or use an RTSP stream with the H.264 parameters in its SDP",
            self._name,
            error,
        )
        ir.async_create_issue(
            self._hass,
            DOMAIN,
            issue_id,
            is_fixable=False,
            severity=ir.IssueSeverity.ERROR,
            translation_key="stream_cannot_start",
            translation_placeholders={"name": self._name, "error": error},
        )
