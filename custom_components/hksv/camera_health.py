"""Whether the source camera and its stream are there: one warning when lost, one info back.

Home Assistant's rules (entity-unavailable, log-when-unavailable): entities that depend on the
camera are unavailable while it is gone, and the log says so once when it goes away and once
when it returns, instead of at every retry.
"""

from __future__ import annotations

from collections.abc import Callable

from homeassistant.const import STATE_UNAVAILABLE
from homeassistant.core import (
    CALLBACK_TYPE,
    CoreState,
    Event,
    EventStateChangedData,
    HomeAssistant,
    callback,
)
from homeassistant.helpers.event import async_track_state_change_event
from homeassistant.helpers.start import async_at_started

from .const import LOGGER


class CameraHealth:
    """Follow the camera entity and the prebuffer's attach result; report changes once."""

    def __init__(
        self,
        hass: HomeAssistant,
        *,
        name: str,
        camera_entity_id: str,
        stream_problem: Callable[[], str | None],
        on_change: Callable[[], None],
        on_camera_state: Callable[[], None] | None = None,
    ) -> None:
        """Prepare; ``stream_problem`` returns why the camera's stream cannot be used, or None."""
        self._hass = hass
        self._name = name
        self._camera_entity_id = camera_entity_id
        self._stream_problem = stream_problem
        self._on_change = on_change
        # Called at every state change of the camera entity (its appearance included).
        self._on_camera_state = on_camera_state
        self.problem: str | None = None

    @property
    def available(self) -> bool:
        """Return True while the camera and its stream are usable."""
        return self.problem is None

    @callback
    def async_start(self) -> CALLBACK_TYPE:
        """Follow the camera entity; return the unsubscribe callback."""
        unsubscribers = [
            async_track_state_change_event(
                self._hass, [self._camera_entity_id], self._async_camera_changed
            ),
            # While Home Assistant starts, the camera's integration may simply not be loaded
            # yet: a missing entity counts only once startup is over.
            async_at_started(self._hass, lambda _hass: self.async_check()),
        ]
        self.async_check()

        @callback
        def unsubscribe() -> None:
            for unsub in unsubscribers:
                unsub()

        return unsubscribe

    @callback
    def _async_camera_changed(self, _event: Event[EventStateChangedData]) -> None:
        """Re-check when the camera entity changes."""
        if self._on_camera_state is not None:
            self._on_camera_state()
        self.async_check()

    @callback
    def async_check(self) -> None:
        """Work out the current problem; log and notify only when it comes or goes."""
        state = self._hass.states.get(self._camera_entity_id)
        if state is None and self._hass.state is not CoreState.running:
            return
        if state is None:
            problem: str | None = f"camera {self._camera_entity_id} does not exist"
        elif state.state == STATE_UNAVAILABLE:
            problem = f"camera {self._camera_entity_id} is unavailable"
        else:
            problem = self._stream_problem()
        previous, self.problem = self.problem, problem
        if problem == previous:
            return
        if previous is None:
            LOGGER.warning(
                "%s: %s; recording is not possible until it returns", self._name, problem
            )
        elif problem is None:
            LOGGER.info("%s: camera %s is back", self._name, self._camera_entity_id)
        else:
            LOGGER.debug("%s: camera still unusable: %s", self._name, problem)
        self._on_change()
