"""What automations get from a finished recording: the bus event, the event entity, logbook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.core import Event, HomeAssistant
from homeassistant.util import dt as dt_util

from custom_components.hksv import logbook as hksv_logbook
from custom_components.hksv.events import EVENT_RECORDING_FINISHED

EVENT_ENTITY = "event.front_door_recording_finished"


async def test_the_event_entity_fires_with_the_clip(
    hass: HomeAssistant, recorded: dict[str, Any]
) -> None:
    """One event per recording: type = outcome, data = the bus event's, clip URLs included."""
    state = hass.states.get(EVENT_ENTITY)
    assert state is not None
    assert state.attributes["event_type"] == "max_duration"
    assert state.attributes["media_content_id"] == recorded["media_content_id"]
    assert state.attributes["url"] == recorded["url"]
    assert state.attributes["thumbnail_url"] == recorded["thumbnail_url"]
    assert state.attributes["thumbnail_url"].endswith(".jpg")
    assert "entry_id" not in state.attributes
    assert dt_util.parse_datetime(state.state) is not None


async def test_other_cameras_recordings_do_not_fire(
    hass: HomeAssistant, recorded: dict[str, Any]
) -> None:
    """An event of another entry leaves this camera's entity alone."""
    before = hass.states.get(EVENT_ENTITY)
    hass.bus.async_fire(
        EVENT_RECORDING_FINISHED, {**recorded, "entry_id": "another", "outcome": "failed"}
    )
    await hass.async_block_till_done()
    assert hass.states.get(EVENT_ENTITY) == before


async def test_logbook_describes_a_clip(hass: HomeAssistant, recorded: dict[str, Any]) -> None:
    """The logbook entry names the camera, the length, the outcome and that it was kept."""
    described: dict[str, tuple[str, Callable[[Any], dict[str, Any]]]] = {}
    hksv_logbook.async_describe_events(
        hass, lambda domain, name, describe: described.__setitem__(name, (domain, describe))
    )
    domain, describe = described[EVENT_RECORDING_FINISHED]
    assert domain == "hksv"
    entry = describe(Event(EVENT_RECORDING_FINISHED, recorded))
    assert entry["name"] == "Front door"
    assert entry["entity_id"] == "camera.front_door"
    assert entry["message"] == "recorded a 12 s HomeKit clip (max duration), saved in Media"
    unkept = describe(Event(EVENT_RECORDING_FINISHED, {**recorded, "url": None}))
    assert unkept["message"] == "recorded a 12 s HomeKit clip (max duration)"
