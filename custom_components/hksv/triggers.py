"""Motion and doorbell: the Home Assistant entities that make the HomeKit camera record and ring.

A motion entity is a ``binary_sensor`` (mirrored) or an ``event`` entity (each new event holds
motion for ``EVENT_MOTION_SECONDS``); a doorbell entity is an ``event`` entity or a
``binary_sensor`` turning on, and every press also counts as motion.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from homeassistant.const import STATE_ON, STATE_UNAVAILABLE, STATE_UNKNOWN
from homeassistant.core import (
    CALLBACK_TYPE,
    Event,
    EventStateChangedData,
    HomeAssistant,
    callback,
)
from homeassistant.helpers.event import async_call_later, async_track_state_change_event
from homeassistant.util import dt as dt_util

from .const import EVENT_MOTION_SECONDS
from .events import async_fire_doorbell, async_fire_motion
from .hap.accessory import HksvCamera


class CameraTriggers:
    """Follow one camera's motion and doorbell entities and publish them on its accessory."""

    def __init__(
        self,
        hass: HomeAssistant,
        *,
        entry_id: str,
        name: str,
        camera_entity_id: str,
        motion_entity_id: str | None,
        doorbell_entity_id: str | None,
        accessory: Callable[[], HksvCamera | None],
        paired: Callable[[], bool],
        on_change: Callable[[], None],
    ) -> None:
        """Prepare; nothing is followed until async_start."""
        self._hass = hass
        self._entry_id = entry_id
        self._name = name
        self._camera_entity_id = camera_entity_id
        self.motion_entity_id = motion_entity_id
        self.doorbell_entity_id = doorbell_entity_id
        self._accessory = accessory
        self._paired = paired
        self._on_change = on_change
        self._unsubs: list[CALLBACK_TYPE] = []
        self._motion_from_source = False
        self._event_motion_until: CALLBACK_TYPE | None = None
        # When the doorbell last rang: the archive labels a clip that follows it.
        self.doorbell_pressed_at: datetime | None = None

    @callback
    def async_start(self) -> None:
        """Track the motion and doorbell entities."""
        if self.motion_entity_id:
            self._unsubs.append(
                async_track_state_change_event(
                    self._hass, [self.motion_entity_id], self._async_motion_event
                )
            )
            self._apply_motion_state(self._hass.states.get(self.motion_entity_id))
        if self.doorbell_entity_id:
            self._unsubs.append(
                async_track_state_change_event(
                    self._hass, [self.doorbell_entity_id], self._async_doorbell_event
                )
            )

    @callback
    def async_stop(self) -> None:
        """Stop following the entities and drop a pending end of event motion."""
        for unsub in self._unsubs:
            unsub()
        self._unsubs.clear()
        if self._event_motion_until:
            self._event_motion_until()
            self._event_motion_until = None

    def _apply_motion_state(self, state: Any) -> None:
        """Mirror a binary_sensor motion state."""
        if state is None or state.domain != "binary_sensor":
            return
        self._motion_from_source = state.state == STATE_ON
        self._update_motion()

    @callback
    def _async_motion_event(self, event: Event[EventStateChangedData]) -> None:
        """Follow the motion entity: binary_sensor on/off, or an `event` entity's pulses."""
        new = event.data["new_state"]
        if new is None:
            return
        if new.domain == "binary_sensor":
            self._apply_motion_state(new)
        elif _is_new_event(event):
            self._pulse_motion()

    @callback
    def _async_doorbell_event(self, event: Event[EventStateChangedData]) -> None:
        """Ring on a doorbell event (or a binary_sensor turning on) and count it as motion."""
        new, old = event.data["new_state"], event.data["old_state"]
        if new is None:
            return
        if new.domain == "binary_sensor":
            pressed = new.state == STATE_ON and (old is None or old.state != STATE_ON)
        else:
            pressed = _is_new_event(event)
        accessory = self._accessory()
        if pressed and accessory is not None:
            self.doorbell_pressed_at = dt_util.utcnow()
            accessory.ring()
            async_fire_doorbell(
                self._hass,
                entry_id=self._entry_id,
                name=self._name,
                camera_entity_id=self._camera_entity_id,
                paired=self._paired(),
            )
            self._pulse_motion()

    def _pulse_motion(self) -> None:
        """Hold motion for a while after an event; the hub records while motion lasts."""
        if self._event_motion_until:
            self._event_motion_until()

        @callback
        def _expire(_now: Any) -> None:
            self._event_motion_until = None
            self._update_motion()

        self._event_motion_until = async_call_later(self._hass, EVENT_MOTION_SECONDS, _expire)
        self._update_motion()

    def _update_motion(self) -> None:
        """Publish motion = source motion or a recent event."""
        accessory = self._accessory()
        if accessory is None:
            return
        detected = self._motion_from_source or self._event_motion_until is not None
        if detected != accessory.motion_detected:
            accessory.set_motion(detected)
            async_fire_motion(
                self._hass,
                entry_id=self._entry_id,
                name=self._name,
                camera_entity_id=self._camera_entity_id,
                detected=detected,
                paired=self._paired(),
            )
            self._on_change()


def _is_new_event(event: Event[EventStateChangedData]) -> bool:
    """Return True if an `event` entity fired (its state, a timestamp, changed)."""
    new, old = event.data["new_state"], event.data["old_state"]
    if new is None or old is None or new.state in (STATE_UNAVAILABLE, STATE_UNKNOWN):
        return False
    if old.state == STATE_UNAVAILABLE:
        # The entity coming back (reload, restart) restores its last event; not a new one.
        return False
    return new.state != old.state
