"""Events for automations: motion and doorbell sent to HomeKit, recordings that ended."""

from __future__ import annotations

from datetime import timedelta

from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_capture_events,
    async_fire_time_changed,
)

from custom_components.hksv.const import EVENT_MOTION_SECONDS
from custom_components.hksv.events import EVENT_DOORBELL, EVENT_MOTION, EVENT_RECORDING_FINISHED
from custom_components.hksv.hds import DataSendCloseReason
from tests.conftest import CAMERA_ID, DOORBELL_ID, MOTION_ID
from tests.hub.controller import HubController


async def test_motion_and_doorbell_sent_to_homekit_fire_events(
    hass: HomeAssistant, hub: HubController, init_integration: MockConfigEntry
) -> None:
    """Each change HomeKit is told about fires one event; the hub sees the same changes."""
    motion_events = async_capture_events(hass, EVENT_MOTION)
    doorbell_events = async_capture_events(hass, EVENT_DOORBELL)
    motion, bell = hub.iid("85", "22"), hub.iid("121", "73")
    await hub.subscribe(motion, bell)

    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    assert await hub.next_event(motion) is True
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion", "changed": "attr"})
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    assert await hub.next_event(motion) is False
    await hass.async_block_till_done()
    assert [e.data["detected"] for e in motion_events] == [True, False]
    assert motion_events[0].data == {
        "entry_id": init_integration.entry_id,
        "name": "Front door",
        "camera_entity_id": CAMERA_ID,
        "detected": True,
        "paired": True,
    }

    hass.states.async_set(
        DOORBELL_ID, "2026-12-01T10:00:00.000+00:00", {"device_class": "doorbell"}
    )
    assert await hub.next_event(bell) == 0
    assert await hub.next_event(motion) is True
    await hass.async_block_till_done()
    assert len(doorbell_events) == 1
    assert doorbell_events[0].data["camera_entity_id"] == CAMERA_ID
    assert doorbell_events[0].data["paired"] is True
    # The press counts as motion while it lasts, and that is announced too.
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=EVENT_MOTION_SECONDS + 1))
    assert await hub.next_event(motion) is False
    await hass.async_block_till_done()
    assert [e.data["detected"] for e in motion_events] == [True, False, True, False]


async def test_recording_end_fires_an_event(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """A recording the hub closed is announced with outcome, reason and duration."""
    events = async_capture_events(hass, EVENT_RECORDING_FINISHED)
    recorder = init_integration.runtime_data.recorder
    stream = recorder.open_stream(7, None, True)  # type: ignore[arg-type]
    recorder.stream_closed(7, DataSendCloseReason.CANCELLED)
    await stream.aclose()
    recorder.stream_closed(7, DataSendCloseReason.NORMAL)  # already ended: nothing more
    await hass.async_block_till_done()
    assert len(events) == 1
    data = events[0].data
    assert data["camera_entity_id"] == CAMERA_ID
    assert data["entry_id"] == init_integration.entry_id
    assert data["outcome"] == "timed_out"
    assert data["reason"] == "CANCELLED"
    assert data["duration"] == 0.0
    assert data["started_at"] <= data["ended_at"]
    assert set(data) >= {"mode", "mode_reasons", "mode_reason_codes", "fragments", "bytes", "error"}
