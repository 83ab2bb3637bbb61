"""What automations get from a finished recording: the bus event, the event entity, logbook."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.core import Event, HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv import logbook as hksv_logbook
from custom_components.hksv.diagnostics import async_get_config_entry_diagnostics
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


async def test_entities_and_diagnostics_show_the_archive(
    hass: HomeAssistant, recorded: dict[str, Any], init_integration: MockConfigEntry
) -> None:
    """Saved clips, their size and the oldest; diagnostics add the last cleanup and error."""
    assert hass.states.get("sensor.front_door_saved_clips").state == "1"
    size = hass.states.get("sensor.front_door_saved_clips_size")
    assert 0.1 < float(size.state) < 10
    assert size.attributes["unit_of_measurement"] == "MiB"
    assert size.attributes["last_cleanup"] is not None
    assert size.attributes["last_error"] is None
    oldest = hass.states.get("sensor.front_door_oldest_saved_clip")
    started = dt_util.parse_datetime(recorded["started_at"])
    assert started is not None
    assert abs((dt_util.parse_datetime(oldest.state) - started).total_seconds()) < 1.5

    data = await async_get_config_entry_diagnostics(hass, init_integration)
    archive = data["archive"]
    assert archive["clips"] == 1
    assert archive["by_camera"]["front_door"]["clips"] == 1
    assert archive["camera"] == {
        "enabled": True,
        "folder": "front_door",
        "days": 10,
        "last_error": None,
    }
    assert archive["last_cleanup"] is not None
    assert archive["policy"]["min_free_bytes"] == 2 * 1024**3
