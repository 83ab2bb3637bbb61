"""What the user reads: the Paired sensor's states and the data-stream setup error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.hds import HDSError
from tests.conftest import FakeCamera
from tests.hub.controller import HubController

STRINGS = json.loads(
    (Path(__file__).parent.parent / "custom_components/hksv/strings.json").read_text()
)


async def test_paired_is_not_a_connectivity_sensor(
    hass: HomeAssistant, init_integration: MockConfigEntry, session_keys: None
) -> None:
    """Paired has no device class (not Connected/Disconnected) and named states of its own."""
    state = hass.states.get("binary_sensor.front_door_paired")
    assert state.state == "off"
    assert "device_class" not in state.attributes
    assert STRINGS["entity"]["binary_sensor"]["paired"]["state"] == {
        "on": "Paired",
        "off": "Not paired",
    }
    hub = HubController(init_integration.runtime_data.port)
    await hub.pair(init_integration.runtime_data.setup_code)
    try:
        await hass.async_block_till_done()
        assert hass.states.get("binary_sensor.front_door_paired").state == "on"
    finally:
        await hub.close()


async def test_data_stream_unavailable_says_what_to_do(
    hass: HomeAssistant,
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: FakeCamera,
    mock_config_entry: MockConfigEntry,
) -> None:
    """No address to listen on for HDS: setup retries with a message naming the address."""
    with patch(
        "custom_components.hksv.accessory_setup.DataStreamServer.async_start",
        side_effect=HDSError("cannot bind"),
    ):
        await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
    assert mock_config_entry.error_reason_translation_key == "data_stream_unavailable"
    assert mock_config_entry.error_reason_translation_placeholders == {"address": "127.0.0.1"}
    message = STRINGS["exceptions"]["data_stream_unavailable"]["message"]
    assert "{address}" in message
    assert "tries again" in message
    await hass.config_entries.async_unload(mock_config_entry.entry_id)
