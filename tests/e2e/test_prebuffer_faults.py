"""The prebuffer on Home Assistant's real stream worker: it isolates its consumers and always
comes back (issue 13, items 3 and 4).

The camera is a ``LiveFeedSource``: one paced MPEG-TS feed (2 s GOPs, frame counters drawn in
every picture) that HA's real stream worker joins mid-GOP. The hub is the aiohomekit emulator
over real TCP (HAP and HDS); HLS is fetched through HA's real HTTP views.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Generator
from datetime import timedelta
import io
from itertools import pairwise
import logging
from pathlib import Path
import re
from typing import Any
from unittest.mock import patch

import aiohttp
import av
from homeassistant.components.stream.const import HLS_PROVIDER
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import HomeAssistantError
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_fire_time_changed

from custom_components.hksv.media.fmp4 import build_fragment, parse_fragments, parse_init
from custom_components.hksv.source import attachment as attachment_module
from custom_components.hksv.source.attachment import WATCHDOG_INTERVAL_SECONDS
from custom_components.hksv.source.gop import GopAssembler
from custom_components.hksv.source.part import MediaPart
from custom_components.hksv.source.prebuffer import LONG_PROBE_OPTIONS, PROVIDER_NAME
from custom_components.hksv.source.worker_log import HIDDEN_WORKER_ERROR
from tests.conftest import CAMERA_ID, MOTION_ID, FakeCamera, free_port
from tests.e2e.live_source import LiveFeedSource
from tests.hub.emulator import HomeHub, media_seconds
from tests.hub.hds_client import HDSClient
from tests.media import ClipSpec, read_frame_counter, write_clip

FPS = 25
PREBUFFER_S = 4.0
CLIP = ClipSpec(seconds=60.0, fps=FPS, gop_seconds=2.0)
CLIP_FRAMES = int(CLIP.seconds * FPS)
STREAM_LOGGER = "homeassistant.components.stream"


@pytest.fixture
def known_source() -> dict[str, Any]:
    """The camera's format is known (it matches the clip): no probe, no offer change."""
    return {
        "width": CLIP.width,
        "height": CLIP.height,
        "fps": float(FPS),
        "audio_codec": "aac-lc",
        "audio_sample_rate": CLIP.audio_rate,
        "audio_channels": CLIP.audio_channels,
    }


@pytest.fixture
def with_doorbell() -> bool:
    """No doorbell needed here."""
    return False


@pytest.fixture(scope="session")
def clip_cache() -> dict[str, Path]:
    """Return the generated clip, once per session."""
    return {}


@pytest.fixture
def feed_running() -> bool:
    """Return whether the camera is up when the test starts (else the test starts it)."""
    return True


@pytest.fixture
async def live_feed(
    hass: HomeAssistant,
    socket_enabled: None,
    clip_cache: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    feed_running: bool,
) -> AsyncGenerator[LiveFeedSource]:
    """Serve the clip as a live feed (joined mid-GOP) and set up `stream` (LL-HLS)."""
    if "clip" not in clip_cache:
        directory = tmp_path_factory.getbasetemp() / "prebuffer-clips"
        directory.mkdir(exist_ok=True)
        clip_cache["clip"] = await hass.async_add_executor_job(
            write_clip, directory / "clip.ts", CLIP
        )
    assert await async_setup_component(hass, "stream", {"stream": {"ll_hls": True}})
    source = LiveFeedSource(clip_cache["clip"], free_port())
    if feed_running:
        await source.start()
    with patch("homeassistant.components.stream.STREAM_RESTART_INCREMENT", 1):
        yield source
    await source.stop()


@pytest.fixture
def stream_source(live_feed: LiveFeedSource) -> str:
    """Point the test camera at the live feed."""
    return live_feed.url


@pytest.fixture
async def home_hub(
    hass: HomeAssistant, init_integration: MockConfigEntry, session_keys: None
) -> AsyncGenerator[HomeHub]:
    """Pair a hub, select from the offer and enable recording (the prebuffer starts)."""
    bridge = init_integration.runtime_data
    hub = HomeHub(bridge.port)
    await hub.pair(bridge.setup_code)
    await hub.enable_recording(await hub.select_from_offer(), audio=True)
    yield hub
    await hub.close()


async def _wait_for(condition: Callable[[], Any], timeout: float = 90) -> None:
    """Wait until ``condition()`` holds (generous: real time under load)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.1)


async def _record(hass: HomeAssistant, hub: HomeHub, stream_id: int, seconds: float) -> HDSClient:
    """Fire motion, record ``seconds`` of media and close; return the closed client."""
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client = await hub.open_data_stream()
    client.timeout = 90
    assert (await client.open_recording(stream_id)).status == 0
    await client.wait_until(lambda: media_seconds(client.recordings[stream_id]) >= seconds)
    client.close_stream(stream_id, 0)
    await client.close()
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await hass.async_block_till_done()
    return client


def _clip_counters(packets: list[bytes]) -> list[int]:
    """Decode a clip and return its frame counters."""
    with av.open(io.BytesIO(b"".join(packets))) as container:
        return [read_frame_counter(frame) for frame in container.decode(video=0)]


def _gop_counters(gop: Any) -> list[int]:
    """Decode one buffered GOP and return its frame counters."""
    tracks = [(gop.init.video.track_id, gop.video[0].decode_time, gop.video)]
    data = gop.init.without_audio().data + build_fragment(1, tracks)
    with av.open(io.BytesIO(data)) as container:
        return [read_frame_counter(frame) for frame in container.decode(video=0)]


def _fragment_times(packets: list[bytes]) -> list[tuple[int, int]]:
    """Return (first decode time, end) of the video of every fragment of a clip."""
    init = parse_init(packets[0])
    assert init.video is not None
    times = []
    for fragment in packets[1:]:
        samples = parse_fragments(fragment, init)[init.video.track_id]
        times.append((samples[0].decode_time, samples[-1].decode_time + samples[-1].duration))
    return times


def _hksv_errors(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    """Return hksv's ERROR records containing ``text``."""
    return [
        r
        for r in caplog.records
        if r.name.startswith("custom_components.hksv")
        and r.levelno == logging.ERROR
        and text in r.getMessage()
    ]


# -- item 3: one consumer's error never reaches Home Assistant ---------------------------------


class _FailingFeedListener:
    """A live-view consumer that fails on every part."""

    def on_part(self, _part: Any) -> None:
        raise RuntimeError("live consumer broke")


class _CountingFeedListener:
    """A live-view consumer that counts the parts it gets."""

    def __init__(self) -> None:
        self.parts = 0

    def on_part(self, _part: Any) -> None:
        self.parts += 1


async def _fetch_next_parts(
    client: Any, stream: Any, playlist_url: str, count: int
) -> list[tuple[int, int]]:
    """Ask HA's LL-HLS views for the next ``count`` parts, as a player does; return them.

    Each request blocks in HA until that part exists (``_HLS_msn``/``_HLS_part``); HA answers
    404 when its HLS output was not told of new parts in time.
    """
    track = stream.outputs()[HLS_PROVIDER]
    fetched = []
    for _ in range(count):
        segment = track.last_segment
        msn, part = segment.sequence, len(segment.parts)
        response = await client.get(f"{playlist_url}?_HLS_msn={msn}&_HLS_part={part}")
        assert response.status == 200, (msn, part, response.status)
        playlist = await response.text()
        # The part asked for, or part 0 of the next segment when the segment closed.
        listed = re.findall(r'#EXT-X-PART:.*URI="\./segment/(\d+)\.(\d+)\.m4s"', playlist)
        listed_parts = {(int(a), int(b)) for a, b in listed}
        wanted = (msn, part) if (msn, part) in listed_parts else (msn + 1, 0)
        assert wanted in listed_parts, (wanted, sorted(listed_parts)[-3:])
        base = playlist_url.rsplit("/", 1)[0]
        data = await client.get(f"{base}/segment/{wanted[0]}.{wanted[1]}.m4s")
        assert data.status == 200
        assert len(await data.read()) > 0
        fetched.append(wanted)
    return fetched


async def test_failing_consumers_leave_hls_and_recording_working(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    fake_camera: FakeCamera,
    hass_client_no_auth: Callable[[], Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A GOP, a part and a live-view consumer that raise on every call: each is dropped and
    its owner told (one log line each); HA's own LL-HLS keeps serving parts through its HTTP
    views, the other consumers keep their media, and a recording works.
    """
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    await _wait_for(lambda: prebuffer.buffered_seconds >= PREBUFFER_S + 2)
    stream = fake_camera.stream
    assert stream is not None
    # HA's HLS joins after hksv: its output is told of each part after ours.
    stream.add_provider(HLS_PROVIDER)
    assert list(stream.outputs()) == [PROVIDER_NAME, HLS_PROVIDER]
    client = await hass_client_no_auth()
    master = await client.get(stream.endpoint_url(HLS_PROVIDER))
    assert master.status == 200
    playlist_url = stream.endpoint_url(HLS_PROVIDER).replace("master_playlist", "playlist")
    await _wait_for(lambda: stream.outputs()[HLS_PROVIDER].last_segment is not None)

    told: list[tuple[str, Exception]] = []

    def failing_gop(_gop: Any) -> None:
        raise ValueError("GOP consumer broke")

    def failing_part(*_part: Any) -> None:
        raise KeyError("part consumer broke")

    healthy_parts: list[int] = []
    healthy_gops: list[Any] = []
    unsubscribe_gop = prebuffer.subscribe(failing_gop, lambda err: told.append(("gop", err)))
    failing_view = prebuffer.open_live(
        on_part=failing_part, on_error=lambda err: told.append(("part", err))
    )
    healthy_view = prebuffer.open_live(
        healthy_gops.append, lambda part: healthy_parts.append(part.epoch)
    )
    feed = bridge.live.feed
    counting = _CountingFeedListener()
    feed.add_listener(_FailingFeedListener())
    await feed.async_add(counting)

    try:
        fetched = await _fetch_next_parts(client, stream, playlist_url, 6)
        assert len(set(fetched)) == 6
        # Each failing consumer was dropped after its first error and its owner told.
        assert [kind for kind, _err in sorted(told, key=lambda t: t[0])] == ["gop", "part"]
        assert prebuffer.failed_consumers == 2
        assert feed.failed_listeners == 1
        assert len(_hksv_errors(caplog, "consumer of the camera stream failed")) == 2
        assert len(_hksv_errors(caplog, "live view consumer failed")) == 1
        # The consumers after them kept getting media.
        parts_before = len(healthy_parts)
        counted = counting.parts
        await _wait_for(
            lambda: len(healthy_parts) > parts_before + 3 and counting.parts > counted + 3
        )
        await _wait_for(lambda: len(healthy_gops) >= 2)

        # A recording works meanwhile, from its pre-roll through live video.
        recorded = await _record(hass, home_hub, 1, PREBUFFER_S + 4)
        counters = await hass.async_add_executor_job(
            _clip_counters, recorded.recordings[1].complete_packets
        )
        assert all(1 <= (b - a) % CLIP_FRAMES <= 2 for a, b in pairwise(counters))
        assert len(counters) >= (PREBUFFER_S + 4) * FPS * 0.9
        summary = bridge.recorder.last_recording
        assert summary.outcome.value == "completed", summary
        assert summary.error is None
    finally:
        unsubscribe_gop()
        failing_view.unsubscribe()
        healthy_view.unsubscribe()
        feed.remove(counting)
        if (hls := stream.outputs().get(HLS_PROVIDER)) is not None:
            await stream.remove_provider(hls)  # clears its idle timer


async def test_a_prebuffer_fault_leaves_parts_flowing(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The prebuffer's own GOP assembly raises on every part: logged once, part consumers
    (live view) still get every part, and GOPs come back once the fault is gone.
    """
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    await _wait_for(lambda: prebuffer.buffered_seconds >= 2)
    parts: list[int] = []
    view = prebuffer.open_live(on_part=lambda part: parts.append(part.epoch))
    try:
        with patch.object(GopAssembler, "add", side_effect=RuntimeError("assembler broke")):
            await _wait_for(lambda: len(parts) >= 6)
        assert len(_hksv_errors(caplog, "could not read a part")) == 1
        gops: list[Any] = []
        unsubscribe = prebuffer.subscribe(gops.append)
        await _wait_for(lambda: len(gops) >= 1)
        unsubscribe()
    finally:
        view.unsubscribe()


async def test_a_recording_whose_own_consumer_fails_ends_with_a_reason(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
) -> None:
    """The recording's own live-media consumer raises: the clip ends at once as failed, with
    the reason, instead of waiting for a camera that seems silent; the next clip records.
    """
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    await _wait_for(lambda: prebuffer.buffered_seconds >= PREBUFFER_S + 2)
    from custom_components.hksv.recording import feed as recording_feed

    real_put = recording_feed.LiveFeed.put
    broken = True

    def put(self: Any, item: Any) -> None:
        if broken:
            raise RuntimeError("queue broke")
        real_put(self, item)

    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    with patch.object(recording_feed.LiveFeed, "put", put):
        client = await home_hub.open_data_stream()
        client.timeout = 90
        assert (await client.open_recording(1)).status == 0
        await client.wait_until(lambda: client.recordings[1].closed)
        await client.close()
        await _wait_for(lambda: not bridge.recorder.streaming)
        broken = False
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    summary = bridge.recorder.last_recording
    assert summary.outcome.value == "failed"
    assert "queue broke" in summary.error
    assert prebuffer.failed_consumers >= 1

    recorded = await _record(hass, home_hub, 2, PREBUFFER_S + 2)
    assert media_seconds(recorded.recordings[2]) >= PREBUFFER_S + 2
    assert bridge.recorder.last_recording.outcome.value == "completed"


# -- item 4: the prebuffer always comes back -------------------------------------------------


class VendorCameraError(Exception):
    """What a camera vendor's library raises."""


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError(),
        aiohttp.ClientConnectionError("camera unreachable"),
        VendorCameraError("token expired"),
    ],
    ids=["timeout", "client_error", "vendor_error"],
)
async def test_first_attach_failing_with_any_error_is_retried(
    hass: HomeAssistant,
    live_feed: LiveFeedSource,
    fake_camera: FakeCamera,
    init_integration: MockConfigEntry,
    session_keys: None,
    error: Exception,
) -> None:
    """The camera's stream_source raises on the first attach: the problem is shown, and the
    watchdog attaches once the camera answers; the camera then records.
    """
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    fake_camera.stream_error = error
    hub = HomeHub(bridge.port)
    try:
        await hub.pair(bridge.setup_code)
        await hub.enable_recording(await hub.select_from_offer(), audio=True)
        await hass.async_block_till_done()
        assert prebuffer.running
        assert prebuffer.source_problem is not None
        assert type(error).__name__ in prebuffer.source_problem
        assert hass.states.get("binary_sensor.front_door_recording").state == "unavailable"

        fake_camera.stream_error = None
        async_fire_time_changed(
            hass, dt_util.utcnow() + timedelta(seconds=WATCHDOG_INTERVAL_SECONDS)
        )
        await _wait_for(lambda: prebuffer.buffered_seconds >= PREBUFFER_S + 2)
        assert prebuffer.source_problem is None
        assert hass.states.get("binary_sensor.front_door_recording").state != "unavailable"
        recorded = await _record(hass, hub, 1, PREBUFFER_S + 2)
        assert media_seconds(recorded.recordings[1]) >= PREBUFFER_S + 2
        assert bridge.recorder.last_recording.outcome.value == "completed"
    finally:
        await hub.close()


async def test_a_camera_that_comes_back_is_attached_without_waiting_for_the_watchdog(
    hass: HomeAssistant,
    live_feed: LiveFeedSource,
    fake_camera: FakeCamera,
    init_integration: MockConfigEntry,
    session_keys: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """After a restart the camera's integration may load after hksv: the first attach fails,
    and the camera entity's next state change attaches at once (no 15 s watchdog wait), so
    the hub's first event after the restart records.
    """
    # The watchdog (armed when recording starts below) must not be what attaches it.
    monkeypatch.setattr(attachment_module, "WATCHDOG_INTERVAL_SECONDS", 24 * 3600)
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    fake_camera.stream_error = HomeAssistantError("Camera not found")
    hub = HomeHub(bridge.port)
    try:
        await hub.pair(bridge.setup_code)
        await hub.enable_recording(await hub.select_from_offer(), audio=True)
        await hass.async_block_till_done()
        assert prebuffer.running and prebuffer.source_problem is not None
        attachments = prebuffer.reattachments

        fake_camera.stream_error = None
        state = hass.states.get(CAMERA_ID)
        assert state is not None
        hass.states.async_set(CAMERA_ID, state.state, {**state.attributes, "reloaded": True})
        # No time is fired: only the state change can attach it.
        await _wait_for(lambda: prebuffer.buffered_seconds >= PREBUFFER_S + 2)
        assert prebuffer.source_problem is None
        assert prebuffer.reattachments == attachments + 1
        recorded = await _record(hass, hub, 1, PREBUFFER_S + 2)
        assert media_seconds(recorded.recordings[1]) >= PREBUFFER_S + 2
    finally:
        await hub.close()


async def test_reattach_starts_a_new_epoch_without_stale_media(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    fake_camera: FakeCamera,
) -> None:
    """Our provider idles out and the watchdog re-attaches to the same Stream (its worker
    restarts, stream ids from 0 again): consumers see a new epoch, the buffer holds only new
    media, and a clip opened right away has no stale pre-roll and time that only goes forward.
    """
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    await _wait_for(lambda: prebuffer.buffered_seconds >= PREBUFFER_S + 2)
    stale = {
        c for gop in prebuffer.gops for c in await hass.async_add_executor_job(_gop_counters, gop)
    }
    stale_epochs = {gop.epoch for gop in prebuffer.gops}

    parts: list[tuple[int, int]] = []  # (epoch, first video decode time) per part

    def on_part(part: MediaPart) -> None:
        if part.video:
            parts.append((part.epoch, part.video[0].decode_time))

    view = prebuffer.open_live(on_part=on_part)
    try:
        await _wait_for(lambda: len(parts) >= 2)
        stream = fake_camera.stream
        assert stream is not None
        # The idle timer removes the provider (the only one: the worker stops).
        await stream.remove_provider(stream.outputs()[PROVIDER_NAME])
        async_fire_time_changed(
            hass, dt_util.utcnow() + timedelta(seconds=WATCHDOG_INTERVAL_SECONDS)
        )
        await _wait_for(lambda: prebuffer.reattachments >= 1)
        assert fake_camera.stream is stream
        # Stale GOPs and the stale GOP in progress are gone at once.
        assert all(gop.epoch not in stale_epochs for gop in prebuffer.gops)
        await _wait_for(lambda: len(prebuffer.gops) >= 1)
        assert {gop.epoch for gop in prebuffer.gops}.isdisjoint(stale_epochs)

        # Epochs only grow, and time only goes forward within each.
        epochs = [epoch for epoch, _time in parts]
        assert epochs == sorted(epochs)
        assert len(set(epochs)) >= 2
        for (epoch_a, time_a), (epoch_b, time_b) in pairwise(parts):
            assert epoch_a != epoch_b or time_b > time_a

        recorded = await _record(hass, home_hub, 1, PREBUFFER_S)
        packets = recorded.recordings[1].complete_packets
        counters = await hass.async_add_executor_job(_clip_counters, packets)
        assert stale.isdisjoint(counters)
        assert all(1 <= (b - a) % CLIP_FRAMES <= 2 for a, b in pairwise(counters))
        times = _fragment_times(packets)
        assert all(end_a <= start_b for (_s, end_a), (start_b, _e) in pairwise(times))
    finally:
        view.unsubscribe()


@pytest.fixture
def silenced_stream_logger() -> Generator[None]:
    """Set HA's stream logger to CRITICAL, as many users do (logger: integration)."""
    logger = logging.getLogger(STREAM_LOGGER)
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.mark.parametrize("feed_running", [False])
async def test_worker_health_with_the_stream_logger_silenced(
    hass: HomeAssistant,
    silenced_stream_logger: None,
    live_feed: LiveFeedSource,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    fake_camera: FakeCamera,
) -> None:
    """With HA's stream logger at CRITICAL the worker's failures are still known: the camera
    refuses connections, the worker error is reported (without its hidden text) and the
    next retry probes long; once the camera answers, video flows, the error clears and the
    Stream gets its own probe options back.
    """
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    await _wait_for(lambda: prebuffer.worker_errors >= 1)
    assert prebuffer.worker_error == HIDDEN_WORKER_ERROR
    assert prebuffer.diagnostics()["worker_error"] == HIDDEN_WORKER_ERROR
    stream = fake_camera.stream
    assert stream is not None
    assert prebuffer.long_probe
    assert LONG_PROBE_OPTIONS.items() <= stream.pyav_options.items()

    await live_feed.start()
    await _wait_for(lambda: prebuffer.buffered_seconds >= PREBUFFER_S + 2, timeout=120)
    assert prebuffer.worker_error is None
    assert not prebuffer.long_probe
    assert prebuffer.long_probes == 1
    assert not set(LONG_PROBE_OPTIONS) & set(stream.pyav_options)
    recorded = await _record(hass, home_hub, 1, PREBUFFER_S)
    assert media_seconds(recorded.recordings[1]) >= PREBUFFER_S
