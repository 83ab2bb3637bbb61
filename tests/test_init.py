"""Setup, unload, removal, the port-in-use repair, and diagnostics."""

from __future__ import annotations

import os
import socket
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import device_registry as dr, issue_registry as ir
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_get_persistent_notifications,
)
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)

from custom_components.hksv.const import DOMAIN
from custom_components.hksv.pairing import notification_id
from custom_components.hksv.storage import persist_file_path
from tests.conftest import FakeCamera
from tests.hub.controller import HubController


async def test_load_and_unload(
    hass: HomeAssistant, init_integration: MockConfigEntry, device_registry: dr.DeviceRegistry
) -> None:
    """The entry loads one device with its entities and unloads cleanly (port released)."""
    bridge = init_integration.runtime_data
    assert init_integration.state is ConfigEntryState.LOADED
    # Looked up by config entry: the lookup by identifier differs between the oldest and the
    # newest supported Home Assistant.
    devices = dr.async_entries_for_config_entry(device_registry, init_integration.entry_id)
    assert len(devices) == 1
    device = devices[0]
    assert (DOMAIN, init_integration.entry_id) in device.identifiers
    assert device is not None
    assert device.name == "Front door"
    for entity_id in (
        "binary_sensor.front_door_paired",
        "binary_sensor.front_door_recording",
        "button.front_door_reset_homekit_pairing",
        "image.front_door_pairing_qr_code",
        "sensor.front_door_home_app_mode",
        "sensor.front_door_last_recording",
        "switch.front_door_homekit_camera",
    ):
        assert hass.states.get(entity_id) is not None, entity_id
    assert hass.states.get("sensor.front_door_setup_code") is None  # the code is no entity state
    assert hass.states.get("sensor.front_door_home_app_mode").state == "stream"

    port = bridge.port
    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.NOT_LOADED
    assert notification_id(init_integration.entry_id) not in async_get_persistent_notifications(
        hass
    )
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


async def test_port_in_use_raises_a_repair(
    hass: HomeAssistant,
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: FakeCamera,
    mock_config_entry: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """Another program on the HAP port: setup retries and a repair explains it."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", mock_config_entry.data["port"]))
    blocker.listen()
    try:
        await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
        assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
        issue = issue_registry.async_get_issue(DOMAIN, f"port_in_use_{mock_config_entry.entry_id}")
        assert issue is not None
        assert issue.translation_placeholders["port"] == str(mock_config_entry.data["port"])
    finally:
        blocker.close()
        await hass.config_entries.async_unload(mock_config_entry.entry_id)


async def test_remove_entry_deletes_pairing_state(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """Removing the entry deletes the pairing keys file."""
    path = persist_file_path(hass, init_integration.entry_id)
    assert os.path.exists(path)
    assert await hass.config_entries.async_remove(init_integration.entry_id)
    await hass.async_block_till_done()
    assert not os.path.exists(path)


async def test_diagnostics_are_redacted(
    hass: HomeAssistant, hass_client: Any, hub: HubController, init_integration: MockConfigEntry
) -> None:
    """Diagnostics show the HAP, camera and data-stream state without secrets."""
    bridge = init_integration.runtime_data
    data = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    assert data["setup_code"] == "**REDACTED**"
    assert data["setup_id"] == "**REDACTED**"
    assert data["hap"]["paired"] is True
    assert data["hap"]["paired_clients"] == "**REDACTED**"
    assert data["hap"]["port"] == bridge.port
    assert data["camera"]["state"]["mode"] == "stream"
    assert data["camera"]["offer_fingerprint"] == bridge.accessory.offer.fingerprint
    assert "data_stream" in data
    assert data["recording"]["prebuffer"]["running"] is False
    text = str(data)
    assert bridge.setup_code not in text
    assert bridge.mac not in text
