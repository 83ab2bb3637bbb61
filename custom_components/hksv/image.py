"""Image: the pairing QR code, shown while the camera is not paired."""

from __future__ import annotations

from homeassistant.components.image import ImageEntity, ImageEntityDescription
from homeassistant.const import EntityCategory
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .bridge import CameraBridge, HksvConfigEntry
from .entity import HksvEntity

PARALLEL_UPDATES = 0

PAIRING_QR = ImageEntityDescription(
    key="pairing_qr", translation_key="pairing_qr", entity_category=EntityCategory.DIAGNOSTIC
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: HksvConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the QR image."""
    async_add_entities([HksvPairingQR(hass, entry.runtime_data)])


class HksvPairingQR(HksvEntity, ImageEntity):
    """The QR code to scan in the Home app; unavailable once paired."""

    _attr_content_type = "image/svg+xml"

    def __init__(self, hass: HomeAssistant, bridge: CameraBridge) -> None:
        """Create the entity."""
        HksvEntity.__init__(self, bridge, PAIRING_QR)
        ImageEntity.__init__(self, hass)
        self._attr_image_last_updated = dt_util.utcnow()
        self._paired = bridge.paired

    @property
    def available(self) -> bool:
        """Return True while the camera waits to be paired."""
        return not self.bridge.paired

    async def async_image(self) -> bytes | None:
        """Return the QR SVG while unpaired."""
        return None if self.bridge.paired else self.bridge.pairing_qr

    async def async_added_to_hass(self) -> None:
        """Follow pairing changes."""
        await super().async_added_to_hass()
        self.async_on_remove(self.bridge.async_add_listener(self._async_pairing_changed))

    @callback
    def _async_pairing_changed(self) -> None:
        """Mark the image changed when the pairing state flips."""
        if self.bridge.paired != self._paired:
            self._paired = self.bridge.paired
            self._attr_image_last_updated = dt_util.utcnow()
