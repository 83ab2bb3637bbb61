"""The setup code: private on disk, never an entity state, rotated whenever the camera is unpaired.

The pairing QR image exists only while the camera waits to be paired.
"""

from __future__ import annotations

from collections.abc import Generator
import json
import os
import stat
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er, storage
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_get_persistent_notifications,
)

from custom_components.hksv.const import DOMAIN
from custom_components.hksv.pairing import notification_id
from custom_components.hksv.storage import storage_key
from tests.conftest import FakeCamera
from tests.hub.controller import HubController

QR_ENTITY = "image.front_door_pairing_qr_code"
OLD_SENSOR = "sensor.front_door_setup_code"

# Home Assistant's own Store I/O, before the test harness swaps it for a dict.
_REAL_LOAD = storage.Store._async_load
_REAL_WRITE = storage.Store._async_write_data
_REAL_REMOVE = storage.Store.async_remove


@pytest.fixture
def real_storage(hass: HomeAssistant) -> Generator[None]:
    """Let Stores read and write real files in the test's config dir."""
    with (
        patch.object(storage.Store, "_async_load", _REAL_LOAD),
        patch.object(storage.Store, "_async_write_data", _REAL_WRITE),
        patch.object(storage.Store, "async_remove", _REAL_REMOVE),
    ):
        yield


def _notification_text(hass: HomeAssistant, entry_id: str) -> str:
    """Return the pairing notification's message ("" if none)."""
    notification = async_get_persistent_notifications(hass).get(notification_id(entry_id))
    return notification["message"] if notification else ""


def _everything_in_the_state_machine(hass: HomeAssistant) -> str:
    """Return every state and attribute as text (what the recorder would store)."""
    return json.dumps(
        [(s.entity_id, s.state, dict(s.attributes)) for s in hass.states.async_all()],
        default=str,
    )


async def test_store_is_private_and_an_old_readable_store_is_rewritten(
    hass: HomeAssistant,
    real_storage: None,
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: FakeCamera,
    mock_config_entry: MockConfigEntry,
) -> None:
    """A store an older version wrote world-readable is rewritten 0600 at startup."""
    path = hass.config.path(".storage", storage_key(mock_config_entry.entry_id))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    old = {
        "version": 1,
        "key": storage_key(mock_config_entry.entry_id),
        "data": {"setup_code": "031-45-154", "setup_id": "AB12"},
    }

    def write_old() -> None:
        with open(path, "w", encoding="utf8") as file:
            json.dump(old, file)
        os.chmod(path, 0o644)

    await hass.async_add_executor_job(write_old)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    bridge = mock_config_entry.runtime_data
    try:
        mode = stat.S_IMODE((await hass.async_add_executor_job(os.stat, path)).st_mode)
        assert mode & 0o077 == 0, oct(mode)
        # The old code sat in a readable file (and the recorder): an unpaired camera
        # gets a new one, and the file holds it.
        assert bridge.setup_code != "031-45-154"
        text = await hass.async_add_executor_job(_read, path)
        assert json.loads(text)["data"]["setup_code"] == bridge.setup_code
    finally:
        assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
        await hass.async_block_till_done()
    mode = stat.S_IMODE((await hass.async_add_executor_job(os.stat, path)).st_mode)
    assert mode & 0o077 == 0, oct(mode)


def _read(path: str) -> str:
    """Return a file's text."""
    with open(path, encoding="utf8") as file:
        return file.read()


async def test_code_is_in_no_entity_and_the_old_sensor_is_removed(
    hass: HomeAssistant,
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: FakeCamera,
    mock_config_entry: MockConfigEntry,
    entity_registry: er.EntityRegistry,
) -> None:
    """No entity state or attribute carries the code; an orphaned setup-code sensor is removed."""
    entity_registry.async_get_or_create(
        "sensor",
        DOMAIN,
        f"{mock_config_entry.entry_id}_setup_code",
        config_entry=mock_config_entry,
        suggested_object_id="front_door_setup_code",
    )
    assert entity_registry.async_get(OLD_SENSOR) is not None
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    bridge = mock_config_entry.runtime_data
    try:
        assert entity_registry.async_get(OLD_SENSOR) is None
        assert hass.states.get(OLD_SENSOR) is None
        assert hass.states.get(QR_ENTITY) is not None
        everything = _everything_in_the_state_machine(hass)
        assert bridge.setup_code not in everything
        assert bridge.setup_code.replace("-", "") not in everything
        # HA's own HomeKit shows the code in the notification; so does hksv.
        assert bridge.setup_code in _notification_text(hass, mock_config_entry.entry_id)
    finally:
        assert await hass.config_entries.async_unload(mock_config_entry.entry_id)
        await hass.async_block_till_done()


async def test_code_rotates_when_the_last_pairing_is_removed(
    hass: HomeAssistant,
    hub: HubController,
    init_integration: MockConfigEntry,
    hass_storage: dict[str, Any],
) -> None:
    """After the last hub unpairs, the old code no longer pairs; the new one does."""
    bridge = init_integration.runtime_data
    old_code = bridge.setup_code
    await hub.remove_pairing()
    await hass.async_block_till_done()
    assert not bridge.paired
    new_code = bridge.setup_code
    assert new_code != old_code
    assert new_code in _notification_text(hass, init_integration.entry_id)
    assert old_code not in _notification_text(hass, init_integration.entry_id)
    assert hass_storage[storage_key(init_integration.entry_id)]["data"]["setup_code"] == new_code

    thief = HubController(bridge.port, alias="thief")
    assert await thief.try_pair(old_code) is not None
    assert not bridge.paired
    again = HubController(bridge.port, alias="again")
    await again.pair(new_code)
    await again.close()
    assert bridge.paired


async def test_code_rotates_on_reset_pairing(
    hass: HomeAssistant, hub: HubController, init_integration: MockConfigEntry
) -> None:
    """ "Reset HomeKit pairing" gives a new code; the old one pairs no more."""
    bridge = init_integration.runtime_data
    old_code = bridge.setup_code
    await hass.services.async_call(
        "button", "press", {"entity_id": "button.front_door_reset_homekit_pairing"}, blocking=True
    )
    await hass.async_block_till_done()
    assert bridge.setup_code != old_code
    thief = HubController(bridge.port, alias="thief")
    assert await thief.try_pair(old_code) is not None
    again = HubController(bridge.port, alias="again")
    await again.pair(bridge.setup_code)
    await again.close()


async def test_qr_entity_exists_only_while_unpaired(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    entity_registry: er.EntityRegistry,
    session_keys: None,
    hass_client: Any,
) -> None:
    """The QR image goes away on pairing (not left Unavailable) and comes back on unpairing."""
    bridge = init_integration.runtime_data
    assert hass.states.get(QR_ENTITY).state != "unavailable"

    hub = HubController(bridge.port)
    await hub.pair(bridge.setup_code)
    await hass.async_block_till_done()
    assert hass.states.get(QR_ENTITY) is None
    assert entity_registry.async_get(QR_ENTITY) is None

    # A restart while paired does not bring it back.
    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    assert hass.states.get(QR_ENTITY) is None
    assert entity_registry.async_get(QR_ENTITY) is None

    bridge = init_integration.runtime_data
    await hub.close()
    again = HubController(bridge.port)
    again.adopt(hub.pairing_data)
    await again.remove_pairing()
    await again.close()
    await hass.async_block_till_done()
    state = hass.states.get(QR_ENTITY)
    assert state is not None and state.state != "unavailable"
    # The image served is the QR of the new code.
    client = await hass_client()
    response = await client.get(f"/api/image_proxy/{QR_ENTITY}")
    assert response.status == 200
    assert await response.read() == bridge.pairing_qr
    assert bridge.setup_code not in _everything_in_the_state_machine(hass)
