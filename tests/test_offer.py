"""The recording offer in a running entry: stable over frame rates, upgrades and changes.

Issue 13, item 1: the offer changes only when something a hub must know really changed (the
options, or a lasting change of the camera's format); a selection that still fits survives
an upgrade and an offer change, so recording and its prebuffer keep running.
"""

from __future__ import annotations

import base64
from dataclasses import replace
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.const import DEFAULT_OPTIONS, DOMAIN, OPT_MAX_RESOLUTION
from custom_components.hksv.hap.camera_state import CameraState
from custom_components.hksv.hap.recording_config import (
    OFFER_CHANGE_MIN_REPORTS,
    OFFER_CHANGE_SETTLE_SECONDS,
    RecordingOffer,
    SourceVideo,
    VideoAttributes,
    build_offer,
    parse_selection,
)
from tests.hub.controller import HubController
from tests.hub.emulator import choose_selection
from tests.test_accessory import hub_write

CAMERA_1080P = SourceVideo(1920, 1080, 30.0, "aac-lc", 32000, 1)


def _old_offer(fps: int, *, max_height: int = 1080) -> RecordingOffer:
    """Return what hksv offered before this change: the offer at a measured frame rate.

    Older versions offered 30, 24 or 15 fps after the camera's measured rate; everything
    else was as now (the entries in these tests have a doorbell).
    """
    offer = build_offer(CAMERA_1080P, max_height=max_height, prebuffer_ms=4000, doorbell=True)
    codec = offer.video.codec_configurations[0]
    attributes = [replace(a, frame_rate=fps) for a in codec.attributes]
    video = replace(offer.video, codec_configurations=[replace(codec, attributes=attributes)])
    return RecordingOffer(camera=offer.camera, video=video, audio=offer.audio)


def _store_old_state(hass_storage: dict[str, Any], entry: MockConfigEntry, fps: int) -> bytes:
    """Write an older version's storage: a selection made from its frame-rate offer."""
    old = _old_offer(fps)
    raw = base64.b64decode(choose_selection(*old.encoded))
    camera = CameraState(
        recording_active=True,
        recording_audio_active=True,
        selected_configuration=raw,
        offer_fingerprint=old.fingerprint,
    ).to_dict()
    stored = hass_storage[f"{DOMAIN}.{entry.entry_id}"]["data"]
    stored["source"] = {**stored["source"], "fps": float(fps) - 0.3}
    stored["camera"] = camera
    return raw


@pytest.mark.parametrize("old_fps", [15, 24, 30])
async def test_a_stored_selection_survives_the_upgrade(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: Any,
    mock_config_entry: MockConfigEntry,
    old_fps: int,
) -> None:
    """A hub's selection from the old frame-rate offer still records after the upgrade."""
    raw = _store_old_state(hass_storage, mock_config_entry, old_fps)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    bridge = mock_config_entry.runtime_data
    accessory = bridge.accessory
    assert accessory.selection is not None
    assert accessory.selection.video.attributes[0].frame_rate == old_fps
    assert accessory.state.selected_configuration == raw
    assert accessory.state.recording_possible
    # Re-tied to the current offer, and stored so.
    assert accessory.state.offer_fingerprint == accessory.offer.fingerprint
    assert bridge._stored["camera"]["offer_fingerprint"] == accessory.offer.fingerprint
    if old_fps == 30:
        # A 30 fps camera's offer is byte for byte what older versions offered.
        assert accessory.offer.fingerprint == _old_offer(30).fingerprint
    await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()


@pytest.mark.parametrize("entry_options", [{**DEFAULT_OPTIONS, OPT_MAX_RESOLUTION: "720p"}])
async def test_a_stored_selection_the_offer_no_longer_allows_is_dropped(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: Any,
    mock_config_entry: MockConfigEntry,
) -> None:
    """A 1080p selection under options that now offer 720p only: the hub must select again."""
    _store_old_state(hass_storage, mock_config_entry, 30)
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    state = mock_config_entry.runtime_data.accessory.state
    assert state.selected_configuration is None
    assert not state.recording_possible
    assert state.recording_active  # the user's switches are kept
    await hass.config_entries.async_unload(mock_config_entry.entry_id)
    await hass.async_block_till_done()


async def _select(hub: HubController, value: str) -> None:
    """Select ``value`` and switch the camera to "Stream & allow recording"."""
    for service, char, written in (
        ("204", "209", value),
        ("21A", "21B", 1),
        ("110", "B0", 1),
        ("204", "B0", 1),
    ):
        assert await hub.write(hub.iid(service, char), written) == {}


async def test_an_offer_change_keeps_a_selection_that_still_fits(
    hass: HomeAssistant, init_integration: MockConfigEntry, hub: HubController
) -> None:
    """The camera's 1080p goes away: a 720p selection keeps recording, 1080p is dropped."""
    bridge = init_integration.runtime_data
    accessory = bridge.accessory
    selection_720 = hub_write(1280, 720, 30)
    await _select(hub, selection_720)
    await hass.async_block_till_done()
    assert accessory.state.recording_possible
    enabled: list[bool] = []
    original = bridge.recorder.async_set_enabled

    async def spy(on: bool, selection: Any) -> None:
        enabled.append(on)
        await original(on, selection)

    bridge.recorder.async_set_enabled = spy
    only_720 = build_offer(
        replace(CAMERA_1080P, width=1280, height=720),
        max_height=1080,
        prebuffer_ms=4000,
        doorbell=True,
    )
    accessory.update_offer(only_720)
    await hass.async_block_till_done()
    assert accessory.selection is not None
    assert accessory.state.offer_fingerprint == only_720.fingerprint
    assert (await hub.read(hub.iid("204", "209")))["value"] == selection_720
    published = await hub.read(hub.iid("204", "206"))
    assert base64.b64decode(published["value"]) == only_720.encoded[1]
    assert enabled == []  # the prebuffer was never stopped

    # A 1080p selection does not fit an offer without 1080p: dropped, recording waits.
    full = build_offer(CAMERA_1080P, max_height=1080, prebuffer_ms=4000, doorbell=True)
    accessory.update_offer(full)
    assert await hub.write(hub.iid("204", "209"), hub_write()) == {}
    await hass.async_block_till_done()
    assert accessory.state.recording_possible
    accessory.update_offer(only_720)
    await hass.async_block_till_done()
    assert accessory.selection is None
    assert not accessory.state.recording_possible
    assert enabled[-1] is False


async def test_frame_rates_never_change_the_offer(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """Reports at any frame rate, for as long as they come, leave the offer alone."""
    bridge = init_integration.runtime_data
    fingerprint = bridge.accessory.offer.fingerprint
    clock = _Clock()
    with patch("custom_components.hksv.camera_offer.time", clock):
        for fps in [28.7, 23.98, 15.0, 7.5, 60.0, 12.5, 29.97, 30.0, None] * 10:
            clock.now += 16.0
            bridge.offer.async_source_profile(replace(CAMERA_1080P, fps=fps))
    assert bridge.accessory.offer.fingerprint == fingerprint


class _Clock:
    """Stands in for the ``time`` module in bridge.py (only ``monotonic``)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


async def test_a_new_camera_format_changes_the_offer_once_it_lasted(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """A 1080p camera sending 720p: the offer follows only after the change lasted."""
    bridge = init_integration.runtime_data
    fingerprint = bridge.accessory.offer.fingerprint
    source_720 = replace(CAMERA_1080P, width=1280, height=720)
    clock = _Clock()
    with patch("custom_components.hksv.camera_offer.time", clock):
        # A short switch (a camera rebooting into its substream) comes back to 1080p.
        for _ in range(OFFER_CHANGE_MIN_REPORTS + 5):
            bridge.offer.async_source_profile(source_720)
            clock.now += 30.0
        bridge.offer.async_source_profile(CAMERA_1080P)
        assert bridge.accessory.offer.fingerprint == fingerprint
        # Many reports in a short time are not enough either.
        for _ in range(OFFER_CHANGE_MIN_REPORTS * 4):
            bridge.offer.async_source_profile(source_720)
            clock.now += 1.0
        assert bridge.accessory.offer.fingerprint == fingerprint
        clock.now += OFFER_CHANGE_SETTLE_SECONDS
        bridge.offer.async_source_profile(source_720)
    changed = bridge.accessory.offer
    assert changed.fingerprint != fingerprint
    attributes = changed.video.codec_configurations[0].attributes
    assert attributes == [VideoAttributes(1280, 720, 30)]
    assert bridge._stored["source"]["height"] == 720
    await hass.async_block_till_done()
    assert init_integration.state is ConfigEntryState.LOADED


def test_the_old_selection_reads_as_the_hub_wrote_it() -> None:
    """The older offer's selection parses (the upgrade tests rely on it)."""
    raw = base64.b64decode(choose_selection(*_old_offer(15).encoded))
    assert parse_selection(raw).video.attributes[0].frame_rate == 15
