"""The recording delegate on its own: ceilings, audio, slow hubs and format changes.

Real HA stream-worker GOPs are played through a stand-in prebuffer so minutes of media run
in a moment (the end-to-end tests in tests/e2e use the real worker in real time).
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
import dataclasses
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.const import DEFAULT_OPTIONS, DOMAIN
from custom_components.hksv.hap.recording_config import SourceVideo, build_offer, parse_selection
from custom_components.hksv.hds import DataSendCloseReason, HDSProtocolError, RecordingPacket
from custom_components.hksv.media.fmp4 import iter_boxes, parse_fragments, parse_init
from custom_components.hksv.recording import feed as feed_module, recorder as recorder_module
from custom_components.hksv.recording.recorder import RecordingController, RecordingOutcome
from custom_components.hksv.source.gop import Gop
from custom_components.hksv.source.gop_buffer import LiveView
from tests.hub.emulator import choose_selection
from tests.media import ClipSpec
from tests.recording.ha_parts import assemble

SPEC = ClipSpec(seconds=40.0, width=640, height=360, fps=25, gop_seconds=2.0)
OTHER_SIZE = ClipSpec(seconds=6.0, width=320, height=180, fps=25, gop_seconds=2.0)


class StandInPrebuffer:
    """The parts of Prebuffer the recorder uses, fed by the test."""

    def __init__(self, history: Sequence[Gop]) -> None:
        """Hold ``history`` as the buffered GOPs."""
        self.gops = tuple(history)
        self.running = True
        self.keep_seconds = 8.0
        self.worker_error: str | None = None
        self.stale = False  # the camera sends
        self._on_gop: Callable[[Gop], None] | None = None
        self.pending: Gop | None = None  # the GOP in progress

    @property
    def has_keyframe(self) -> bool:
        """Return True if a recording can start now."""
        return bool(self.gops)

    def open_live(self, on_gop: Any = None, on_part: Any = None, on_error: Any = None) -> LiveView:
        """Snapshot and follow new GOPs."""
        if on_gop is not None:
            self._on_gop = on_gop
        return LiveView(self.gops, self.pending, lambda: None)

    def subscribe(self, listener: Any) -> Callable[[], None]:
        """Nothing to follow for profiling."""
        return lambda: None

    def push(self, gop: Gop) -> None:
        """Deliver a live GOP."""
        assert self._on_gop is not None
        self._on_gop(gop)

    async def async_start(self) -> None:
        """Already running."""

    async def async_stop(self) -> None:
        """Stop."""
        self.running = False


@pytest.fixture(scope="module")
def clip_gops(ha_segments: Any) -> list[Gop]:
    """Return the GOPs of 40 s of H.264 + AAC as HA's worker delivers them."""
    return assemble(
        (segment, part.data) for segment in ha_segments(SPEC, True) for part in segment.parts
    )


def _selection(options: dict[str, Any] | None = None) -> Any:
    """Return what a hub selects from the offer for this camera."""
    offer = build_offer(
        SourceVideo(640, 360, 25.0, "aac-lc", 32000, 1),
        max_height=1080,
        prebuffer_ms=4000,
        doorbell=False,
    )
    return parse_selection(base64.b64decode(choose_selection(*offer.encoded)))


def _controller(
    hass: HomeAssistant, history: Sequence[Gop]
) -> tuple[RecordingController, StandInPrebuffer]:
    """Return a recorder on a stand-in prebuffer."""
    controller = RecordingController(
        hass,
        camera_entity_id="camera.test",
        name="Test",
        entry=MockConfigEntry(domain=DOMAIN, entry_id="entry"),
        options=dict(DEFAULT_OPTIONS),
        on_update=lambda: None,
        on_source_profile=lambda _source: None,
    )
    stand_in = StandInPrebuffer(history)
    controller.prebuffer = stand_in  # type: ignore[assignment]
    return controller, stand_in


def _loop(gops: Sequence[Gop], times: int) -> list[Gop]:
    """Return the clip's GOPs repeated, each repetition a new epoch (a restarted camera)."""
    return [dataclasses.replace(gop, epoch=100 + n) for n in range(times) for gop in gops]


async def _collect(
    stream: Any, stand_in: StandInPrebuffer, live: Sequence[Gop]
) -> list[RecordingPacket]:
    """Open the stream, deliver every live GOP at once, and consume it to its end."""
    with patch.object(recorder_module, "MAX_QUEUED_GOPS", len(live) + 1):
        packets = [await anext(stream)]  # the open takes its snapshot and subscribes here
        for gop in live:
            stand_in.push(gop)
        packets.extend([packet async for packet in stream])
    return packets


async def test_three_minute_ceiling_ends_on_a_real_fragment(
    hass: HomeAssistant, clip_gops: list[Gop]
) -> None:
    """A never-ending event stops at 3 minutes with endOfStream on a real fragment."""
    controller, stand_in = _controller(hass, clip_gops[:4])
    stream = controller.open_stream(7, _selection(), True)
    packets = await _collect(stream, stand_in, _loop(clip_gops[4:], 6))
    assert [p.is_last for p in packets[:-1]] == [False] * (len(packets) - 1)
    last = packets[-1]
    assert last.is_last
    assert [box.type for box in iter_boxes(bytes(last.data))] == [b"moof", b"mdat"]
    init = parse_init(bytes(packets[0].data))
    assert init.video is not None
    total = (
        sum(
            sum(s.duration for s in parse_fragments(bytes(p.data), init)[init.video.track_id])
            for p in packets[1:]
        )
        / init.video.timescale
    )
    assert 180 <= total < 184
    controller.stream_closed(7, DataSendCloseReason.NORMAL)
    assert controller.last_recording is not None
    assert controller.last_recording.outcome is RecordingOutcome.MAX_DURATION


async def test_audio_off_strips_the_audio_track(hass: HomeAssistant, clip_gops: list[Gop]) -> None:
    """RecordingAudioActive = 0: the init and every fragment carry video only."""
    controller, stand_in = _controller(hass, clip_gops[:6])
    stream = controller.open_stream(1, _selection(), False)
    packets = [await anext(stream)]
    for gop in clip_gops[6:12]:
        stand_in.push(gop)
    packets += [await anext(stream), await anext(stream)]
    await stream.aclose()
    init = parse_init(bytes(packets[0].data))
    assert init.audio is None
    for packet in packets[1:]:
        assert set(parse_fragments(bytes(packet.data), init)) == {init.video.track_id}


async def test_a_hub_that_falls_behind_ends_the_clip(
    hass: HomeAssistant, clip_gops: list[Gop]
) -> None:
    """Live GOPs piling up beyond the bound end the recording with a failure, not growth."""
    controller, stand_in = _controller(hass, clip_gops[:4])
    stream = controller.open_stream(2, _selection(), True)
    with patch.object(recorder_module, "MAX_QUEUED_GOPS", 3):
        await anext(stream)
        for gop in _loop(clip_gops, 1)[:5]:
            stand_in.push(gop)
        with pytest.raises(HDSProtocolError) as failure:
            async for _packet in stream:
                pass
    assert failure.value.reason is DataSendCloseReason.UNEXPECTED_FAILURE
    controller.stream_closed(2, DataSendCloseReason.UNEXPECTED_FAILURE)
    assert controller.last_recording.outcome is RecordingOutcome.FAILED


async def test_video_format_change_ends_a_copied_clip(
    hass: HomeAssistant, clip_gops: list[Gop], ha_segments: Any
) -> None:
    """A camera that comes back at another size cannot continue a copied clip."""
    other = assemble(
        (segment, part.data) for segment in ha_segments(OTHER_SIZE, True) for part in segment.parts
    )
    controller, stand_in = _controller(hass, clip_gops[:4])
    stream = controller.open_stream(3, _selection(), True)
    with pytest.raises(HDSProtocolError, match="format changed"):
        await _collect(stream, stand_in, [dataclasses.replace(g, epoch=9) for g in other])


def test_an_overflowing_feed_frees_its_media_at_once() -> None:
    """Past its bound a feed drops what it holds and ends the clip at the next read."""
    feed: feed_module.LiveFeed[int] = feed_module.LiveFeed(3)
    for item in range(10):
        feed.put(item)
    assert feed.overflowed
    assert feed._queue.qsize() == 1  # only what wakes the reader

    async def read() -> None:
        async for _item in feed.items():
            pass

    with pytest.raises(HDSProtocolError, match="not keeping up"):
        asyncio.run(read())


async def test_camera_stall_ends_a_copied_clip_on_its_last_frames(
    hass: HomeAssistant, clip_gops: list[Gop]
) -> None:
    """No media for the stall limit: the GOP in progress goes out as the last fragment."""
    controller, stand_in = _controller(hass, clip_gops[:4])
    stream = controller.open_stream(4, _selection(), True)
    with patch.object(recorder_module, "MEDIA_STALL_SECONDS", 0.3):
        packets = [await anext(stream)]
        partial = clip_gops[4]
        frames = partial.video[:10]
        stand_in.pending = dataclasses.replace(
            partial,
            video=frames,
            audio=[],
            duration=frames[-1].decode_time + frames[-1].duration - partial.start,
            ended_by_keyframe=False,
        )
        packets += [packet async for packet in stream]
    assert [p.is_last for p in packets] == [False] * (len(packets) - 1) + [True]
    init = parse_init(bytes(packets[0].data))
    last = parse_fragments(bytes(packets[-1].data), init)[init.video.track_id]
    assert len(last) == 10
    assert last[0].is_sync
    controller.stream_acknowledged(4)
    summary = controller.last_recording
    assert summary.outcome is RecordingOutcome.CAMERA_STREAM_LOST
    # The limit is never under 1.5 keyframe intervals (2 s GOPs here).
    assert summary.error == "camera stream lost: no video for 3 s"


async def test_camera_stall_with_nothing_left_fails_the_clip(
    hass: HomeAssistant, clip_gops: list[Gop]
) -> None:
    """A stall right after a fragment boundary leaves nothing to end on: close with a reason."""
    controller, _stand_in = _controller(hass, clip_gops[:4])
    stream = controller.open_stream(5, _selection(), True)
    with (
        patch.object(recorder_module, "MEDIA_STALL_SECONDS", 0.3),
        pytest.raises(HDSProtocolError, match="camera stream lost"),
    ):
        async for _packet in stream:
            pass
    controller.stream_closed(5, DataSendCloseReason.UNEXPECTED_FAILURE)
    assert controller.last_recording.outcome is RecordingOutcome.CAMERA_STREAM_LOST
