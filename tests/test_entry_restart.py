"""Starting again: a failed start frees its port, and Last recording comes back after a restart."""

from __future__ import annotations

import asyncio
from datetime import timedelta
import socket
from typing import Any

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant, State
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    mock_restore_cache_with_extra_data,
)
from zeroconf import EventLoopBlocked

from tests.conftest import FakeCamera
from tests.hub.controller import HubController

LAST_RECORDING = "sensor.front_door_last_recording"
CLIP_ATTRIBUTES: dict[str, Any] = {
    "stream_id": 3,
    "started_at": "2026-12-07T10:00:00+00:00",
    "mode": "copy",
    "mode_reasons": [],
    "mode_reason_codes": [],
    "fragments": 5,
    "bytes": 1234567,
    "media_seconds": 19.8,
    "prebuffer_seconds": 4.0,
    "first_data_ms": 120.5,
    "ended_at": "2026-12-07T10:00:21+00:00",
    "outcome": "hub_error",
    "hub_close_reason": "TIMEOUT",
    "error": None,
}


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


async def test_mdns_failure_after_bind_frees_the_port_and_retries(
    hass: HomeAssistant,
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: FakeCamera,
    mock_config_entry: MockConfigEntry,
) -> None:
    """The HAP port is bound before mDNS registers; a registration error must free it."""
    port = mock_config_entry.data["port"]
    mock_async_zeroconf.async_register_service.side_effect = [EventLoopBlocked(), None]

    await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert _bindable(port)
    assert mock_config_entry.state is ConfigEntryState.SETUP_RETRY
    assert mock_config_entry.reason is not None and "mDNS" in mock_config_entry.reason

    # Home Assistant's own retry starts the accessory on the same port; a hub can pair.
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(minutes=2))
    async with asyncio.timeout(30):  # the retry runs as a background task
        while mock_config_entry.state is not ConfigEntryState.LOADED:
            await asyncio.sleep(0.05)
    bridge = mock_config_entry.runtime_data
    assert bridge.port == port
    hub = HubController(port)
    try:
        await hub.pair(bridge.setup_code)
        assert bridge.paired
    finally:
        await hub.close()
    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    assert _bindable(port)


@pytest.mark.parametrize("saved_state", ["hub_error", "unavailable"])
async def test_last_recording_is_restored(
    hass: HomeAssistant,
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: FakeCamera,
    mock_config_entry: MockConfigEntry,
    saved_state: str,
) -> None:
    """The clip before the restart is Last recording again, also if the camera was down."""
    attributes = CLIP_ATTRIBUTES if saved_state != "unavailable" else {}
    mock_restore_cache_with_extra_data(
        hass,
        [
            (
                State(LAST_RECORDING, saved_state, attributes),
                {"outcome": "hub_error", "attributes": CLIP_ATTRIBUTES},
            )
        ],
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()

    state = hass.states.get(LAST_RECORDING)
    assert state is not None
    assert state.state == "hub_error"
    for key, value in CLIP_ATTRIBUTES.items():
        assert state.attributes[key] == value, key

    # A real unload and setup keep it too (the entity stores it again when removed).
    assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    state = hass.states.get(LAST_RECORDING)
    assert state is not None and state.state == "hub_error"
    assert state.attributes["hub_close_reason"] == "TIMEOUT"
    await hass.config_entries.async_unload(mock_config_entry.entry_id)


@pytest.mark.parametrize(
    "extra_data",
    [
        {"outcome": "exploded", "attributes": CLIP_ATTRIBUTES},
        {"outcome": "completed", "attributes": "not a dict"},
        {"something": "else"},
    ],
)
async def test_unusable_saved_recording_is_not_restored(
    hass: HomeAssistant,
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: FakeCamera,
    mock_config_entry: MockConfigEntry,
    extra_data: dict[str, Any],
) -> None:
    """Saved data that is not a known outcome with details is ignored: the state is unknown."""
    mock_restore_cache_with_extra_data(
        hass, [(State(LAST_RECORDING, "completed", CLIP_ATTRIBUTES), extra_data)]
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    state = hass.states.get(LAST_RECORDING)
    assert state is not None
    assert state.state == "unknown"
    assert "hub_close_reason" not in state.attributes
    await hass.config_entries.async_unload(mock_config_entry.entry_id)
