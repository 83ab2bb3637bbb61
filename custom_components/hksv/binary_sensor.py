"""Binary sensors: paired, and whether a hub is recording right now."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from homeassistant.components.binary_sensor import (
    BinarySensorEntity,
    BinarySensorEntityDescription,
)

# From the package, not binary_sensor.const: that module is newer than HA 2026.3, the oldest
# supported release, where the class lives in the package itself.
from homeassistant.components.binary_sensor import (  # type: ignore[attr-defined]  # isort: skip
    BinarySensorDeviceClass,
)
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .bridge import CameraBridge, HksvConfigEntry
from .entity import HksvEntity

PARALLEL_UPDATES = 0


@dataclass(frozen=True, kw_only=True)
class HksvBinarySensorEntityDescription(BinarySensorEntityDescription):
    """Describes an HKSV binary sensor."""

    value_fn: Callable[[CameraBridge], bool]
    available_fn: Callable[[CameraBridge], bool] = lambda _: True


BINARY_SENSORS: tuple[HksvBinarySensorEntityDescription, ...] = (
    HksvBinarySensorEntityDescription(
        key="paired",
        translation_key="paired",
        # No device class: connectivity would show Connected/Disconnected, and a pairing is
        # not a connection (strings.json names the states Paired / Not paired).
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=lambda bridge: bridge.paired,
    ),
    HksvBinarySensorEntityDescription(
        key="recording",
        translation_key="recording",
        device_class=BinarySensorDeviceClass.RUNNING,
        value_fn=lambda bridge: bridge.recorder is not None and bridge.recorder.streaming,
        available_fn=lambda bridge: bridge.camera_available,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: HksvConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the binary sensors."""
    async_add_entities(
        HksvBinarySensor(entry.runtime_data, description) for description in BINARY_SENSORS
    )


class HksvBinarySensor(HksvEntity, BinarySensorEntity):
    """A binary sensor of an HKSV camera."""

    entity_description: HksvBinarySensorEntityDescription

    @property
    def available(self) -> bool:
        """Return availability (the recording state follows the source camera)."""
        return self.entity_description.available_fn(self.bridge)

    @property
    def is_on(self) -> bool:
        """Return the state."""
        return self.entity_description.value_fn(self.bridge)
