"""Transcode admission for recordings: copy or refuse over the budget, release on every path.

Real HA stream-worker GOPs and parts through the recorder's stand-in prebuffer
(tests/recording/test_recorder.py), real PyAV transcoders, a budget with a configured capacity.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any
from unittest.mock import patch

from homeassistant.core import Event, HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.const import (
    DEFAULT_OPTIONS,
    DOMAIN,
    OPT_VIDEO_MODE,
    VIDEO_MODE_TRANSCODE,
)
from custom_components.hksv.hds import DataSendCloseReason, HDSProtocolError
from custom_components.hksv.media.budget import TranscodeBudget
from custom_components.hksv.media.fmp4 import parse_init
from custom_components.hksv.recording import recorder as recorder_module
from custom_components.hksv.recording.recorder import RecordingController, RecordingOutcome
from custom_components.hksv.source.gop import Gop
from custom_components.hksv.source.gop_buffer import LiveView
from custom_components.hksv.source.part import MediaPart
from tests.recording.ha_parts import assemble
from tests.recording.test_recorder import SPEC, StandInPrebuffer, _selection

pytestmark = pytest.mark.usefixtures("short_admission_wait")

CAMERA_LABEL = "another camera's recording"


@pytest.fixture(scope="module")
def clip_gops(ha_segments: Any) -> list[Gop]:
    """Return the GOPs of 40 s of H.264 + AAC as HA's worker delivers them."""
    return assemble(
        (segment, part.data) for segment in ha_segments(SPEC, True) for part in segment.parts
    )


@pytest.fixture
def short_admission_wait() -> Any:
    """Wait 0.2 s for room instead of 1.5 s."""
    with patch.object(recorder_module, "ADMISSION_WAIT_SECONDS", 0.2):
        yield


class PartsPrebuffer(StandInPrebuffer):
    """The stand-in prebuffer, also handing out live parts."""

    def __init__(self, history: Any) -> None:
        """Hold ``history``; no part listener yet."""
        super().__init__(history)
        self.on_part: Any = None

    def open_live(self, on_gop: Any = None, on_part: Any = None, on_error: Any = None) -> LiveView:
        """Snapshot and follow new GOPs and parts."""
        if on_part is not None:
            self.on_part = on_part
        return super().open_live(on_gop, None)


def _controller(
    hass: HomeAssistant, history: list[Gop], budget: TranscodeBudget, **options: Any
) -> tuple[RecordingController, PartsPrebuffer]:
    """Return a recorder on a stand-in prebuffer with ``budget``."""
    controller = RecordingController(
        hass,
        camera_entity_id="camera.test",
        name="Test",
        entry=MockConfigEntry(domain=DOMAIN, entry_id="entry"),
        options={**DEFAULT_OPTIONS, **options},
        on_update=lambda: None,
        on_source_profile=lambda _source: None,
    )
    stand_in = PartsPrebuffer(history)
    controller.prebuffer = stand_in  # type: ignore[assignment]
    controller.budget = budget
    return controller, stand_in


def _smaller_selection() -> Any:
    """Return a selection below the camera's 640x360: copying cannot work, only transcoding."""
    selection = _selection()
    attributes = dataclasses.replace(selection.video.attributes[0], width=480, height=270)
    return dataclasses.replace(
        selection, video=dataclasses.replace(selection.video, attributes=[attributes])
    )


def _full_budget() -> tuple[TranscodeBudget, Any]:
    """Return a budget with room for one small transcode, taken by another camera."""
    budget = TranscodeBudget(capacity=0.2)
    held = budget.try_reserve(0.15, CAMERA_LABEL)
    assert held is not None
    return budget, held


async def test_over_budget_copies_when_the_hub_can_use_the_copy(
    hass: HomeAssistant, clip_gops: list[Gop]
) -> None:
    """'Always transcode' over the budget: copied video, with the reason in Last recording."""
    budget, held = _full_budget()
    controller, _stand_in = _controller(
        hass, clip_gops[:4], budget, **{OPT_VIDEO_MODE: VIDEO_MODE_TRANSCODE}
    )
    stream = controller.open_stream(1, _selection(), True)
    init = parse_init(bytes((await anext(stream)).data))
    assert init.video is not None
    assert (init.video.width, init.video.height) == (SPEC.width, SPEC.height)  # the camera's
    summary = controller._active[1]
    assert summary.mode == "copy video, encode audio"
    codes = [reason["code"] for reason in summary.mode_reason_codes]
    assert codes[-1] == "transcode_capacity"
    assert CAMERA_LABEL in summary.mode_reasons[-1]
    assert budget.held == [CAMERA_LABEL]  # a copy takes nothing
    await stream.aclose()
    held.release()
    # With room again, the same recording is transcoded and holds its share while it runs.
    stream = controller.open_stream(2, _selection(), True)
    await anext(stream)
    assert controller._active[2].mode == "transcode"
    assert controller._active[2].encoder == "libx264"
    assert budget.held == ["Test recording 2"]
    await stream.aclose()
    assert budget.held == []


async def test_over_budget_is_refused_when_copying_cannot_work(
    hass: HomeAssistant, clip_gops: list[Gop]
) -> None:
    """A clip that must be transcoded and does not fit is refused, and says why."""
    budget, held = _full_budget()
    controller, _stand_in = _controller(hass, clip_gops[:4], budget)
    events: list[Event] = []
    hass.bus.async_listen("hksv_recording_finished", events.append)
    stream = controller.open_stream(3, _smaller_selection(), True)
    with pytest.raises(HDSProtocolError) as refused:
        await anext(stream)
    assert refused.value.reason is DataSendCloseReason.UNEXPECTED_FAILURE
    controller.stream_closed(3, DataSendCloseReason.UNEXPECTED_FAILURE)
    await hass.async_block_till_done()
    summary = controller.last_recording
    assert summary is not None and summary.outcome is RecordingOutcome.FAILED
    assert summary.error is not None
    assert summary.error.startswith("not transcoded: this machine's transcoding capacity")
    assert CAMERA_LABEL in summary.error
    assert events[-1].data["error"] == summary.error
    assert budget.held == [CAMERA_LABEL] and budget.refused == 1
    held.release()
    stream = controller.open_stream(4, _smaller_selection(), True)
    await anext(stream)
    assert budget.held == ["Test recording 4"]
    await stream.aclose()
    assert budget.held == []


async def test_first_transcode_is_admitted_even_above_capacity(
    hass: HomeAssistant, clip_gops: list[Gop]
) -> None:
    """A machine too slow for one transcode still tries it (nothing else runs)."""
    budget = TranscodeBudget(capacity=0.01)
    controller, _stand_in = _controller(hass, clip_gops[:4], budget)
    stream = controller.open_stream(5, _smaller_selection(), True)
    await anext(stream)
    assert budget.held == ["Test recording 5"]
    await stream.aclose()
    assert budget.held == []


async def test_reservation_is_released_on_error(hass: HomeAssistant, clip_gops: list[Gop]) -> None:
    """A transcoder that fails mid-clip (unreadable input) frees its share."""
    budget = TranscodeBudget(capacity=1.0)
    controller, stand_in = _controller(hass, clip_gops[:4], budget)
    stream = controller.open_stream(6, _smaller_selection(), True)
    await anext(stream)
    assert budget.held == ["Test recording 6"]
    garbage = MediaPart(1, clip_gops[0].init, b"\x00\x00\x00\x10moofgarbagegarb", [], [], 0.0)
    for _ in range(3):
        stand_in.on_part(garbage)
    with pytest.raises(HDSProtocolError, match="unreadable input fragments"):
        async for _packet in stream:
            pass
    assert budget.held == []


async def test_reservation_is_released_on_cancellation(
    hass: HomeAssistant, clip_gops: list[Gop]
) -> None:
    """The task sending a transcoded clip is cancelled mid-clip: its share is freed."""
    budget = TranscodeBudget(capacity=1.0)
    controller, _stand_in = _controller(hass, clip_gops[:4], budget)
    stream = controller.open_stream(7, _smaller_selection(), True)
    await anext(stream)

    async def send() -> None:
        async for _packet in stream:
            pass

    task = asyncio.get_running_loop().create_task(send())
    await asyncio.sleep(0.5)  # the pre-roll is being encoded; live media is awaited
    assert not task.done()
    assert budget.held == ["Test recording 7"]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget.held == []


async def test_cancelled_while_waiting_for_room_holds_nothing(
    hass: HomeAssistant, clip_gops: list[Gop]
) -> None:
    """An open cancelled while it waits for the budget leaves nothing reserved."""
    budget, held = _full_budget()
    controller, _stand_in = _controller(hass, clip_gops[:4], budget)
    stream = controller.open_stream(8, _smaller_selection(), True)
    with patch.object(recorder_module, "ADMISSION_WAIT_SECONDS", 30):
        task = asyncio.get_running_loop().create_task(anext(stream))
        await asyncio.sleep(0.3)
        assert not task.done()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert budget.held == [CAMERA_LABEL]
    held.release()
    assert budget.held == []
