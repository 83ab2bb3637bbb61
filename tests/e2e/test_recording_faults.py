"""Faults a real camera and a real hub show, recorded on the real stack (issue 10, items 4-8).

The camera is a ``LiveFeedSource``: one paced MPEG-TS feed that Home Assistant's real stream
worker joins mid-GOP, which can stall (a camera that hangs) or drop its clients (a reboot).
The hub is the aiohomekit emulator over real TCP (HAP and HDS).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import timedelta
import io
import logging
from typing import Any
from unittest.mock import patch

import av
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.hksv.const import DEFAULT_OPTIONS, OPT_VIDEO_MODE, VIDEO_MODE_TRANSCODE
from custom_components.hksv.media.fmp4 import parse_init
from custom_components.hksv.recording import (
    av_encode,
    recorder as recorder_module,
    transcode as transcode_module,
)
from custom_components.hksv.source import gop_buffer as gop_buffer_module
from custom_components.hksv.source.attachment import WATCHDOG_INTERVAL_SECONDS
from tests import harness
from tests.conftest import MOTION_ID, FakeCamera
from tests.e2e.live_source import LiveFeedSource
from tests.e2e.source import PacedSource
from tests.harness import assert_fragments_contiguous, clip_file, live_camera, recording_hub
from tests.hub.emulator import HomeHub, media_seconds
from tests.hub.hds_client import HDSClient
from tests.media import ClipSpec
from tests.ports import free_port

FPS = 25
PREBUFFER_S = 4.0
GOP_2S = ClipSpec(seconds=40.0, fps=FPS, gop_seconds=2.0)
# A camera that starts every client with a keyframe (as many RTSP cameras do): its first GOP
# after a (re)connect is short, the rest are exact 2 s GOPs.
IDR_ON_CONNECT = ClipSpec(seconds=60.0, fps=FPS, gop_seconds=2.0, first_gop_seconds=1.2)


@pytest.fixture
def spec(request: pytest.FixtureRequest) -> ClipSpec:
    """Return the camera's clip (parametrized indirectly; 2 s GOPs by default)."""
    return getattr(request, "param", GOP_2S)


# A fresh install (the camera is probed at startup), no doorbell.
known_source = harness.probe_at_startup
with_doorbell = harness.no_doorbell


@pytest.fixture
async def live_feed(
    hass: HomeAssistant,
    socket_enabled: None,
    spec: ClipSpec,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncGenerator[LiveFeedSource | PacedSource]:
    """Serve the clip as a live feed (joined mid-GOP) and set up `stream` (LL-HLS).

    A clip with its own first GOP is served from its start to every client instead, like a
    camera that sends a keyframe when a client connects.
    """
    clip = await clip_file(hass, tmp_path_factory.getbasetemp() / "fault-clips", spec)
    kind = LiveFeedSource if spec.first_gop_seconds is None else PacedSource
    async with live_camera(hass, kind(clip, free_port())) as source:
        yield source


@pytest.fixture
def stream_source(live_feed: LiveFeedSource | PacedSource) -> str:
    """Point the test camera at the live feed."""
    return live_feed.url


@pytest.fixture
async def home_hub(
    init_integration: MockConfigEntry, session_keys: None
) -> AsyncGenerator[HomeHub]:
    """Pair a hub, wait for the camera probe, select from the offer, enable recording."""
    async with recording_hub(init_integration.runtime_data) as hub:
        yield hub


async def _wait_for(condition: Any, timeout: float = 90) -> None:
    """Wait until ``condition()`` holds (generous: real time under load)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.2)


async def _open(hub: HomeHub, stream_id: int = 1, **connect: Any) -> HDSClient:
    """Open an HDS connection and a recording stream on it."""
    client = await hub.open_data_stream(**connect)
    client.timeout = 90
    response = await client.open_recording(stream_id)
    assert response.status == 0, response
    return client


def _coded_sizes(packets: list[bytes]) -> set[tuple[int, int]]:
    """Return the decoded picture sizes of a clip."""
    with av.open(io.BytesIO(b"".join(packets))) as container:
        return {(frame.width, frame.height) for frame in container.decode(video=0)}


# -- item 6: a camera that dies mid-clip -----------------------------------------------------


@pytest.mark.parametrize(
    "spec",
    [GOP_2S, ClipSpec(seconds=40.0, fps=FPS, gop_seconds=2.0, audio_codec=None)],
    ids=["copy", "through_pyav"],  # no camera audio: silent AAC, so parts go through PyAV
    indirect=True,
)
async def test_camera_stall_ends_the_clip(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    live_feed: LiveFeedSource,
    spec: ClipSpec,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A camera that hangs mid-clip: the clip ends on its last real fragment, said why."""
    bridge = init_integration.runtime_data
    await _wait_for(lambda: bridge.recorder.prebuffer.buffered_seconds >= PREBUFFER_S + 2)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client = await _open(home_hub)
    recording = client.recordings[1]
    await client.wait_until(lambda: media_seconds(recording) >= PREBUFFER_S + 2)
    live_feed.stall()
    # The hub is not left waiting: the accessory ends the stream with endOfStream.
    await client.wait_until(lambda: recording.ended)
    packets = recording.complete_packets
    assert_fragments_contiguous(packets)
    with av.open(io.BytesIO(b"".join(packets))) as container:
        assert sum(1 for _ in container.decode(video=0)) > 0
    client.ack(1)
    await _wait_for(lambda: not bridge.recorder.streaming)
    summary = bridge.recorder.last_recording
    assert summary.mode == ("copy" if spec.audio_codec else "copy video, encode audio")
    assert summary.outcome.value == "camera_stream_lost"
    state = hass.states.get("sensor.front_door_last_recording")
    assert state.state == "camera_stream_lost"
    assert any(
        record.levelno == logging.WARNING and "camera stream lost" in record.getMessage()
        for record in caplog.records
    )
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await client.close()

    # The camera comes back: the next event records again.
    await _records_again_once_back(hass, bridge, home_hub, live_feed, seconds=4)


async def _records_again_once_back(
    hass: HomeAssistant, bridge: Any, home_hub: HomeHub, live_feed: LiveFeedSource, seconds: float
) -> None:
    """Resume the stalled camera; the next event (stream 2) records ``seconds`` and completes."""
    live_feed.resume()
    prebuffer = bridge.recorder.prebuffer
    parts = prebuffer.parts_received
    await _wait_for(lambda: prebuffer.parts_received > parts + 3, timeout=120)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client = await _open(home_hub, 2)
    recording = client.recordings[2]
    await client.wait_until(lambda: media_seconds(recording) >= seconds)
    client.close_stream(2, 0)
    await client.close()
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await _wait_for(lambda: not bridge.recorder.streaming)
    assert bridge.recorder.last_recording.outcome.value == "completed"


async def test_a_frozen_camera_sends_no_old_pictures_as_pre_roll(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    live_feed: LiveFeedSource,
) -> None:
    """A camera that hangs with its connection open: an event is not given stale pre-roll.

    Home Assistant's worker keeps waiting on a silent source; the prebuffer still holds the
    pictures from before the hang, which are not the moments before this event.
    """
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    await _wait_for(lambda: prebuffer.buffered_seconds >= PREBUFFER_S + 2)
    live_feed.stall()
    # Stale after 6 s here instead of 30 s; nothing else depends on the number.
    with patch.object(gop_buffer_module, "STALE_MEDIA_SECONDS", 6.0):
        await _wait_for(lambda: prebuffer.stale, timeout=60)
        assert prebuffer.buffered_seconds >= PREBUFFER_S  # still held: only its age is off
        hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
        client = await _open(home_hub)
        recording = client.recordings[1]
        await client.wait_until(lambda: recording.closed or recording.ended)
        assert media_seconds(recording) == 0
        await _wait_for(lambda: not bridge.recorder.streaming)
    summary = bridge.recorder.last_recording
    assert summary.outcome.value == "failed"
    assert "the camera has sent no video for" in (summary.error or "")
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await client.close()

    # Back: the next event records again, with the camera's new pictures.
    await _records_again_once_back(hass, bridge, home_hub, live_feed, seconds=2)


# -- item 7: a hub that stops reading --------------------------------------------------------


async def test_hub_that_stops_reading_frees_the_camera(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
) -> None:
    """A stalled hub loses its stream within seconds; a second hub's open then succeeds."""
    bridge = init_integration.runtime_data
    await _wait_for(lambda: bridge.recorder.prebuffer.buffered_seconds >= PREBUFFER_S + 2)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    stalled = await home_hub.open_data_stream(receive_buffer=32 * 1024)
    stalled.timeout = 90
    assert (await stalled.open_recording(1)).status == 0
    stalled.pause_reading()
    loop = asyncio.get_running_loop()
    stopped_reading = loop.time()
    await _wait_for(lambda: bridge.recorder.streaming)

    second = await home_hub.open_data_stream(name="second hub")
    second.timeout = 90
    stream_id = 10
    async with asyncio.timeout(120):
        while True:
            response = await second.open_recording(stream_id)
            if response.status == 0:
                break
            stream_id += 1
            await asyncio.sleep(1)
    freed_after = loop.time() - stopped_reading
    print(f"second hub's open succeeded {freed_after:.1f} s after the first stopped reading")
    first = bridge.recorder.last_recording
    assert first is not None
    assert first.outcome.value == "hub_not_reading"
    # Found by the send-progress watch at the socket (hds/connection.py): the kernel buffers
    # fill, then SEND_STALL_TIMEOUT, then at most one fragment until the next send (about
    # 12 s here). The old check could not fire before a 1 MiB queue was full (about 20 s of
    # this camera's media) and 10 s more passed without drain (30.1 s measured).
    assert freed_after < 20
    recording = second.recordings[stream_id]
    await second.wait_until(lambda: media_seconds(recording) >= 4)
    second.close_stream(stream_id, 0)
    await second.close()
    await _wait_for(lambda: not bridge.recorder.streaming)
    stalled.abort()
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    closes = bridge.data_stream.diagnostics()["last_stream_ends"]
    assert any("read nothing" in reason for reason in closes), closes


# -- item 4: the copy/transcode decision judges the camera's steady GOP ----------------------


@pytest.mark.parametrize("spec", [IDR_ON_CONNECT], indirect=True)
async def test_short_first_gop_does_not_force_a_transcode(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    live_feed: PacedSource,
) -> None:
    """A 2 s GOP camera whose first GOP after a (re)connect is short is copied, no reasons.

    The first recording after setup, and the first after the camera reconnects, both see the
    short GOP in the prebuffer next to exact 2 s ones.
    """
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer

    async def record(stream_id: int) -> Any:
        hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
        client = await _open(home_hub, stream_id)
        recording = client.recordings[stream_id]
        await client.wait_until(lambda: media_seconds(recording) >= PREBUFFER_S)
        client.close_stream(stream_id, 0)
        await client.close()
        hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
        await _wait_for(lambda: not bridge.recorder.streaming)
        return bridge.recorder.last_recording

    def epoch_gops() -> list[Any]:
        gops = prebuffer.gops
        return [g for g in gops if g.epoch == gops[-1].epoch] if gops else []

    # Right after recording was enabled: the short first GOP and two exact ones.
    await _wait_for(lambda: len(epoch_gops()) >= 3)
    assert round(epoch_gops()[0].duration_seconds, 1) == 1.2
    summary = await record(1)
    assert summary.mode_reasons == []
    assert summary.mode == "copy"
    assert summary.outcome.value == "completed"

    # The camera reconnects: a new epoch starts with a short GOP after steady ones.
    restarts = prebuffer.stream_restarts
    await live_feed.restart()
    await _wait_for(lambda: prebuffer.stream_restarts > restarts and len(epoch_gops()) >= 2)
    assert round(epoch_gops()[0].duration_seconds, 1) == 1.2
    summary = await record(2)
    assert summary.mode_reasons == []
    assert summary.mode == "copy"


# -- item 5: a 4:3 camera is recorded at exactly the selected size ---------------------------


@pytest.mark.parametrize(
    "spec", [ClipSpec(seconds=20.0, width=640, height=480, fps=15, gop_seconds=2.0)], indirect=True
)
async def test_four_by_three_camera_fills_the_selected_size(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    spec: ClipSpec,
) -> None:
    """A 4:3 camera under a 16:9 selection: every fragment is coded at the selected size."""
    bridge = init_integration.runtime_data
    await _wait_for(lambda: bridge.recorder.prebuffer.buffered_seconds >= PREBUFFER_S + 2)
    chosen = bridge.accessory.selection.video.attributes[0]
    assert (chosen.width, chosen.height) == (1280, 720)  # the offer stays 16:9 (peers.md)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client = await _open(home_hub)
    recording = client.recordings[1]
    await client.wait_until(lambda: media_seconds(recording) >= PREBUFFER_S + 4)
    client.close_stream(1, 0)
    await client.close()
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    packets = recording.complete_packets
    init = parse_init(packets[0])
    assert (init.video.width, init.video.height) == (chosen.width, chosen.height)
    assert await hass.async_add_executor_job(_coded_sizes, packets) == {(1280, 720)}
    # Pillarboxed: the bars left and right are black, the picture fills the middle.
    frame = await hass.async_add_executor_job(_first_frame_luma, packets)
    assert frame[:, :150].max() <= 20
    assert frame[:, -150:].max() <= 20
    assert frame[:, 200:1080].std() > 10
    summary = bridge.recorder.last_recording
    assert summary.mode == "transcode"
    assert summary.mode_reason_codes[0]["code"] == "aspect_ratio"
    assert summary.mode_reason_codes[0]["size"] == "640x480"


def _first_frame_luma(packets: list[bytes]) -> Any:
    """Return the Y plane of the clip's first frame."""
    with av.open(io.BytesIO(b"".join(packets))) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="gray")


# -- item 8: entities follow the camera ------------------------------------------------------


def _hksv_records(caplog: pytest.LogCaptureFixture, level: int) -> list[logging.LogRecord]:
    """Return hksv's own log records at ``level``."""
    return [
        r
        for r in caplog.records
        if r.name.startswith("custom_components.hksv") and r.levelno == level
    ]


async def test_entities_follow_the_camera(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    fake_camera: FakeCamera,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Camera or stream gone: one warning, dependent entities unavailable; back: one info."""
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    await _wait_for(lambda: prebuffer.buffered_seconds >= 2)
    dependent = [
        "sensor.front_door_last_recording",
        "binary_sensor.front_door_recording",
        "sensor.front_door_live_viewers",
    ]

    def states() -> set[str]:
        return {hass.states.get(entity_id).state for entity_id in dependent}

    assert "unavailable" not in states()
    caplog.clear()
    # The camera's stream goes away: a reloaded camera whose stream source now fails.
    fake_camera.stream_error = HomeAssistantError("connection refused")
    fake_camera.stream = None
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=WATCHDOG_INTERVAL_SECONDS))
    await _wait_for(lambda: states() == {"unavailable"})
    assert hass.states.get("switch.front_door_homekit_camera").state != "unavailable"
    assert len(_hksv_records(caplog, logging.WARNING)) == 1
    assert "connection refused" in _hksv_records(caplog, logging.WARNING)[0].getMessage()
    # Three more watchdog rounds (45 s of a dead stream) add nothing to the log.
    caplog.clear()
    for tick in range(2, 5):
        async_fire_time_changed(
            hass, dt_util.utcnow() + timedelta(seconds=WATCHDOG_INTERVAL_SECONDS * tick)
        )
        await hass.async_block_till_done()
    assert prebuffer.reattachments >= 3
    assert _hksv_records(caplog, logging.WARNING) == []
    assert _hksv_records(caplog, logging.INFO) == []
    assert states() == {"unavailable"}

    caplog.clear()
    fake_camera.stream_error = None
    async_fire_time_changed(
        hass, dt_util.utcnow() + timedelta(seconds=WATCHDOG_INTERVAL_SECONDS * 6)
    )
    await _wait_for(lambda: "unavailable" not in states())
    assert len(_hksv_records(caplog, logging.INFO)) == 1
    assert _hksv_records(caplog, logging.WARNING) == []

    # The camera entity itself becomes unavailable (its integration lost the device).
    caplog.clear()
    fake_camera._attr_available = False
    fake_camera.async_write_ha_state()
    await _wait_for(lambda: states() == {"unavailable"})
    fake_camera._attr_available = True
    fake_camera.async_write_ha_state()
    await _wait_for(lambda: "unavailable" not in states())
    assert len(_hksv_records(caplog, logging.WARNING)) == 1
    assert len(_hksv_records(caplog, logging.INFO)) == 1


# -- issue 13 item 5: the error names who fell behind, the local encoder or the hub ----------


ALWAYS_TRANSCODE = {**DEFAULT_OPTIONS, OPT_VIDEO_MODE: VIDEO_MODE_TRANSCODE}


@pytest.fixture
def small_queues() -> Any:
    """Bound live media to a few parts, so that falling behind shows within seconds."""
    with (
        patch.object(recorder_module, "MAX_QUEUED_PARTS", 2),
        patch.object(transcode_module, "DEFAULT_MAX_QUEUED_INPUT", 1),
        patch.object(transcode_module, "DEFAULT_MAX_QUEUED_OUTPUT", 1),
    ):
        yield


async def _failed_clip(hass: HomeAssistant, bridge: Any, client: HDSClient) -> Any:
    """Wait until the recording on ``client`` has ended; return its summary."""
    await _wait_for(lambda: bridge.recorder.recordings and not bridge.recorder.streaming, 180)
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    summary = bridge.recorder.last_recording
    assert summary is not None
    return summary


@pytest.mark.parametrize("entry_options", [ALWAYS_TRANSCODE])
async def test_an_encoder_that_falls_behind_is_named(
    hass: HomeAssistant,
    small_queues: None,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A real encoder far below real time fails the clip as the encoder's fault, not the hub's.

    libx264's slowest preset at the selected size is the slow encoder; the hub reads at once.
    """
    monkeypatch.setattr(av_encode, "X264_PRESET", "placebo")
    bridge = init_integration.runtime_data
    await _wait_for(lambda: bridge.recorder.prebuffer.buffered_seconds >= PREBUFFER_S + 2)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client = await _open(home_hub)
    summary = await _failed_clip(hass, bridge, client)
    assert summary.outcome.value == "failed"
    assert summary.error.startswith("the local encoder is not keeping up with live video ("), (
        summary.error
    )
    assert "hub" not in summary.error
    assert summary.encoder == "libx264"
    assert bridge.recorder.budget.held == []
    await client.close()


@pytest.mark.parametrize("entry_options", [ALWAYS_TRANSCODE])
async def test_a_hub_that_falls_behind_is_named(
    hass: HomeAssistant,
    small_queues: None,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
) -> None:
    """A hub that reads far slower than the video fails the clip as the hub's fault.

    It takes one socket read (at most its 16 KiB receive buffer, doubled by the kernel) every
    0.5 s: never idle long enough to count as not reading at all, yet far below the video's
    ~2 Mbit/s, so HomeKit Data Stream's send queue stays full while the encoder keeps up.
    """
    bridge = init_integration.runtime_data
    await _wait_for(lambda: bridge.recorder.prebuffer.buffered_seconds >= PREBUFFER_S + 2)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client = await home_hub.open_data_stream(receive_buffer=16 * 1024)
    client.timeout = 180
    assert (await client.open_recording(1)).status == 0
    receive = client.data_received

    def one_read_at_a_time(data: bytes) -> None:
        receive(data)
        client.pause_reading()

    client.data_received = one_read_at_a_time  # type: ignore[method-assign]

    async def sip() -> None:
        while True:
            await asyncio.sleep(0.5)
            client.resume_reading()

    reader = asyncio.get_running_loop().create_task(sip())
    try:
        summary = await _failed_clip(hass, bridge, client)
    finally:
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    client.resume_reading()
    assert summary.outcome.value == "failed", summary
    assert summary.error.startswith("the hub is not keeping up with live video ("), summary.error
    assert "encoder" not in summary.error
    assert bridge.recorder.budget.held == []
    client.abort()
