"""Logbook entries for finished recordings: how long, how it ended, whether it was kept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.core import Event, HomeAssistant, callback

from .const import DOMAIN
from .events import EVENT_RECORDING_FINISHED


@callback
def async_describe_events(
    hass: HomeAssistant,
    async_describe_event: Callable[[str, str, Callable[[Event], dict[str, Any]]], None],
) -> None:
    """Describe hksv_recording_finished."""

    @callback
    def describe(event: Event) -> dict[str, Any]:
        data = event.data
        seconds = round(float(data.get("duration") or 0))
        outcome = str(data.get("outcome") or "unknown").replace("_", " ")
        message = f"recorded a {seconds} s HomeKit clip ({outcome})"
        if data.get("url"):
            message += ", saved in Media"
        return {
            "name": data.get("name") or DOMAIN,
            "message": message,
            "entity_id": data.get("camera_entity_id"),
        }

    async_describe_event(DOMAIN, EVENT_RECORDING_FINISHED, describe)
