"""Home Assistant events for automations: recordings that ended, doorbell presses, motion.

Fired on the event bus (Developer tools → Events lets you watch them) with the camera's
entity id, so automations can notify on failed recordings or react to what HomeKit was told.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from homeassistant.core import HomeAssistant, callback

from .const import DOMAIN

EVENT_RECORDING_FINISHED: Final = f"{DOMAIN}_recording_finished"
EVENT_DOORBELL: Final = f"{DOMAIN}_doorbell"
EVENT_MOTION: Final = f"{DOMAIN}_motion"


@callback
def async_fire_recording_finished(
    hass: HomeAssistant,
    *,
    entry_id: str,
    name: str,
    camera_entity_id: str,
    summary: Mapping[str, Any],
    clip: Mapping[str, Any] | None = None,
) -> None:
    """Announce a recording that ended: how, why, how long, copied or transcoded.

    ``clip`` is the archived copy (archive/): its media-source id and /media URLs, which are
    None when the archive is off or could not keep this recording.
    """
    hass.bus.async_fire(
        EVENT_RECORDING_FINISHED,
        {
            "entry_id": entry_id,
            "name": name,
            "camera_entity_id": camera_entity_id,
            "outcome": summary["outcome"],
            "reason": summary["hub_close_reason"],
            "error": summary["error"],
            "duration": summary["media_seconds"],
            "mode": summary["mode"],
            "mode_reasons": summary["mode_reasons"],
            "mode_reason_codes": summary["mode_reason_codes"],
            "fragments": summary["fragments"],
            "bytes": summary["bytes"],
            "started_at": summary["started_at"],
            "ended_at": summary["ended_at"],
            "media_content_id": clip["media_content_id"] if clip else None,
            "url": clip["url"] if clip else None,
            "thumbnail_url": clip["thumbnail_url"] if clip else None,
        },
    )


@callback
def async_fire_doorbell(
    hass: HomeAssistant, *, entry_id: str, name: str, camera_entity_id: str, paired: bool
) -> None:
    """Announce a doorbell press that was sent to HomeKit."""
    hass.bus.async_fire(
        EVENT_DOORBELL,
        {
            "entry_id": entry_id,
            "name": name,
            "camera_entity_id": camera_entity_id,
            "paired": paired,
        },
    )


@callback
def async_fire_motion(
    hass: HomeAssistant,
    *,
    entry_id: str,
    name: str,
    camera_entity_id: str,
    detected: bool,
    paired: bool,
) -> None:
    """Announce a motion change that was sent to HomeKit (start or end)."""
    hass.bus.async_fire(
        EVENT_MOTION,
        {
            "entry_id": entry_id,
            "name": name,
            "camera_entity_id": camera_entity_id,
            "detected": detected,
            "paired": paired,
        },
    )
