"""Development only: a demo camera and motion sensor, added to hksv on first start.

Used by scripts/develop; not part of the integration.
"""

from __future__ import annotations

import asyncio
import logging
import os

from homeassistant.const import CONF_NAME, EVENT_HOMEASSISTANT_STARTED, Platform
from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers.discovery import async_load_platform
from homeassistant.helpers.typing import ConfigType

_LOGGER = logging.getLogger(__name__)
DOMAIN = "hksv_demo"
CAMERA = "camera.hksv_demo_camera"
MOTION = "binary_sensor.hksv_demo_motion"
SOURCE = os.environ.get("HKSV_DEMO_SOURCE", "tcp://127.0.0.1:8554")


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Create the demo entities and, on first start, the hksv accessory for them."""
    hass.data[DOMAIN] = SOURCE
    for platform in (Platform.CAMERA, Platform.BINARY_SENSOR):
        hass.async_create_task(async_load_platform(hass, platform, DOMAIN, {}, config))

    async def started(_event: Event) -> None:
        if not hass.config_entries.async_entries("hksv"):
            result = await hass.config_entries.flow.async_init("hksv", context={"source": "user"})
            await hass.config_entries.flow.async_configure(
                result["flow_id"],
                {CONF_NAME: "Demo camera", "camera_entity_id": CAMERA, "motion_entity_id": MOTION},
            )
        for _ in range(60):
            if any(hasattr(e, "runtime_data") for e in hass.config_entries.async_entries("hksv")):
                break
            await asyncio.sleep(1)
        for entry in hass.config_entries.async_entries("hksv"):
            bridge = getattr(entry, "runtime_data", None)
            if bridge is None:
                continue
            base = hass.config.internal_url or "http://127.0.0.1:8123"
            _LOGGER.warning(
                "HomeKit Secure Video accessory %r on port %s: %s. Setup code %s, QR code %s"
                "/api/hksv/pairingqr/%s?secret=%s (also a Home Assistant notification)",
                entry.title,
                bridge.port,
                "already paired" if bridge.paired else "not paired",
                bridge.setup_code,
                base,
                entry.entry_id,
                bridge.qr_secret,
            )

    hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STARTED, started)
    return True
