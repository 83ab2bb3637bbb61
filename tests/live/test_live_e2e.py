"""Live view end to end: aiohomekit controller, HA's stream worker, SRTP on loopback, PyAV.

A camera-like feed (joined mid-GOP) goes through Home Assistant's real stream worker into
hksv's prebuffer; a paired aiohomekit controller sets up endpoints and starts a stream like
iOS; the viewer decrypts with libsrtp (pylibsrtp), depacketizes and decodes with PyAV.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator
from dataclasses import replace
from datetime import timedelta
import io
from itertools import pairwise
import json
import threading
from typing import Any
from unittest.mock import patch

import av
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.hksv.const import DEFAULT_OPTIONS, OPT_LIVE_SLOTS
from custom_components.hksv.diagnostics import async_get_config_entry_diagnostics
from custom_components.hksv.hap.rtp_stream import (
    SessionCommand,
    SetupEndpointsResponse,
    SetupStatus,
    StreamingState,
)
from custom_components.hksv.media.budget import TranscodeBudget
from custom_components.hksv.source.attachment import WATCHDOG_INTERVAL_SECONDS
from tests import harness
from tests.conftest import MOTION_ID
from tests.e2e.live_source import LiveFeedSource
from tests.harness import Viewers, another_device, clip_file, live_camera, recording_hub
from tests.hub.controller import HubController
from tests.hub.emulator import media_seconds
from tests.live.viewer import (
    AUDIO_PT,
    IPV4_UDP_HEADERS,
    MTU,
    VIDEO_PT,
    LiveViewer,
    access_units,
    counters,
    decode_units,
    opus_durations,
)
from tests.media import ClipSpec
from tests.ports import free_port

FPS = 25
SPEC = ClipSpec(seconds=20.0, width=640, height=360, fps=FPS, gop_seconds=1.0)
CLIP_FRAMES = int(SPEC.seconds * FPS)
WATCH_SECONDS = 4.0


HEVC_SPEC = replace(SPEC, video_codec="hevc")
B_FRAME_SPEC = replace(SPEC, h264_profile="high", b_frames=2)


@pytest.fixture
def camera_spec() -> ClipSpec:
    """Return what the camera sends (parametrized by some tests)."""
    return SPEC


@pytest.fixture
async def live_source(
    hass: HomeAssistant,
    socket_enabled: None,
    camera_spec: ClipSpec,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncGenerator[LiveFeedSource]:
    """Serve the clip as a live feed and set up HA's stream (LL-HLS parts)."""
    clip = await clip_file(hass, tmp_path_factory.getbasetemp() / "live", camera_spec)
    async with live_camera(hass, LiveFeedSource(clip, free_port())) as source:
        yield source


@pytest.fixture
def stream_source(live_source: LiveFeedSource) -> str:
    """Point the test camera at the feed."""
    return live_source.url


with_doorbell = harness.no_doorbell


controller = harness.iphone_controller


VIEWERS = Viewers()
close_viewers = VIEWERS.closing_fixture()


def _check_stream(
    viewer: LiveViewer,
    advertised_ssrc: int,
    size: tuple[int, int] = (SPEC.width, SPEC.height),
    picture: tuple[int, int] | None = None,
    max_step: int = 1,
) -> list[int]:
    """Check every packet and access unit; return the decoded frame counters."""
    packets = viewer.packets
    assert packets
    for packet in packets:
        assert (packet.version, packet.padding, packet.extension, packet.csrc_count) == (
            2,
            False,
            False,
            0,
        )
        assert packet.payload_type == VIDEO_PT
        assert packet.ssrc == advertised_ssrc
        assert packet.datagram_size + IPV4_UDP_HEADERS <= MTU
    steps = {(b.sequence - a.sequence) % 65536 for a, b in pairwise(packets)}
    assert steps == {1}, "sequence numbers must be contiguous on loopback"
    units = access_units(packets)
    complete = units[:-1] if not units[-1].packets[-1].marker else units
    for unit in complete:
        # The marker is on the last packet of each access unit, and only there.
        assert [p.marker for p in unit.packets] == [False] * (len(unit.packets) - 1) + [True]
        assert 6 not in unit.types, "SEI must be dropped"
        if 5 in unit.types:
            assert unit.stap_a and unit.stap_a[0] == [7, 8], "SPS+PPS STAP-A before each IDR"
            assert unit.packets[0].payload[0] == 24  # plain STAP-A header, NRI 0
    assert 5 in complete[0].types, "the stream starts at a keyframe"
    frames = decode_units(complete)
    assert len(frames) >= len(complete) - 2
    assert {(f.width, f.height) for f in frames} == {size}
    found = counters(frames, picture)
    assert all(1 <= (b - a) % CLIP_FRAMES <= max_step for a, b in pairwise(found)), found
    return found


def _check_audio(viewer: LiveViewer, rate: int, packet_ms: int) -> None:
    """Opus at the negotiated clock: step = rate x packet time, one packet per packet time."""
    assert viewer.response is not None
    packets = viewer.audio_packets
    assert len(packets) >= 20
    assert {p.payload_type for p in packets} == {AUDIO_PT}
    assert {p.ssrc for p in packets} == {viewer.response.audio_ssrc}
    assert not any(p.marker or p.padding for p in packets)
    steps = {(b.timestamp - a.timestamp) % 2**32 for a, b in pairwise(packets)}
    assert steps == {rate * packet_ms // 1000}
    assert {(b.sequence - a.sequence) % 65536 for a, b in pairwise(packets)} == {1}
    durations = opus_durations(packets)
    assert set(durations) == {packet_ms / 1000}
    # Sent as it comes (docs/live-view.md §2.8): over the run, audio keeps up with real time,
    # neither falling behind nor running ahead by more than a part (1 s here) and a margin.
    span = packets[-1].arrived - packets[0].arrived
    assert abs(span - (len(packets) - 1) * packet_ms / 1000) <= 1.25


async def test_live_view_copy_and_end(
    hass: HomeAssistant, init_integration: MockConfigEntry, controller: HubController
) -> None:
    """START streams the camera copied and decodable; END stops it and frees the slot."""
    bridge = init_integration.runtime_data
    bridge.live.feed.linger_seconds = 5.0
    assert not bridge.accessory.state.recording_possible
    viewer = await VIEWERS.set_up(controller)
    assert viewer.response is not None and viewer.response.address is not None
    assert viewer.response.address.address == "127.0.0.1"
    assert viewer.response.video_srtp is not None
    assert viewer.response.video_srtp.master_key == viewer.key
    await controller.subscribe(viewer.iids["120"])
    assert await viewer.streaming_status() == StreamingState.IN_USE
    assert await viewer.select() == {}
    await viewer.wait_frames(WATCH_SECONDS, FPS)
    assert viewer.response.video_ssrc is not None
    _check_stream(viewer, viewer.response.video_ssrc)
    assert viewer.rtcp_count() >= 1  # sender reports
    await viewer.wait_audio(50)
    _check_audio(viewer, 16000, 20)
    diagnostics = (await async_get_config_entry_diagnostics(hass, init_integration))["live_view"]
    assert diagnostics["viewers"] == 1
    active = diagnostics["active"][0]
    assert active["viewer"] == f"127.0.0.1:{viewer._port(viewer.video)}"
    assert active["mode"] == "copy"
    assert active["reason"].startswith("camera fits")
    assert active["requested"]["size"] == "1280x720@30"
    assert active["requested"]["max_mtu"] == MTU
    stats = active["stats"]
    assert stats["rtcp_received"] >= 1
    assert stats["video_reception"]["reports"] >= 1
    assert stats["start_to_first_packet_ms"] is not None
    assert stats["start_to_first_keyframe_ms"] is not None
    assert stats["rtp_packets"] >= len(viewer.packets)
    assert stats["largest_datagram"] + IPV4_UDP_HEADERS <= MTU
    assert viewer.key.hex() not in json.dumps(diagnostics)

    assert await viewer.select(SessionCommand.END) == {}
    await hass.async_block_till_done()
    event = await controller.next_event(viewer.iids["120"])
    assert event is not None
    assert await viewer.streaming_status() == StreamingState.AVAILABLE
    count = len(viewer.video.datagrams)
    await asyncio.sleep(1.5)
    assert len(viewer.video.datagrams) == count, "packets stop after END"
    assert bridge.live.history[-1]["end_reason"] == "end"
    assert bridge.live.viewers == 0
    # Recording is off: the stream ran for the viewer and stops a while after the last one.
    assert bridge.recorder.prebuffer.running
    async with asyncio.timeout(30):
        while bridge.recorder.prebuffer.running:
            await asyncio.sleep(0.2)
    assert not bridge.live.feed.holding
    await viewer.close()


async def test_dropped_hap_connection_ends_session(
    hass: HomeAssistant, init_integration: MockConfigEntry, controller: HubController
) -> None:
    """SUSPEND pauses and RESUME restarts at a keyframe; closing the HAP connection ends it."""
    bridge = init_integration.runtime_data
    viewer = await VIEWERS.start(controller)
    await viewer.wait_packets(10)
    assert await viewer.select(SessionCommand.SUSPEND) == {}
    await asyncio.sleep(0.5)
    paused = len(viewer.packets), len(viewer.audio_packets)
    await asyncio.sleep(1.5)
    assert (len(viewer.packets), len(viewer.audio_packets)) == paused
    assert await viewer.select(SessionCommand.RESUME) == {}
    await viewer.wait_packets(paused[0] + 60)
    resumed = access_units(viewer.packets[paused[0] :])
    assert 5 in resumed[0].types, "resumes at a keyframe"
    await controller.close()
    async with asyncio.timeout(30):
        while bridge.live.viewers:
            await asyncio.sleep(0.1)
    assert bridge.live.history[-1]["end_reason"] == "hap_connection_closed"
    await viewer.close()


async def test_silent_viewer_times_out(
    hass: HomeAssistant, init_integration: MockConfigEntry, controller: HubController
) -> None:
    """A viewer that stops sending RTCP is ended after the idle timeout."""
    bridge = init_integration.runtime_data
    bridge.live.idle_timeout = 3.0
    viewer = await VIEWERS.start(controller)
    await viewer.wait_packets(10)
    await asyncio.sleep(4)
    assert bridge.live.viewers == 1, "a reporting viewer stays"
    viewer.reporting = False
    async with asyncio.timeout(30):
        while bridge.live.viewers:
            await asyncio.sleep(0.2)
    assert bridge.live.history[-1]["end_reason"] == "rtcp_timeout"
    assert await viewer.streaming_status() == StreamingState.AVAILABLE
    await viewer.close()


@pytest.mark.parametrize("entry_options", [{**DEFAULT_OPTIONS, OPT_LIVE_SLOTS: 2}])
async def test_two_viewers_busy_and_camera_off(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    entry_options: dict[str, Any],
) -> None:
    """Two viewers at once; a busy slot answers BUSY; turning the camera off ends both."""
    bridge = init_integration.runtime_data
    second_hub = another_device(controller, "ipad")
    first = await VIEWERS.set_up(controller, 0)
    second = await VIEWERS.set_up(second_hub, 1)
    intruder = VIEWERS.add(second_hub, 0)
    await intruder.open()
    assert (await intruder.setup()).status == SetupStatus.BUSY
    assert await first.select() == {}
    assert await second.select() == {}
    await first.wait_frames(3, FPS)
    await second.wait_frames(3, FPS)
    assert first.response is not None and second.response is not None
    _check_stream(first, first.response.video_ssrc or 0)
    _check_stream(second, second.response.video_ssrc or 0)
    assert bridge.live.viewers == 2
    state = hass.states.get("sensor.front_door_live_viewers")
    assert state is not None and state.state == "2"

    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.front_door_homekit_camera"}, blocking=True
    )
    assert bridge.live.viewers == 0
    assert {r["end_reason"] for r in bridge.live.history} == {"camera_off"}
    assert await first.streaming_status() == StreamingState.UNAVAILABLE
    result = await first.hub.write(first.iids["118"], "AQA=")
    assert result["status"] == -70412
    for viewer in (first, second, intruder):
        await viewer.close()
    await second_hub.close()


@pytest.mark.parametrize("camera_spec", [B_FRAME_SPEC], ids=["b_frames"])
async def test_b_frame_camera_is_copied(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    camera_spec: ClipSpec,
) -> None:
    """A High-profile camera with B-frames is copied and decodes in order."""
    bridge = init_integration.runtime_data
    viewer = await VIEWERS.start(controller)
    await viewer.wait_frames(WATCH_SECONDS, FPS)
    assert viewer.response is not None
    _check_stream(viewer, viewer.response.video_ssrc or 0)
    timestamps = [u.timestamp for u in access_units(viewer.packets)]
    assert timestamps != sorted(timestamps), "B-frames: RTP timestamps follow presentation"
    assert bridge.live.diagnostics()["active"][0]["mode"] == "copy"
    await viewer.close()


async def test_watch_request_is_transcoded(
    hass: HomeAssistant, init_integration: MockConfigEntry, controller: HubController
) -> None:
    """An Apple Watch asking for 320x240@15 gets a transcoded 320x240 stream; RECONFIGURE works."""
    bridge = init_integration.runtime_data
    viewer = await VIEWERS.set_up(controller)
    assert await viewer.select(width=320, height=240, fps=15, bitrate=150, packet_time=60) == {}
    await viewer.wait_frames(3, 15)
    assert viewer.response is not None
    # 640x360 letterboxed into 320x240: the picture is the middle 320x180.
    _check_stream(viewer, viewer.response.video_ssrc or 0, (320, 240), (30, 180), max_step=3)
    diagnostics = bridge.live.diagnostics()
    active = diagnostics["active"][0]
    assert active["mode"] == "transcode"
    assert active["reason"].startswith("watch-sized request")
    assert [t["target"] for t in diagnostics["transcoders"]] == ["320x240@15"]
    # A second watch with the same request shares the transcoder.
    second_hub = another_device(controller, "watch2")
    second = await VIEWERS.set_up(second_hub, 1)
    assert await second.select(width=320, height=240, fps=15, bitrate=150, packet_time=60) == {}
    await second.wait_frames(2, 15)
    shared = bridge.live.diagnostics()["transcoders"]
    assert [(t["target"], t["viewers"]) for t in shared] == [("320x240@15", 2)]
    assert second.response is not None
    _check_stream(second, second.response.video_ssrc or 0, (320, 240), (30, 180), max_step=3)
    assert await second.select(SessionCommand.END) == {}
    await second_hub.close()
    await viewer.wait_audio(10)
    _check_audio(viewer, 16000, 60)
    before = diagnostics["transcoders"][0]["bitrate_kbps"]
    assert await viewer.select(SessionCommand.RECONFIGURE, bitrate=400, width=320, height=240) == {}
    async with asyncio.timeout(30):
        while bridge.live.diagnostics()["transcoders"][0]["bitrate_kbps"] == before:
            await asyncio.sleep(0.2)
    assert await viewer.select(SessionCommand.END) == {}
    await hass.async_block_till_done()
    assert bridge.live.diagnostics()["transcoders"] == []
    await viewer.close()


@pytest.mark.parametrize("camera_spec", [HEVC_SPEC], ids=["hevc"])
async def test_hevc_camera_is_transcoded(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    camera_spec: ClipSpec,
) -> None:
    """An HEVC camera's live view is transcoded to H.264 at the camera's size."""
    bridge = init_integration.runtime_data
    viewer = await VIEWERS.start(controller)
    await viewer.wait_frames(3, FPS)
    assert viewer.response is not None
    _check_stream(viewer, viewer.response.video_ssrc or 0)
    active = bridge.live.diagnostics()["active"][0]
    assert active["mode"] == "transcode"
    assert "hvc1" in active["reason"] or "hev1" in active["reason"]
    await viewer.close()


async def test_worker_restart_resumes_at_next_keyframe(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    live_source: LiveFeedSource,
) -> None:
    """A camera reconnect: same SSRC, continuous sequence numbers, resumes at an IDR."""
    bridge = init_integration.runtime_data
    viewer = await VIEWERS.start(controller)
    await viewer.wait_frames(2, FPS)
    restarts = bridge.recorder.prebuffer.stream_restarts
    await live_source.restart()
    async with asyncio.timeout(60):
        while bridge.recorder.prebuffer.stream_restarts == restarts:
            await asyncio.sleep(0.2)
    await viewer.wait_packets(len(viewer.packets) + 200)
    packets = viewer.packets
    assert {p.ssrc for p in packets} == {viewer.response.video_ssrc if viewer.response else 0}
    assert {(b.sequence - a.sequence) % 65536 for a, b in pairwise(packets)} == {1}
    units = access_units(packets)
    frame_step = 90000 // FPS
    jumps = [
        i
        for i, (a, b) in enumerate(pairwise(units), start=1)
        if (b.timestamp - a.timestamp) % 2**32 != frame_step
    ]
    assert len(jumps) == 1, "one discontinuity: the restart"
    resumed = units[jumps[0]]
    assert 5 in resumed.types, "the first frame after the restart is an IDR"
    # The RTP clock went forward by about the time the camera was away.
    assert frame_step < (resumed.timestamp - units[jumps[0] - 1].timestamp) % 2**32 < 60 * 90000
    # The capture can end inside the last access unit (a part's frames now leave in one burst:
    # its SPS/PPS may have arrived without the IDR's slices), so that one is not decoded.
    assert len(decode_units(units[:-1])) >= len(units) - 2
    stats = bridge.live.diagnostics()["active"][0]["stats"]
    assert stats["stream_restarts"] >= 1
    await viewer.close()


@pytest.mark.parametrize("known_source", [None])
async def test_live_view_while_recording(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    session_keys: None,
    known_source: None,
) -> None:
    """A hub records a motion event while an iPhone watches: one camera stream serves both."""
    bridge = init_integration.runtime_data
    async with recording_hub(bridge) as hub:
        viewer = await VIEWERS.start(hub)
        await viewer.wait_frames(2, FPS)
        hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
        client = await hub.open_data_stream()
        client.timeout = 90
        assert (await client.open_recording(1)).status == 0
        recording = client.recordings[1]
        await client.wait_until(lambda: media_seconds(recording) >= 6)
        client.close_stream(1, 0)
        await client.close()
        hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
        assert viewer.response is not None
        found = _check_stream(viewer, viewer.response.video_ssrc or 0)
        assert len(found) >= 6 * FPS
        with av.open(io.BytesIO(b"".join(recording.complete_packets))) as container:
            clip = counters(list(container.decode(video=0)))
        assert len(clip) >= 6 * FPS
        assert all((b - a) % CLIP_FRAMES == 1 for a, b in pairwise(clip))
        assert bridge.live.viewers == 1
        assert bridge.live.feed.holding and bridge.recorder.prebuffer.running


async def test_home_assistant_stop_while_watching(
    hass: HomeAssistant, init_integration: MockConfigEntry, controller: HubController
) -> None:
    """Stopping HA while someone watches (recording off) ends the stream worker for good."""
    bridge = init_integration.runtime_data
    assert not bridge.accessory.state.recording_possible
    viewer = await VIEWERS.start(controller)
    await viewer.wait_packets(10)
    assert bridge.live.feed.holding and bridge.recorder.prebuffer.running
    assert _stream_workers()

    await hass.async_stop()
    # The prebuffer's watchdog time passes: nothing may bring the stream back.
    async_fire_time_changed(
        hass, dt_util.utcnow() + timedelta(seconds=WATCHDOG_INTERVAL_SECONDS + 1)
    )
    async with asyncio.timeout(30):
        while _stream_workers():
            await asyncio.sleep(0.1)
    assert not bridge.recorder.prebuffer.running
    assert not bridge.live.feed.holding
    assert bridge.live.viewers == 0
    count = len(viewer.video.datagrams)
    await asyncio.sleep(1.5)
    assert len(viewer.video.datagrams) == count, "no packets after Home Assistant stopped"
    assert not _stream_workers()


def _stream_workers() -> list[threading.Thread]:
    """Return the live stream worker threads (HA names them all "stream_worker")."""
    return [t for t in threading.enumerate() if t.name == "stream_worker" and t.is_alive()]


# -- faults a long run shows (issue 13 §2) ----------------------------------------------


async def test_mute_mid_session_stops_audio_at_once(
    hass: HomeAssistant, init_integration: MockConfigEntry, controller: HubController
) -> None:
    """Writing the Microphone's Mute during a session silences it at once; unmute resumes."""
    bridge = init_integration.runtime_data
    mute = controller.iid("112", "11A")
    viewer = await VIEWERS.set_up(controller)
    assert await viewer.select() == {}
    await viewer.wait_audio(25)
    assert await controller.write(mute, True) == {}
    # Packets already on the wire may still land; nothing is sent after the write.
    await asyncio.sleep(0.1)
    muted_at = len(viewer.audio_packets)
    encoded = bridge.live.diagnostics()["audio_encoders"][0]["packets"]
    await asyncio.sleep(2.5)
    assert len(viewer.audio_packets) == muted_at, "audio goes on after Mute"
    # Nobody hears it: at most the part already being encoded, then nothing (about 1 s).
    assert bridge.live.diagnostics()["audio_encoders"][0]["packets"] - encoded <= 55
    await viewer.wait_frames(2, FPS)  # video is not affected
    assert await controller.write(mute, False) == {}
    await viewer.wait_audio(muted_at + 25)
    resumed = viewer.audio_packets[muted_at:]
    assert {p.ssrc for p in resumed} == {viewer.response.audio_ssrc if viewer.response else 0}
    # The RTP clock ran on through the mute (a gap, not a rewind).
    gap = (resumed[0].timestamp - viewer.audio_packets[muted_at - 1].timestamp) % 2**32
    assert gap >= 16000 * 2
    stats = bridge.live.diagnostics()["active"][0]["audio_stats"]
    assert stats["muted_packets"] > 0
    await viewer.close()


async def test_other_controller_cannot_read_keys_or_start(
    hass: HomeAssistant, init_integration: MockConfigEntry, controller: HubController
) -> None:
    """Another HAP connection reads no SRTP key back and cannot START or END the session."""
    bridge = init_integration.runtime_data
    other = HubController(bridge.port, alias="neighbour")
    other.adopt(controller.pairing_data)
    other.accessories = controller.accessories
    try:
        await _other_controller_checks(bridge, controller, other)
    finally:
        await other.close()


async def _other_controller_checks(
    bridge: Any, controller: HubController, other: HubController
) -> None:
    viewer = await VIEWERS.set_up(controller)
    assert viewer.response is not None and viewer.response.video_srtp is not None
    assert viewer.response.video_srtp.master_key == viewer.key
    raw = await other.read_tlv(viewer.iids["118"])
    assert viewer.key not in raw and viewer.salt not in raw
    assert SetupEndpointsResponse.decode(raw).status != SetupStatus.SUCCESS
    for command in (SessionCommand.START, SessionCommand.END):
        written = await other.write(
            viewer.iids["117"], base64.b64encode(viewer.selection(command)).decode()
        )
        assert written.get("status") == -70401, written  # insufficient privileges
    assert bridge.live.viewers == 0
    assert await viewer.select() == {}
    await viewer.wait_frames(2, FPS)
    assert bridge.live.viewers == 1
    assert viewer.response.video_ssrc is not None
    _check_stream(viewer, viewer.response.video_ssrc)
    await other.close()
    await asyncio.sleep(1.0)
    assert bridge.live.viewers == 1, "the other connection closing ends nothing"
    await viewer.close()


LEVEL_51_SPEC = replace(SPEC, h264_level="5.1")


@pytest.mark.parametrize("camera_spec", [LEVEL_51_SPEC], ids=["level_5_1"])
async def test_copy_relabels_in_band_sps(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    camera_spec: ClipSpec,
) -> None:
    """A level 5.1 camera that repeats SPS in-band is copied with every SPS labelled 4.0."""
    bridge = init_integration.runtime_data
    viewer = await VIEWERS.set_up(controller)
    assert await viewer.select() == {}
    await viewer.wait_frames(3, FPS)
    active = bridge.live.diagnostics()["active"][0]
    assert active["mode"] == "copy"
    assert active["source"]["level_idc"] == 51
    units = access_units(viewer.packets)
    idrs = [u for u in units if 5 in u.types]
    assert len(idrs) >= 2
    levels = {nal[3] for unit in units for nal in unit.nals if nal[0] & 0x1F == 7}
    assert levels == {40}, f"SPS levels sent: {levels}"
    assert viewer.response is not None
    _check_stream(viewer, viewer.response.video_ssrc or 0)
    await viewer.close()


async def test_failed_media_task_ends_session_with_reason(
    hass: HomeAssistant, init_integration: MockConfigEntry, controller: HubController
) -> None:
    """A session whose video task dies is ended with the error, not left looking alive."""
    bridge = init_integration.runtime_data
    viewer = await VIEWERS.set_up(controller)
    assert await viewer.select() == {}
    await viewer.wait_frames(1, FPS)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    with patch("custom_components.hksv.live.session.LiveSession._send", broken):
        async with asyncio.timeout(30):
            while bridge.live.viewers:
                await asyncio.sleep(0.1)
    ended = bridge.live.history[-1]
    assert ended["end_reason"] == "error"
    assert "InvalidDataError" in ended["error"]
    assert await viewer.streaming_status() == StreamingState.AVAILABLE
    diagnostics = (await async_get_config_entry_diagnostics(hass, init_integration))["live_view"]
    assert "InvalidDataError" in diagnostics["ended"][-1]["error"]
    await viewer.close()


async def test_failed_transcoder_ends_its_sessions(
    hass: HomeAssistant, init_integration: MockConfigEntry, controller: HubController
) -> None:
    """A transcoder thread that dies ends its viewers with the reason and leaves no thread."""
    bridge = init_integration.runtime_data
    viewer = await VIEWERS.set_up(controller)

    def broken(self: Any, frame: Any) -> None:
        raise av.error.InvalidDataError(22, "Invalid argument")

    with patch("custom_components.hksv.live.transcode_codec.LiveVideoCodec._encode", broken):
        assert await viewer.select(width=320, height=240, fps=15, bitrate=150) == {}
        async with asyncio.timeout(60):
            while not bridge.live.history:
                await asyncio.sleep(0.1)
    ended = bridge.live.history[-1]
    assert ended["mode"] == "transcode"
    assert ended["end_reason"] == "error"
    assert "Invalid argument" in ended["error"]
    assert bridge.live.viewers == 0
    assert bridge.live.diagnostics()["transcoders"] == []
    await hass.async_block_till_done()
    state = hass.states.get("sensor.front_door_live_viewers")
    assert state is not None
    assert state.attributes["last_ended"]["end_reason"] == "error"
    assert "Invalid argument" in state.attributes["last_ended"]["error"]
    async with asyncio.timeout(30):
        while any(t.name.startswith("hksv_live_transcode") for t in threading.enumerate()):
            await asyncio.sleep(0.1)
    await viewer.close()


async def test_failed_opus_encoder_stops_audio_with_reason(
    hass: HomeAssistant, init_integration: MockConfigEntry, controller: HubController
) -> None:
    """An Opus encoder that fails stops only audio: one reason, video goes on, no thread left."""
    bridge = init_integration.runtime_data
    viewer = await VIEWERS.set_up(controller)
    assert await viewer.select() == {}
    await viewer.wait_audio(10)

    def broken(self: Any, samples: Any) -> list[bytes]:
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    with patch("custom_components.hksv.live.audio.OpusLiveEncoder.encode", broken):
        async with asyncio.timeout(30):
            while bridge.live.diagnostics()["audio_encoders"]:
                await asyncio.sleep(0.1)
    await hass.async_block_till_done()
    state = hass.states.get("sensor.front_door_live_viewers")
    assert state is not None
    summary = state.attributes["sessions"][0]
    assert summary["audio"].startswith("failed: InvalidDataError")
    count = len(viewer.packets)
    await viewer.wait_packets(count + 20)  # video goes on
    assert bridge.live.viewers == 1
    async with asyncio.timeout(30):
        while any(t.name.startswith("hksv_opus") for t in threading.enumerate()):
            await asyncio.sleep(0.1)
    await viewer.close()


# -- issue 13 item 5: live transcodes share the machine's transcode budget -------------------


async def test_live_transcode_holds_its_share_until_the_last_viewer_ends(
    hass: HomeAssistant,
    transcode_budget: TranscodeBudget,
    init_integration: MockConfigEntry,
    controller: HubController,
) -> None:
    """A watch's transcoder reserves its share of the budget and frees it with its viewer."""
    viewer = await VIEWERS.set_up(controller)
    assert await viewer.select(width=320, height=240, fps=15, bitrate=150, packet_time=60) == {}
    await viewer.wait_frames(3, 15)
    assert transcode_budget.held == ["Front door live view 320x240@15"]
    assert await viewer.select(SessionCommand.END) == {}
    await hass.async_block_till_done()
    assert transcode_budget.held == []
    await viewer.close()


async def test_watch_over_the_transcode_budget_gets_the_camera_stream(
    hass: HomeAssistant,
    transcode_budget: TranscodeBudget,
    init_integration: MockConfigEntry,
    controller: HubController,
) -> None:
    """No room for another transcode: a viewer that can play the camera's H.264 gets it copied."""
    bridge = init_integration.runtime_data
    held = transcode_budget.try_reserve(100.0, "another camera's recording")
    assert held is not None
    viewer = await VIEWERS.set_up(controller)
    assert await viewer.select(width=320, height=240, fps=15, bitrate=150, packet_time=60) == {}
    await viewer.wait_frames(3, FPS)
    assert viewer.response is not None
    _check_stream(viewer, viewer.response.video_ssrc or 0)  # the camera's own 640x360
    diagnostics = bridge.live.diagnostics()
    active = diagnostics["active"][0]
    assert active["mode"] == "copy"
    assert active["reason"].startswith("watch-sized request (320x240); copied instead: ")
    assert "another camera's recording" in active["reason"]
    assert diagnostics["transcoders"] == []
    assert transcode_budget.held == ["another camera's recording"]
    held.release()
    await viewer.close()


@pytest.mark.parametrize("camera_spec", [HEVC_SPEC], ids=["hevc"])
async def test_hevc_over_the_transcode_budget_is_refused(
    hass: HomeAssistant,
    transcode_budget: TranscodeBudget,
    init_integration: MockConfigEntry,
    controller: HubController,
    camera_spec: ClipSpec,
) -> None:
    """No room and nothing a viewer could play as is: refused, with the reason in diagnostics."""
    bridge = init_integration.runtime_data
    held = transcode_budget.try_reserve(100.0, "another camera's recording")
    assert held is not None
    viewer = await VIEWERS.set_up(controller)
    assert await viewer.select() == {}
    async with asyncio.timeout(60):
        while not bridge.live.diagnostics()["active"] or (
            "source" not in bridge.live.diagnostics()["active"][0]
        ):
            await asyncio.sleep(0.2)
    active = bridge.live.diagnostics()["active"][0]
    assert "; refused: this machine's transcoding capacity is in use" in active["reason"]
    await asyncio.sleep(2)  # parts keep coming; none of them becomes video for this viewer
    assert viewer.packets == []
    assert bridge.live.diagnostics()["transcoders"] == []
    assert transcode_budget.held == ["another camera's recording"]
    held.release()
    await viewer.close()


async def test_start_diagnostics_say_where_the_time_went(
    hass: HomeAssistant, init_integration: MockConfigEntry, controller: HubController
) -> None:
    """Per session: camera connect (cold) or not (warm), first part, keyframe and packet."""
    bridge = init_integration.runtime_data
    assert not bridge.recorder.prebuffer.running  # recording is off: the first viewer is cold
    cold = await VIEWERS.set_up(controller)
    assert await cold.select() == {}
    await cold.wait_packets(10)
    start = bridge.live.diagnostics()["active"][0]["stats"]["start"]
    assert start["camera_stream"] == "connected for this viewer"
    assert 0 < start["camera_ready_ms"] <= start["first_part_ms"] <= start["first_packet_ms"]
    # The stream starts at a keyframe: the first packet sent belongs to it.
    assert start["first_keyframe_ms"] == start["first_packet_ms"]
    assert start["first_keyframe_from"] in ("next keyframe", "keyframe in progress")
    assert start["first_keyframe_source"] == "parts"  # HA's stream: the direct path is off
    assert await cold.select(SessionCommand.END) == {}
    await hass.async_block_till_done()
    assert bridge.live.history[-1]["stats"]["start"] == start

    warm = await VIEWERS.set_up(controller)
    assert await warm.select() == {}
    await warm.wait_packets(10)
    start = bridge.live.diagnostics()["active"][0]["stats"]["start"]
    assert start["camera_stream"] == "already running"
    if start["first_keyframe_from"] == "keyframe in progress":
        # Replayed at once: the keyframe in progress goes out before any new part arrives.
        assert start["keyframe_in_progress_age_ms"] <= 1000
        assert start["first_part_ms"] is None or start["first_packet_ms"] <= start["first_part_ms"]
    else:
        assert start["keyframe_in_progress_age_ms"] is None
    assert await warm.select(SessionCommand.END) == {}


async def test_copy_viewer_asking_for_much_less_moves_to_a_transcoder(
    hass: HomeAssistant, init_integration: MockConfigEntry, controller: HubController
) -> None:
    """RECONFIGURE to a far lower bitrate: same SSRC and sequence, transcoded from an IDR."""
    bridge = init_integration.runtime_data
    viewer = await VIEWERS.set_up(controller)
    assert await viewer.select(fps=25) == {}
    await viewer.wait_frames(3, FPS)
    assert bridge.live.diagnostics()["active"][0]["mode"] == "copy"
    copied = len(viewer.packets)
    assert await viewer.select(SessionCommand.RECONFIGURE, bitrate=132, fps=25) == {}
    active = bridge.live.diagnostics()["active"][0]
    assert active["mode"] == "transcode"
    assert active["reason"].startswith("reconfigured: viewer lowered its bitrate to 132 kbit/s")
    async with asyncio.timeout(60):
        while len(access_units(viewer.packets[copied:])) < 2 * FPS:
            await asyncio.sleep(0.2)
    assert viewer.response is not None
    # Over the switch: one SSRC, contiguous sequence numbers, every AU decodable, the picture
    # never stepping back (it may skip the frames the transcoder needs to pass the copy).
    _check_stream(viewer, viewer.response.video_ssrc or 0, max_step=FPS)
    units = access_units(viewer.packets)
    copied_units = access_units(viewer.packets[:copied])
    camera_sps = {n for u in copied_units for n in u.nals if n[0] & 0x1F == 7}
    sps = [(i, n) for i, u in enumerate(units) for n in u.nals if n[0] & 0x1F == 7]
    switch = next(i for i, n in sps if n not in camera_sps)
    assert 5 in units[switch].types, "the transcoded stream starts at an IDR"
    assert all(n not in camera_sps for i, n in sps if i >= switch), "no copied IDR after it"
    gap = (units[switch].timestamp - units[switch - 1].timestamp) % 2**32
    assert 0 < gap < 5 * 90_000, "the RTP clock moves forward over the switch"
    transcoders = bridge.live.diagnostics()["transcoders"]
    assert [(t["target"], t["viewers"]) for t in transcoders] == [("640x360@25", 1)]
    assert await viewer.select(SessionCommand.END) == {}
    await hass.async_block_till_done()
    assert bridge.live.diagnostics()["transcoders"] == []
