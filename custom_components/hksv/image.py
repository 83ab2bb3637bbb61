"""Image: the pairing QR code, present only while the camera waits to be paired."""

from __future__ import annotations

from homeassistant.components.image import ImageEntity, ImageEntityDescription
from homeassistant.const import EntityCategory, Platform
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.util import dt as dt_util

from .bridge import CameraBridge, HksvConfigEntry
from .const import DOMAIN
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
    """Add the QR image while unpaired; remove it once paired instead of leaving it Unavailable."""
    bridge = entry.runtime_data
    registry = er.async_get(hass)
    unique_id = f"{entry.entry_id}_{PAIRING_QR.key}"
    added = False

    @callback
    def follow_pairing() -> None:
        nonlocal added
        if bridge.paired:
            if entity_id := registry.async_get_entity_id(Platform.IMAGE, DOMAIN, unique_id):
                registry.async_remove(entity_id)  # the entity removes itself from HA too
            added = False
        elif not added:
            added = True
            async_add_entities([HksvPairingQR(hass, bridge)])

    follow_pairing()
    entry.async_on_unload(bridge.async_add_listener(follow_pairing))


class HksvPairingQR(HksvEntity, ImageEntity):
    """The QR code to scan in the Home app (it encodes the setup code; the state does not)."""

    _attr_content_type = "image/svg+xml"

    def __init__(self, hass: HomeAssistant, bridge: CameraBridge) -> None:
        """Create the entity."""
        HksvEntity.__init__(self, bridge, PAIRING_QR)
        ImageEntity.__init__(self, hass)
        self._attr_image_last_updated = dt_util.utcnow()
        self._shown_qr = bridge.pairing_qr

    async def async_image(self) -> bytes | None:
        """Return the QR SVG while unpaired."""
        return None if self.bridge.paired else self.bridge.pairing_qr

    async def async_added_to_hass(self) -> None:
        """Follow new setup codes."""
        await super().async_added_to_hass()
        self.async_on_remove(self.bridge.async_add_listener(self._async_qr_changed))

    @callback
    def _async_qr_changed(self) -> None:
        """Mark the image changed when the setup code (so the QR) was replaced."""
        if self.bridge.pairing_qr != self._shown_qr:
            self._shown_qr = self.bridge.pairing_qr
            self._attr_image_last_updated = dt_util.utcnow()
            self.async_write_ha_state()
