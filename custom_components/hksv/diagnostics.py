"""Diagnostics: what a user needs to answer "why is there no clip?", without secrets."""

from __future__ import annotations

from typing import Any

from homeassistant.components.diagnostics import async_redact_data
from homeassistant.core import HomeAssistant

from .bridge import HksvConfigEntry

TO_REDACT = {"setup_code", "setup_id", "setup_uri", "paired_clients", "qr_secret", "mac"}


async def async_get_config_entry_diagnostics(
    hass: HomeAssistant, entry: HksvConfigEntry
) -> dict[str, Any]:
    """Return diagnostics for one camera."""
    bridge = entry.runtime_data
    driver, accessory, recorder = bridge.driver, bridge.accessory, bridge.recorder
    data: dict[str, Any] = {
        "entry": {"data": dict(entry.data), "options": dict(entry.options)},
        "setup_code": bridge.setup_code,
        "setup_id": bridge.setup_id,
        "mac": bridge.mac,
    }
    if driver is not None:
        state = driver.state
        data["hap"] = {
            "port": state.port,
            "addresses": state.addresses,
            "config_version": state.config_version,
            "paired": state.paired,
            "paired_clients": {
                str(uuid): {"admin": state.is_admin(uuid)} for uuid in state.paired_clients
            },
            "connections": len(driver.http_server.connections),
        }
    if accessory is not None:
        selection = accessory.selection
        data["camera"] = {
            "state": {**accessory.state.to_dict(), "mode": accessory.state.mode.value},
            "offer_fingerprint": accessory.offer.fingerprint,
            "offer": [value.hex() for value in accessory.offer.encoded],
            "selection": repr(selection) if selection else None,
        }
    if bridge.data_stream is not None:
        data["data_stream"] = bridge.data_stream.diagnostics()
    if bridge.live is not None:
        data["live_view"] = bridge.live.diagnostics()  # no SRTP keys are ever stored there
    if recorder is not None:
        data["recording"] = recorder.diagnostics()
        last = recorder.last_recording
        data["recording"]["last_recording"] = last.as_attributes() if last else None
        health = bridge.camera_health
        data["recording"]["camera_problem"] = health.problem if health else None
    if bridge.archive is not None:
        data["archive"] = {
            **bridge.archive.archive.diagnostics(),
            "camera": {
                "enabled": bridge.archive.enabled,
                "folder": bridge.archive.folder,
                "days": bridge.archive.days,
                "last_error": bridge.archive.last_error,
            },
        }
    return async_redact_data(data, TO_REDACT)
