"""Button: reset the HomeKit pairing."""

from __future__ import annotations

from homeassistant.components.button import ButtonEntity, ButtonEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback

from .bridge import HksvConfigEntry
from .entity import HksvEntity

PARALLEL_UPDATES = 0

RESET_PAIRING = ButtonEntityDescription(
    key="reset_pairing", translation_key="reset_pairing", entity_category=EntityCategory.CONFIG
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: HksvConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the reset button."""
    async_add_entities([HksvResetPairingButton(entry.runtime_data, RESET_PAIRING)])


class HksvResetPairingButton(HksvEntity, ButtonEntity):
    """Remove every HomeKit pairing so the camera can be added again."""

    async def async_press(self) -> None:
        """Reset the pairing."""
        await self.bridge.async_reset_pairing()
