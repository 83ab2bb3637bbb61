"""The archive on the real stack: a motion event recorded to the hub emulator, also on disk.

Same setup as test_recording.py (real stream worker on a paced camera, real HAP server,
aiohomekit hub, HDS over TCP). The archived file must hold exactly the frames the hub got;
a disk that refuses every write must leave the hub's clip untouched.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.hksv.archive import writer as writer_module
from custom_components.hksv.events import EVENT_RECORDING_FINISHED
from custom_components.hksv.media.fmp4 import iter_boxes
from tests.e2e import test_recording as recording_tests
from tests.e2e.test_recording import CASES, _check_clip, _record_event
from tests.hub.emulator import HomeHub
from tests.media import decode_counters

# The recording tests' fixtures: the paced camera, its stream source and the paired hub.
case = recording_tests.case
home_hub = recording_tests.home_hub
known_source = recording_tests.known_source
paced_source = recording_tests.paced_source
stream_source = recording_tests.stream_source
with_doorbell = recording_tests.with_doorbell


def _media_files(hass: HomeAssistant) -> list[Path]:
    root = Path(hass.config.path("media"))
    return sorted(p for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("case", ["h264_2s_gop_ll_hls_copy"], indirect=True)
async def test_a_recording_at_the_hub_is_archived_frame_for_frame(
    hass: HomeAssistant, init_integration: MockConfigEntry, home_hub: HomeHub, case: Any
) -> None:
    """The finalized MP4 holds the frames the hub received, in order, index first."""
    events = async_capture_events(hass, EVENT_RECORDING_FINISHED)
    bridge = init_integration.runtime_data
    recording, event_counter = await _record_event(hass, bridge, home_hub)
    checked = _check_clip(
        recording, CASES["h264_2s_gop_ll_hls_copy"], event_counter, bridge.accessory.selection
    )
    await hass.async_block_till_done()
    assert len(events) == 1
    url = events[0].data["url"]
    assert url is not None
    video = Path(hass.config.path("media")) / url.removeprefix("/media/local/")
    content = await hass.async_add_executor_job(video.read_bytes)
    top = [box.type for box in iter_boxes(content)]
    assert top.index(b"ftyp") < top.index(b"moov") < top.index(b"mdat")
    # The hub may close mid-fragment: the archive holds every fragment that was sent.
    archived = await hass.async_add_executor_job(decode_counters, video)
    assert archived[: len(checked.counters)] == checked.counters
    sidecar = json.loads(await hass.async_add_executor_job(video.with_suffix(".json").read_text))
    assert sidecar["outcome"] == "completed"
    assert sidecar["mode"] == "copy"
    assert video.with_suffix(".jpg").exists()


@pytest.mark.parametrize("case", ["h264_2s_gop_ll_hls_copy"], indirect=True)
async def test_a_disk_that_refuses_writes_leaves_the_hub_clip_whole(
    hass: HomeAssistant, init_integration: MockConfigEntry, home_hub: HomeHub, case: Any
) -> None:
    """ENOSPC on every archive write: the hub's clip passes every check; nothing is kept."""
    events = async_capture_events(hass, EVENT_RECORDING_FINISHED)
    bridge = init_integration.runtime_data
    refused: list[int] = []

    def refuse(self: Any, batch: list[bytes]) -> None:
        refused.append(len(batch))
        raise OSError(28, "No space left on device")

    with patch.object(writer_module.ArchiveClip, "_write_batch", refuse):
        recording, event_counter = await _record_event(hass, bridge, home_hub)
        await hass.async_block_till_done()
    _check_clip(recording, case, event_counter, bridge.accessory.selection)
    assert refused
    summary = bridge.recorder.last_recording
    assert summary.outcome.value == "completed"
    assert summary.hub_close_reason == "NORMAL"
    assert events[0].data["url"] is None
    assert "No space left on device" in (bridge.archive.last_error or "")
    assert _media_files(hass) == []
