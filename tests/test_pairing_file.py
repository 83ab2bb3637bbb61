"""A damaged pairing file (HAP-python's state) never keeps the camera from starting.

The last good copy restores the pairing; with both copies unusable the camera starts unpaired
with a new setup code and a repair says the pairing was lost.
"""

from __future__ import annotations

from collections.abc import Callable
import json
import os

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_get_persistent_notifications,
)

from custom_components.hksv.const import DOMAIN
from custom_components.hksv.hap.state_file import backup_path
from custom_components.hksv.pairing import notification_id
from custom_components.hksv.storage import persist_file_path
from tests.hub.controller import HubController


def _without_private_key(text: bytes) -> bytes:
    data = json.loads(text)
    del data["private_key"]
    return json.dumps(data).encode()


def _bad_mac(text: bytes) -> bytes:
    data = json.loads(text)
    data["mac"] = 42
    return json.dumps(data).encode()


def _other_public_key(text: bytes) -> bytes:
    data = json.loads(text)
    data["public_key"] = "00" * 32
    return json.dumps(data).encode()


def _short_controller_key(text: bytes) -> bytes:
    data = json.loads(text)
    data["paired_clients"] = {uuid: key[:10] for uuid, key in data["paired_clients"].items()}
    return json.dumps(data).encode()


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "garbage": lambda _: b"\x00\xff\xfe not json at all",
    "truncated": lambda text: text[: len(text) // 2],
    "empty": lambda _: b"",
    "key_missing": _without_private_key,
    "not_an_object": lambda _: b"[]",
    "wrong_type": _bad_mac,
    "mismatched_keys": _other_public_key,
    "short_controller_key": _short_controller_key,
}


def _read(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _write(path: str, data: bytes) -> None:
    with open(path, "wb") as file:
        file.write(data)


async def _paired_and_stopped(
    hass: HomeAssistant, entry: MockConfigEntry, hub: HubController
) -> tuple[str, bytes]:
    """Pair, stop the entry (which writes the file) and return (path, its good content)."""
    assert entry.runtime_data.paired
    await hub.close()
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    path = persist_file_path(hass, entry.entry_id)
    return path, await hass.async_add_executor_job(_read, path)


async def _start(hass: HomeAssistant, entry: MockConfigEntry) -> None:
    await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED


@pytest.mark.parametrize("corruption", CORRUPTIONS)
async def test_damaged_file_falls_back_to_the_last_good_copy(
    hass: HomeAssistant,
    hub: HubController,
    init_integration: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
    corruption: str,
) -> None:
    """The pairing survives a damaged state file: same keys, the hub still verifies."""
    entry = init_integration
    mac = entry.runtime_data.mac
    path, good = await _paired_and_stopped(hass, entry, hub)
    await hass.async_add_executor_job(_write, path, CORRUPTIONS[corruption](good))

    await _start(hass, entry)
    bridge = entry.runtime_data
    assert bridge.paired
    assert bridge.mac == mac
    assert issue_registry.async_get_issue(DOMAIN, f"pairing_lost_{entry.entry_id}") is None
    # The damaged file was replaced by the good copy.
    assert json.loads(await hass.async_add_executor_job(_read, path)) == json.loads(good)

    again = HubController(bridge.port)
    again.adopt(hub.pairing_data)
    again.accessories = hub.accessories
    try:
        assert (await again.read(again.iid("85", "75")))["value"] is True
    finally:
        await again.close()


@pytest.mark.parametrize("backup", ["damaged", "missing"])
async def test_lost_pairing_starts_fresh_with_a_repair(
    hass: HomeAssistant,
    hub: HubController,
    init_integration: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
    backup: str,
) -> None:
    """With no usable copy the camera starts unpaired, with a new code and a repair."""
    entry = init_integration
    old_code, old_mac = entry.runtime_data.setup_code, entry.runtime_data.mac
    path, _ = await _paired_and_stopped(hass, entry, hub)
    await hass.async_add_executor_job(_write, path, b"{trunc")
    if backup == "damaged":
        await hass.async_add_executor_job(_write, backup_path(path), b"")
    elif os.path.exists(backup_path(path)):
        await hass.async_add_executor_job(os.remove, backup_path(path))

    await _start(hass, entry)
    bridge = entry.runtime_data
    assert not bridge.paired
    assert bridge.setup_code != old_code
    assert bridge.mac != old_mac  # new keys: hubs see a new accessory
    assert notification_id(entry.entry_id) in async_get_persistent_notifications(hass)
    issue = issue_registry.async_get_issue(DOMAIN, f"pairing_lost_{entry.entry_id}")
    assert issue is not None
    assert issue.translation_key == "pairing_lost"
    assert issue.translation_placeholders == {"name": "Front door"}
    assert bridge.accessory.state.selected_configuration is None
    # The damaged file is kept aside, not deleted.
    assert await hass.async_add_executor_job(os.path.exists, f"{path}.corrupt")

    # The old hub's keys are gone; pairing again with the new code works and ends the repair.
    stale = HubController(bridge.port, alias="stale")
    stale.adopt(hub.pairing_data)
    stale.accessories = hub.accessories
    with pytest.raises(Exception):  # noqa: B017 - aiohomekit raises its own auth errors
        await stale.read(stale.iid("85", "75"))
    await stale.close()
    fresh = HubController(bridge.port, alias="fresh")
    await fresh.pair(bridge.setup_code)
    await fresh.close()
    await hass.async_block_till_done()
    assert issue_registry.async_get_issue(DOMAIN, f"pairing_lost_{entry.entry_id}") is None


async def test_state_file_and_copy_are_private(
    hass: HomeAssistant, hub: HubController, init_integration: MockConfigEntry
) -> None:
    """Both copies of the keys are 0600 and identical after a write."""
    path, good = await _paired_and_stopped(hass, init_integration, hub)
    for name in (path, backup_path(path)):
        mode = (await hass.async_add_executor_job(os.stat, name)).st_mode
        assert mode & 0o077 == 0, (name, oct(mode))
    assert await hass.async_add_executor_job(_read, backup_path(path)) == good
    assert init_integration.state is ConfigEntryState.NOT_LOADED


async def test_removing_the_entry_deletes_every_copy(
    hass: HomeAssistant, hub: HubController, init_integration: MockConfigEntry
) -> None:
    """Removing the entry deletes the keys, their copy and damaged files kept aside."""
    path, _ = await _paired_and_stopped(hass, init_integration, hub)
    await hass.async_add_executor_job(_write, f"{path}.corrupt", b"old keys")
    assert await hass.config_entries.async_remove(init_integration.entry_id)
    await hass.async_block_till_done()
    for name in (path, backup_path(path), f"{path}.corrupt"):
        assert not await hass.async_add_executor_job(os.path.exists, name), name
