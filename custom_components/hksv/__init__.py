"""HomeKit Secure Video for Home Assistant cameras."""

from __future__ import annotations

import contextlib
import os

from homeassistant.const import EVENT_HOMEASSISTANT_STOP, Platform
from homeassistant.core import Event, HomeAssistant
from homeassistant.helpers import config_validation as cv, issue_registry as ir
from homeassistant.helpers.storage import Store
from homeassistant.helpers.typing import ConfigType

from .bridge import CameraBridge, HksvConfigEntry
from .const import DOMAIN
from .hap.state_file import all_state_files
from .pairing import PairingQRView
from .storage import STORAGE_VERSION, persist_file_path, storage_key

CONFIG_SCHEMA = cv.config_entry_only_config_schema(DOMAIN)
PLATFORMS: list[Platform] = [
    Platform.BINARY_SENSOR,
    Platform.BUTTON,
    Platform.EVENT,
    Platform.IMAGE,
    Platform.SENSOR,
    Platform.SWITCH,
]


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Register the pairing QR view shared by all entries."""
    hass.http.register_view(PairingQRView())
    return True


async def async_setup_entry(hass: HomeAssistant, entry: HksvConfigEntry) -> bool:
    """Start the HomeKit accessory of one camera."""
    bridge = CameraBridge(hass, entry)
    try:
        await bridge.async_start()
    except BaseException:
        await bridge.async_stop()
        raise
    entry.runtime_data = bridge
    entry.async_on_unload(bridge.async_stop)

    async def stop_with_home_assistant(_event: Event) -> None:
        # Home Assistant does not unload entries when it stops: end the camera stream, the
        # recordings and the HAP server now, before its stream shutdown has run.
        await bridge.async_stop()

    entry.async_on_unload(hass.bus.async_listen(EVENT_HOMEASSISTANT_STOP, stop_with_home_assistant))
    await hass.config_entries.async_forward_entry_setups(entry, PLATFORMS)
    return True


async def async_unload_entry(hass: HomeAssistant, entry: HksvConfigEntry) -> bool:
    """Unload platforms; the bridge stops through async_on_unload."""
    return await hass.config_entries.async_unload_platforms(entry, PLATFORMS)


async def async_remove_entry(hass: HomeAssistant, entry: HksvConfigEntry) -> None:
    """Delete the pairing keys and stored camera state of a removed entry."""
    store: Store[dict[str, object]] = Store(hass, STORAGE_VERSION, storage_key(entry.entry_id))
    await store.async_remove()
    ir.async_delete_issue(hass, DOMAIN, f"pairing_lost_{entry.entry_id}")
    path = persist_file_path(hass, entry.entry_id)

    def remove_state_file() -> None:
        for name in all_state_files(path):
            with contextlib.suppress(FileNotFoundError):
                os.remove(name)

    await hass.async_add_executor_job(remove_state_file)
