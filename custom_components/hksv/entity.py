"""Base entity: one device per HKSV accessory, state pushed from the bridge."""

from __future__ import annotations

from homeassistant.helpers.device_registry import CONNECTION_NETWORK_MAC, DeviceInfo, format_mac
from homeassistant.helpers.entity import Entity, EntityDescription

from .bridge import CameraBridge
from .const import DOMAIN, MANUFACTURER, MODEL
from .hap.definitions import FIRMWARE_REVISION


class HksvEntity(Entity):
    """An entity of one HKSV camera accessory."""

    _attr_has_entity_name = True
    _attr_should_poll = False

    def __init__(self, bridge: CameraBridge, description: EntityDescription) -> None:
        """Attach to the bridge's device."""
        self.bridge = bridge
        self.entity_description = description
        entry_id = bridge.entry.entry_id
        self._attr_unique_id = f"{entry_id}_{description.key}"
        self._attr_device_info = DeviceInfo(
            identifiers={(DOMAIN, entry_id)},
            # The HAP device id as a MAC connection stops homekit_controller offering to
            # pair the accessory back into Home Assistant (docs/home-assistant.md §4.9).
            connections={(CONNECTION_NETWORK_MAC, format_mac(bridge.mac))},
            name=bridge.name,
            manufacturer=MANUFACTURER,
            model=MODEL,
            sw_version=FIRMWARE_REVISION,
        )

    async def async_added_to_hass(self) -> None:
        """Follow the bridge."""
        await super().async_added_to_hass()
        self.async_on_remove(self.bridge.async_add_listener(self.async_write_ha_state))
