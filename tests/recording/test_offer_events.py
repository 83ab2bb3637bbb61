"""What the recorder does for the offer and for refused opens (issue 13, item 1).

- Profile reports (which may change the offer) leave Home Assistant's part callback first.
- An open refused for want of a selection shows in *Last recording* and in the
  ``hksv_recording_finished`` event; a second in a row raises a repair that the next
  successful recording clears. Real HAP server, real HDS, aiohomekit hub emulator; the
  recorder plays real stream-worker GOPs from a stand-in prebuffer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.hksv.const import DEFAULT_OPTIONS, DOMAIN
from custom_components.hksv.events import EVENT_RECORDING_FINISHED
from custom_components.hksv.hap.recording_config import SourceVideo
from custom_components.hksv.hds import DataSendCloseReason
from custom_components.hksv.issues import not_configured_issue_id
from custom_components.hksv.recording.recorder import RecordingController
from custom_components.hksv.recording.reports import REFUSALS_FOR_REPAIR
from custom_components.hksv.source.gop import Gop
from tests.hub.emulator import HomeHub, media_seconds
from tests.media import ClipSpec
from tests.recording.ha_parts import assemble
from tests.recording.test_recorder import StandInPrebuffer
from tests.test_accessory import hub_write

SPEC = ClipSpec(seconds=20.0, width=640, height=360, fps=25, gop_seconds=2.0)
# The fields hksv_recording_finished always had; a refused open fills every one.
EVENT_FIELDS = {
    "entry_id", "name", "camera_entity_id", "outcome", "reason", "error", "duration", "mode",
    "mode_reasons", "mode_reason_codes", "fragments", "bytes", "started_at", "ended_at",
    "media_content_id", "url", "thumbnail_url",
}  # fmt: skip


async def test_profile_reports_leave_the_part_callback(
    hass: HomeAssistant, ha_segments: Any
) -> None:
    """The source profile (and with it any offer update) is never reported inside a part."""
    inside_part = False
    reports: list[tuple[bool, SourceVideo]] = []
    controller = RecordingController(
        hass,
        camera_entity_id="camera.test",
        name="Test",
        entry=MockConfigEntry(domain=DOMAIN, entry_id="entry"),
        options=dict(DEFAULT_OPTIONS),
        on_update=lambda: None,
        on_source_profile=lambda source: reports.append((inside_part, source)),
    )
    prebuffer = controller.prebuffer
    for segment in ha_segments(SPEC, True):
        for part in segment.parts:
            inside_part = True
            prebuffer._on_part(segment, part.data)  # what HA's part callback calls
            inside_part = False
            await asyncio.sleep(0)  # the loop runs other callbacks between two parts
    assert len(reports) >= 2  # the second GOP, then every PROFILE_EVERY_GOPS
    assert [inside for inside, _ in reports] == [False] * len(reports)
    assert reports[0][1].width == SPEC.width
    await controller.async_stop()


class _Prebuffer(StandInPrebuffer):
    """The stand-in with what the bridge reads of a prebuffer."""

    source_problem: str | None = None
    buffered_seconds = 10.0

    async def async_close(self) -> None:
        """Nothing to close."""

    def diagnostics(self) -> dict[str, Any]:
        """Return nothing."""
        return {}


@pytest.fixture
async def stand_in(
    hass: HomeAssistant, init_integration: MockConfigEntry, ha_segments: Any
) -> _Prebuffer:
    """Replace the entry's prebuffer by 10 s of real stream-worker GOPs."""
    gops: list[Gop] = assemble(
        (segment, part.data) for segment in ha_segments(SPEC, True) for part in segment.parts
    )
    recorder = init_integration.runtime_data.recorder
    await recorder.prebuffer.async_close()
    stand_in = _Prebuffer(gops[:5])
    recorder.prebuffer = stand_in
    return stand_in


@pytest.fixture
async def home_hub(
    hass: HomeAssistant, init_integration: MockConfigEntry, session_keys: None
) -> AsyncGenerator[HomeHub]:
    """A paired hub that turned recording on but never selected a configuration."""
    bridge = init_integration.runtime_data
    hub = HomeHub(bridge.port)
    await hub.pair(bridge.setup_code)
    for service, char in (("21A", "21B"), ("110", "B0"), ("204", "B0")):
        assert await hub.write(hub.iid(service, char), 1) == {}
    yield hub
    await hub.close()


async def test_a_refused_open_is_shown_and_a_repeated_one_repaired(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    stand_in: _Prebuffer,
    home_hub: HomeHub,
) -> None:
    """Last recording and the event say not_configured; the repair comes and goes."""
    bridge = init_integration.runtime_data
    events = async_capture_events(hass, EVENT_RECORDING_FINISHED)
    issue_id = not_configured_issue_id(init_integration.entry_id)
    registry = ir.async_get(hass)
    client = await home_hub.open_data_stream()

    for stream_id in range(1, REFUSALS_FOR_REPAIR + 1):
        assert registry.async_get_issue(DOMAIN, issue_id) is None
        response = await client.open_recording(stream_id)
        assert response.message == {"status": int(DataSendCloseReason.INVALID_CONFIGURATION)}
        await hass.async_block_till_done()
        assert hass.states.get("sensor.front_door_last_recording").state == "not_configured"
        event = events[-1].data
        assert set(event) == EVENT_FIELDS
        assert event["outcome"] == "not_configured"
        assert event["reason"] == "INVALID_CONFIGURATION"
        assert "not selected a recording configuration" in event["error"]
        assert (event["duration"], event["fragments"], event["bytes"]) == (0.0, 0, 0)
    assert len(events) == REFUSALS_FOR_REPAIR
    issue = registry.async_get_issue(DOMAIN, issue_id)
    assert issue is not None
    assert issue.translation_key == "recording_not_configured"
    assert issue.translation_placeholders == {"name": "Front door", "refusals": "2"}
    assert not issue.is_fixable
    assert bridge.recorder.diagnostics()["not_configured_in_a_row"] == REFUSALS_FOR_REPAIR

    # The user re-selects in the Home app: the hub writes a selection, the next event records.
    assert await home_hub.write(home_hub.iid("204", "209"), hub_write()) == {}
    await hass.async_block_till_done()
    stream_id = REFUSALS_FOR_REPAIR + 1
    assert (await client.open_recording(stream_id)).status == 0
    recording = client.recordings[stream_id]
    await client.wait_until(lambda: media_seconds(recording) >= 4)
    assert registry.async_get_issue(DOMAIN, issue_id) is not None  # not before it succeeded
    client.close_stream(stream_id, 0)
    async with asyncio.timeout(30):
        while bridge.recorder.streaming:
            await asyncio.sleep(0.05)
    await hass.async_block_till_done()
    assert events[-1].data["outcome"] == "completed"
    assert hass.states.get("sensor.front_door_last_recording").state == "completed"
    assert registry.async_get_issue(DOMAIN, issue_id) is None
    assert bridge.recorder.diagnostics()["not_configured_in_a_row"] == 0
    await client.close()
