"""Repairs and their fix flows: the HAP port is taken, copy-only cannot copy."""

from __future__ import annotations

import base64
import json
from pathlib import Path
import re
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
from custom_components.hksv.hap.recording_config import SourceVideo, build_offer, parse_selection
from custom_components.hksv.issues import (
    COPY_PROBLEM_CODES,
    async_copy_problems,
    copy_issue_id,
    port_issue_id,
)
from custom_components.hksv.media.fmp4 import VideoTrackInfo
from custom_components.hksv.recording.mode import ModeReason, ReasonCode, video_problems
from custom_components.hksv.source.gop import SourceProfile
from tests.conftest import FakeCamera
from tests.hub.controller import HubController
from tests.hub.emulator import choose_selection
from tests.ports import free_port

STRINGS = json.loads(
    (Path(__file__).parent.parent / "custom_components/hksv/strings.json").read_text()
)


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
            patch("custom_components.hksv.ports.PORT_RANGE_START", new_port),
            patch("custom_components.hksv.ports.PORT_RANGE_END", new_port),
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
        with patch("custom_components.hksv.ports.port_is_free", return_value=False):
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
        ModeReason(ReasonCode.KEYFRAME_INTERVAL, (("interval", "8 s"), ("fragment", "4 s")), "p"),
        ModeReason(ReasonCode.BITRATE, (("bitrate", "6000"), ("cap", "2000")), "p"),
    ]
    async_copy_problems(hass, entry.entry_id, "Front door", problems)
    issues = {
        code: issue_registry.async_get_issue(DOMAIN, copy_issue_id(entry.entry_id, code))
        for code in COPY_PROBLEM_CODES
    }
    shown = {code: issue for code, issue in issues.items() if issue is not None}
    assert set(shown) == {ReasonCode.KEYFRAME_INTERVAL, ReasonCode.BITRATE}
    gop = shown[ReasonCode.KEYFRAME_INTERVAL]
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
        issue_registry.async_get_issue(
            DOMAIN, copy_issue_id(entry.entry_id, ReasonCode.KEYFRAME_INTERVAL)
        )
        is None
    )

    placeholders = await _fix(hass, copy_issue_id(entry.entry_id, ReasonCode.BITRATE))
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
    codec = ModeReason(ReasonCode.VIDEO_CODEC, (("codec", "hvc1"),), "p")
    async_copy_problems(hass, entry.entry_id, "Front door", [codec])
    issue_id = copy_issue_id(entry.entry_id, ReasonCode.VIDEO_CODEC)
    assert await hass.config_entries.async_remove(entry.entry_id)
    await hass.async_block_till_done()
    assert await async_setup_component(hass, "repairs", {})
    manager = hass.data["repairs"]["flow_manager"]
    result = await manager.async_init(
        DOMAIN, context={"issue_id": issue_id}, data={"issue_id": issue_id}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "entry_removed"


def _profile(
    width: int = 1280,
    height: int = 720,
    *,
    codec: str = "avc1",
    level_idc: int = 31,
    interval_ms: int | None = 2000,
    constant: bool = True,
    bitrate_kbps: float = 1000.0,
    no_video: bool = False,
) -> SourceProfile:
    """Return a measured camera profile; the defaults fit a 1280x720 selection."""
    video = VideoTrackInfo(1, 90000, codec, width, height, 100, level_idc, None)
    return SourceProfile(
        None if no_video else video,
        None,
        25.0,
        interval_ms,
        constant,
        bitrate_kbps,
        8,
        # Irregular: one keyframe group does not fit in a 4 s fragment.
        keyframe_interval_min_ms=1000 if not constant else interval_ms,
        keyframe_interval_max_ms=5000 if not constant else interval_ms,
    )


# One measured camera per reason that stops copy-only mode.
CAMERAS_THAT_CANNOT_COPY = {
    ReasonCode.NO_VIDEO: _profile(no_video=True),
    ReasonCode.VIDEO_CODEC: _profile(codec="hvc1"),
    ReasonCode.H264_LEVEL: _profile(level_idc=51),
    ReasonCode.VIDEO_LARGER: _profile(3840, 2160),
    ReasonCode.ASPECT_RATIO: _profile(640, 480),
    ReasonCode.KEYFRAME_INTERVAL: _profile(interval_ms=8000),
    ReasonCode.KEYFRAME_IRREGULAR: _profile(constant=False),
    ReasonCode.KEYFRAME_UNMEASURED: _profile(interval_ms=None),
    ReasonCode.BITRATE: _profile(bitrate_kbps=100_000),
}


def _placeholders(text: str) -> set[str]:
    return set(re.findall(r"{(\w+)}", text))


async def test_every_measured_copy_problem_has_a_translation_with_its_values(
    hass: HomeAssistant, init_integration: MockConfigEntry, issue_registry: ir.IssueRegistry
) -> None:
    """What recording/mode.py measures fills exactly the placeholders its issue text uses."""
    assert set(CAMERAS_THAT_CANNOT_COPY) == set(COPY_PROBLEM_CODES)
    offer = build_offer(
        SourceVideo(1280, 720, 25.0, "aac-lc", 32000, 1),
        max_height=720,
        prebuffer_ms=4000,
        doorbell=False,
    )
    selection = parse_selection(base64.b64decode(choose_selection(*offer.encoded)))
    chosen = selection.video.attributes[0]
    assert (chosen.width, chosen.height) == (1280, 720)
    entry = init_integration
    for code, profile in CAMERAS_THAT_CANNOT_COPY.items():
        problems = video_problems(profile, selection, 2000)
        assert [problem.code for problem in problems] == [code]
        async_copy_problems(hass, entry.entry_id, "Front door", problems)
        issue = issue_registry.async_get_issue(DOMAIN, copy_issue_id(entry.entry_id, code))
        assert issue is not None
        assert issue.translation_key == f"copy_{code.value}"
        text = STRINGS["issues"][issue.translation_key]
        used = _placeholders(text["title"]) | _placeholders(
            text["fix_flow"]["step"]["confirm"]["description"]
        )
        assert issue.translation_placeholders is not None
        assert set(issue.translation_placeholders) == used, code
        assert issue.translation_placeholders == {"name": "Front door", **dict(problems[0].values)}
