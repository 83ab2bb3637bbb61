"""Switch: the HomeKit camera on/off state (Home app "Off" versus the other modes)."""

from __future__ import annotations

from typing import Any

from homeassistant.components.switch import SwitchEntity, SwitchEntityDescription
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .bridge import HksvConfigEntry
from .entity import HksvEntity

PARALLEL_UPDATES = 0

CAMERA_ACTIVE = SwitchEntityDescription(key="homekit_camera", translation_key="homekit_camera")


async def async_setup_entry(
    hass: HomeAssistant,
    entry: HksvConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the camera switch."""
    async_add_entities([HksvCameraActiveSwitch(entry.runtime_data, CAMERA_ACTIVE)])


class HksvCameraActiveSwitch(HksvEntity, SwitchEntity):
    """HomeKitCameraActive: off stops recordings, snapshots and motion in HomeKit."""

    @property
    def is_on(self) -> bool:
        """Return HomeKitCameraActive."""
        accessory = self.bridge.accessory
        return accessory is not None and accessory.state.homekit_camera_active

    async def async_turn_on(self, **kwargs: Any) -> None:
        """Turn the HomeKit camera on."""
        if self.bridge.accessory is not None:
            self.bridge.accessory.set_camera_active(True)

    async def async_turn_off(self, **kwargs: Any) -> None:
        """Turn the HomeKit camera off."""
        if self.bridge.accessory is not None:
            self.bridge.accessory.set_camera_active(False)
