"""Repair issues hksv raises: the HAP port is taken, copy-only recordings that cannot copy,
and a hub that keeps asking to record without a selected recording configuration.

The port and copy issues are fixable (repairs.py): the port issue moves the accessory to a
free port, the copy issues switch the camera to Auto. The not-configured issue is fixed in the
Home app, so it only says how; it clears itself at the next successful recording.

Each copy problem is its own issue with its own translation key ("copy_<reason code>" of
recording/mode.py) whose placeholders are the reason's measured values, so every problem
shows, translated, with what was measured.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir

from .const import DOMAIN
from .recording.mode import ModeReason, ReasonCode

FIX_MOVE_PORT: Final = "move_port"
FIX_VIDEO_MODE_AUTO: Final = "video_mode_auto"
# The video reasons of recording/mode.py that stop copy-only mode; each has a translated issue
# ("copy_<code>"). Audio and "always transcode" never stop it (copy-only drops audio instead).
COPY_PROBLEM_CODES: Final = (
    ReasonCode.NO_VIDEO,
    ReasonCode.VIDEO_CODEC,
    ReasonCode.H264_LEVEL,
    ReasonCode.VIDEO_LARGER,
    ReasonCode.ASPECT_RATIO,
    ReasonCode.KEYFRAME_INTERVAL,
    ReasonCode.KEYFRAME_IRREGULAR,
    ReasonCode.KEYFRAME_UNMEASURED,
    ReasonCode.BITRATE,
)


def port_issue_id(entry_id: str) -> str:
    """Return the id of an entry's port-in-use issue."""
    return f"port_in_use_{entry_id}"


def copy_issue_id(entry_id: str, code: ReasonCode) -> str:
    """Return the id of an entry's copy-only issue for one problem."""
    return f"copy_incompatible_{entry_id}_{code.value}"


@callback
def async_port_in_use(hass: HomeAssistant, entry_id: str, name: str, port: int) -> None:
    """Raise the fixable port-in-use issue."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        port_issue_id(entry_id),
        is_fixable=True,
        severity=ir.IssueSeverity.ERROR,
        translation_key="port_in_use",
        translation_placeholders={"name": name, "port": str(port)},
        data={"entry_id": entry_id, "fix": FIX_MOVE_PORT},
    )


@callback
def async_port_ok(hass: HomeAssistant, entry_id: str) -> None:
    """Clear the port-in-use issue."""
    ir.async_delete_issue(hass, DOMAIN, port_issue_id(entry_id))


@callback
def async_copy_problems(
    hass: HomeAssistant, entry_id: str, name: str, problems: Iterable[ModeReason]
) -> None:
    """Show one issue per copy-only problem and clear the ones that went away."""
    current = {p.code: p for p in problems if p.code in COPY_PROBLEM_CODES}
    for code in COPY_PROBLEM_CODES:
        issue_id = copy_issue_id(entry_id, code)
        problem = current.get(code)
        if problem is None:
            ir.async_delete_issue(hass, DOMAIN, issue_id)
            continue
        ir.async_create_issue(
            hass,
            DOMAIN,
            issue_id,
            is_fixable=True,
            severity=ir.IssueSeverity.WARNING,
            translation_key=f"copy_{code.value}",
            translation_placeholders={"name": name, **dict(problem.values)},
            data={"entry_id": entry_id, "fix": FIX_VIDEO_MODE_AUTO},
        )


@callback
def async_clear_copy_problems(hass: HomeAssistant, entry_id: str) -> None:
    """Remove every copy-only issue of an entry."""
    async_copy_problems(hass, entry_id, "", ())


def not_configured_issue_id(entry_id: str) -> str:
    """Return the id of an entry's "hub has no recording configuration" issue."""
    return f"recording_not_configured_{entry_id}"


@callback
def async_recording_not_configured(
    hass: HomeAssistant, entry_id: str, name: str, refusals: int
) -> None:
    """Tell the user the hub's recordings are refused until it selects a configuration."""
    ir.async_create_issue(
        hass,
        DOMAIN,
        not_configured_issue_id(entry_id),
        is_fixable=False,
        severity=ir.IssueSeverity.ERROR,
        translation_key="recording_not_configured",
        translation_placeholders={"name": name, "refusals": str(refusals)},
    )


@callback
def async_recording_configured(hass: HomeAssistant, entry_id: str) -> None:
    """Clear the not-configured issue (a recording reached the hub)."""
    ir.async_delete_issue(hass, DOMAIN, not_configured_issue_id(entry_id))
