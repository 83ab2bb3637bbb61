"""Event entity: one per camera, firing when a recording ends, with its archived clip.

Its event type is how the recording ended (the Last recording sensor's states); its data
is that of `hksv_recording_finished`, including the clip's media-source id, `/media` URL and
thumbnail URL (None when the archive is off or could not keep the clip).
"""

from __future__ import annotations

from typing import Any, Final

from homeassistant.components.event import EventEntity, EventEntityDescription
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .bridge import CameraBridge, HksvConfigEntry
from .entity import HksvEntity
from .events import EVENT_RECORDING_FINISHED
from .recording.summary import RecordingOutcome

PARALLEL_UPDATES = 0
# Recovered after a restart (archive/manager.py): no hub outcome is known.
OUTCOME_INTERRUPTED: Final = "interrupted"
# Bus event fields that identify the camera; the entity itself says which camera it is.
_NOT_IN_DATA: Final = ("entry_id", "name", "camera_entity_id")

RECORDING_DESCRIPTION: Final = EventEntityDescription(
    key="recording",
    translation_key="recording",
    event_types=[outcome.value for outcome in RecordingOutcome],
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: HksvConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the camera's recording event entity."""
    async_add_entities([HksvRecordingEvent(entry.runtime_data)])


class HksvRecordingEvent(HksvEntity, EventEntity):
    """Fires once per finished recording."""

    def __init__(self, bridge: CameraBridge) -> None:
        """Attach to the bridge's device."""
        super().__init__(bridge, RECORDING_DESCRIPTION)

    async def async_added_to_hass(self) -> None:
        """Follow this camera's finished recordings."""
        await super().async_added_to_hass()
        entry_id = self.bridge.entry.entry_id

        @callback
        def mine(event_data: Any) -> bool:
            return bool(event_data.get("entry_id") == entry_id)

        self.async_on_remove(
            self.hass.bus.async_listen(
                EVENT_RECORDING_FINISHED, self._async_finished, event_filter=mine
            )
        )

    @callback
    def _async_finished(self, event: Event) -> None:
        """Fire with the recording's data."""
        outcome = event.data.get("outcome")
        if outcome not in self.event_types:
            return
        data = {k: v for k, v in event.data.items() if k not in _NOT_IN_DATA}
        self._trigger_event(str(outcome), data)
        self.async_write_ha_state()
