"""Repairs and their fix flows: the HAP port is taken, copy-only cannot copy."""

from __future__ import annotations

import socket
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.const import CONF_PORT, DOMAIN, OPT_VIDEO_MODE, VIDEO_MODE_AUTO
from custom_components.hksv.issues import (
    COPY_PROBLEM_KEYS,
    async_copy_problems,
    copy_issue_id,
    port_issue_id,
)
from custom_components.hksv.recording.mode import VideoProblem
from tests.conftest import FakeCamera, free_port
from tests.hub.controller import HubController


async def _fix(hass: HomeAssistant, issue_id: str) -> dict[str, Any]:
    """Run an issue's fix flow to its confirmation and submit it."""
    assert await async_setup_component(hass, "repairs", {})
    manager = hass.data["repairs"]["flow_manager"]
    # issue_id in both context and data: older Home Assistant reads it from data.
    result = await manager.async_init(
        DOMAIN, context={"issue_id": issue_id}, data={"issue_id": issue_id}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "confirm"
    shown = dict(result["description_placeholders"])
    result = await manager.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY
    await hass.async_block_till_done()
    return shown


async def _verifies_on(hass: HomeAssistant, hub: HubController, port: int) -> None:
    """Reconnect the already-paired hub on ``port``: pair-verify with its old keys."""
    await hub.close()
    again = HubController(port)
    again.adopt({**hub.pairing_data, "AccessoryPort": port})
    again.accessories = hub.accessories
    try:
        assert (await again.read(again.iid("3E", "23")))["value"] == "Front door"
    finally:
        await again.close()


async def test_port_repair_moves_the_accessory_and_keeps_the_pairing(
    hass: HomeAssistant,
    hub: HubController,
    init_integration: MockConfigEntry,
    issue_registry: ir.IssueRegistry,
) -> None:
    """Another program takes the port: the fix flow moves to a free one; the hub still verifies."""
    entry = init_integration
    old_port = entry.data[CONF_PORT]
    assert await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()
    new_port = free_port()
    blocker = socket.socket()
    # The hub's old connection may linger in TIME_WAIT on this port.
    blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    blocker.bind(("127.0.0.1", old_port))
    blocker.listen()
    try:
        await hass.config_entries.async_setup(entry.entry_id)
        await hass.async_block_till_done()
        assert entry.state is ConfigEntryState.SETUP_RETRY
        issue = issue_registry.async_get_issue(DOMAIN, port_issue_id(entry.entry_id))
        assert issue is not None and issue.is_fixable
        with (
            patch("custom_components.hksv.config_flow.PORT_RANGE_START", new_port),
            patch("custom_components.hksv.config_flow.PORT_RANGE_END", new_port),
        ):
            shown = await _fix(hass, port_issue_id(entry.entry_id))
        assert shown == {"name": "Front door", "port": str(old_port), "new_port": str(new_port)}
        assert entry.data[CONF_PORT] == new_port
        assert entry.state is ConfigEntryState.LOADED
        assert entry.runtime_data.paired
        assert issue_registry.async_get_issue(DOMAIN, port_issue_id(entry.entry_id)) is None
        await _verifies_on(hass, hub, new_port)
    finally:
        blocker.close()


async def test_port_repair_without_a_free_port_aborts(
    hass: HomeAssistant,
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: FakeCamera,
    mock_config_entry: MockConfigEntry,
) -> None:
    """No free port in hksv's range: the fix flow says so and changes nothing."""
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", mock_config_entry.data[CONF_PORT]))
    blocker.listen()
    try:
        await hass.config_entries.async_setup(mock_config_entry.entry_id)
        await hass.async_block_till_done()
        assert await async_setup_component(hass, "repairs", {})
        manager = hass.data["repairs"]["flow_manager"]
        issue_id = port_issue_id(mock_config_entry.entry_id)
        with patch("custom_components.hksv.config_flow._port_is_free", return_value=False):
            result = await manager.async_init(
                DOMAIN, context={"issue_id": issue_id}, data={"issue_id": issue_id}
            )
        assert result["type"] is FlowResultType.ABORT
        assert result["reason"] == "no_free_port"
        assert ir.async_get(hass).async_get_issue(DOMAIN, issue_id) is not None
    finally:
        blocker.close()
        await hass.config_entries.async_unload(mock_config_entry.entry_id)


async def test_options_port_moves_the_accessory_and_keeps_the_pairing(
    hass: HomeAssistant, hub: HubController, init_integration: MockConfigEntry
) -> None:
    """A new port in the options: the entry reloads there and the paired hub still verifies."""
    entry = init_integration
    new_port = free_port()
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**entry.options, CONF_PORT: float(new_port)}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert CONF_PORT not in entry.options
    await hass.async_block_till_done()
    assert entry.data[CONF_PORT] == new_port
    assert entry.runtime_data.port == new_port
    await _verifies_on(hass, hub, new_port)


@pytest.mark.parametrize("taken_by", ["program", "camera"])
async def test_options_port_already_taken(
    hass: HomeAssistant, init_integration: MockConfigEntry, taken_by: str
) -> None:
    """A port another program or another hksv camera uses is refused on the field."""
    entry = init_integration
    port = free_port()
    blocker = socket.socket()
    if taken_by == "program":
        blocker.bind(("127.0.0.1", port))
        blocker.listen()
    else:
        MockConfigEntry(domain=DOMAIN, data={CONF_PORT: port}, unique_id="other").add_to_hass(hass)
    try:
        result = await hass.config_entries.options.async_init(entry.entry_id)
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {**entry.options, CONF_PORT: port}
        )
    finally:
        blocker.close()
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {
        CONF_PORT: "port_in_use" if taken_by == "program" else "port_used_by_camera"
    }
    assert entry.data[CONF_PORT] != port


async def test_every_copy_problem_is_its_own_translated_fixable_issue(
    hass: HomeAssistant, init_integration: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """Each problem shows with its values; the fix flow switches to Auto and clears them all."""
    entry = init_integration
    hass.config_entries.async_update_entry(entry, options={**entry.options, OPT_VIDEO_MODE: "copy"})
    problems = [
        VideoProblem("p", "f", "keyframe_interval", {"interval": "8 s", "fragment": "4 s"}),
        VideoProblem("p", "f", "bitrate", {"bitrate": "6000 kbit/s", "max": "2000 kbit/s"}),
    ]
    async_copy_problems(hass, entry.entry_id, "Front door", problems)
    issues = {
        key: issue_registry.async_get_issue(DOMAIN, copy_issue_id(entry.entry_id, key))
        for key in COPY_PROBLEM_KEYS
    }
    shown = {key: issue for key, issue in issues.items() if issue is not None}
    assert set(shown) == {"keyframe_interval", "bitrate"}
    gop = shown["keyframe_interval"]
    assert gop.translation_key == "copy_keyframe_interval"
    assert gop.translation_placeholders == {
        "name": "Front door",
        "interval": "8 s",
        "fragment": "4 s",
    }
    assert all(issue.is_fixable for issue in shown.values())
    # A later recording with only one problem left clears the other.
    async_copy_problems(hass, entry.entry_id, "Front door", problems[1:])
    assert (
        issue_registry.async_get_issue(DOMAIN, copy_issue_id(entry.entry_id, "keyframe_interval"))
        is None
    )

    placeholders = await _fix(hass, copy_issue_id(entry.entry_id, "bitrate"))
    assert placeholders == {"name": "Front door"}
    assert entry.options[OPT_VIDEO_MODE] == VIDEO_MODE_AUTO
    assert not [
        i for i in issue_registry.issues.values() if i.issue_id.startswith("copy_incompatible")
    ]
    await hass.async_block_till_done()
    assert entry.state is ConfigEntryState.LOADED
    assert entry.runtime_data.options[OPT_VIDEO_MODE] == VIDEO_MODE_AUTO


async def test_fix_flow_for_a_removed_entry_aborts(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """An issue outliving its entry offers nothing to do."""
    entry = init_integration
    async_copy_problems(hass, entry.entry_id, "Front door", [VideoProblem("p", "f", "codec", {})])
    issue_id = copy_issue_id(entry.entry_id, "codec")
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert await async_setup_component(hass, "repairs", {})
    manager = hass.data["repairs"]["flow_manager"]
    result = await manager.async_init(
        DOMAIN, context={"issue_id": issue_id}, data={"issue_id": issue_id}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "entry_removed"
