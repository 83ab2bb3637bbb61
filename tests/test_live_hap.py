"""Live view on the HAP side: stream slots, stable IIDs, Microphone, refusals while off."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.const import DEFAULT_OPTIONS, OPT_AUDIO, OPT_LIVE_SLOTS
from custom_components.hksv.hap.definitions import HapStatus, rtp_slot_iid
from custom_components.hksv.hap.rtp_stream import (
    SUPPORTED_VIDEO_STREAM,
    StreamingState,
    StreamingStatus,
)
from tests.hub.controller import HubController, short


def _rtp_services(hub: HubController) -> list[dict[str, Any]]:
    """Return the CameraRTPStreamManagement services in /accessories order."""
    return [s for s in hub.accessories[0]["services"] if short(s["type"]) == "110"]


@pytest.mark.parametrize(
    "entry_options", [{**DEFAULT_OPTIONS, OPT_LIVE_SLOTS: 5}], ids=["five_slots"]
)
async def test_stream_slots_have_fixed_iids(hub: HubController, entry_options: Any) -> None:
    """N services, each with Active and the Supported* values; IIDs come from the table."""
    services = _rtp_services(hub)
    assert len(services) == 5
    for slot, service in enumerate(services):
        assert service["iid"] == rtp_slot_iid(slot, None)
        chars = {short(c["type"]): c for c in service["characteristics"]}
        assert set(chars) == {"B0", "120", "114", "115", "116", "117", "118"}
        for char_type, char in chars.items():
            assert char["iid"] == rtp_slot_iid(slot, char_type)
        assert base64.b64decode(chars["114"]["value"]) == SUPPORTED_VIDEO_STREAM
    assert [s["iid"] for s in services[:2]] == [16, 100]


async def test_default_three_slots_and_microphone(hub: HubController) -> None:
    """By default three slots and a Microphone (audio offered) with a writable Mute."""
    assert len(_rtp_services(hub)) == 3
    mute = hub.iid("112", "11A")
    assert mute == 91
    assert (await hub.read(mute))["value"] in (False, 0)
    assert await hub.write(mute, True) == {}
    assert (await hub.read(mute))["value"] in (True, 1)


@pytest.mark.parametrize("entry_options", [{**DEFAULT_OPTIONS, OPT_AUDIO: False}])
async def test_no_microphone_without_audio(hub: HubController, entry_options: Any) -> None:
    """No audio offered, no Microphone service."""
    with pytest.raises(KeyError):
        hub.service("112")


async def test_active_mirrors_every_slot(
    hub: HubController, init_integration: MockConfigEntry
) -> None:
    """Active written on any slot turns streaming off for all; setups are then -70412."""
    services = _rtp_services(hub)
    second_active = next(
        c["iid"] for c in services[1]["characteristics"] if short(c["type"]) == "B0"
    )
    assert await hub.write(second_active, 0) == {}
    for service in services:
        active = next(c["iid"] for c in service["characteristics"] if short(c["type"]) == "B0")
        assert (await hub.read(active))["value"] == 0
        setup = next(c["iid"] for c in service["characteristics"] if short(c["type"]) == "118")
        result = await hub.write(setup, base64.b64encode(b"\x01\x00").decode())
        assert result["status"] == HapStatus.NOT_ALLOWED_IN_CURRENT_STATE
        status = next(c["iid"] for c in service["characteristics"] if short(c["type"]) == "120")
        value = StreamingStatus.decode(base64.b64decode((await hub.read(status))["value"]))
        assert value.status == StreamingState.UNAVAILABLE
    assert init_integration.runtime_data.accessory.state.rtp_active is False
