"""Live sessions that end while they start, refused STARTs, per-connection binding.

The manager runs with a real ``LiveFeed`` over a prebuffer stand-in whose start can be held,
and real UDP sockets: each test holds one awaited step of a START, ends the viewer exactly
there (END, HAP connection closed, camera off) and checks that nothing stays attached.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from unittest.mock import patch

import pytest

from custom_components.hksv.hap.definitions import HapStatus, HapStatusError
from custom_components.hksv.hap.driver import HapClient
from custom_components.hksv.hap.rtp_stream import (
    SETUP_ENDPOINTS_IDLE,
    AudioRtpParameters,
    EndpointAddress,
    IPVersion,
    SelectedAudioCodecParameters,
    SelectedAudioParameters,
    SelectedRTPStreamConfiguration,
    SelectedVideoCodecParameters,
    SelectedVideoParameters,
    SessionCommand,
    SessionControl,
    SetupEndpointsRequest,
    SetupEndpointsResponse,
    SetupStatus,
    SrtpParameters,
    StreamingState,
    VideoAttributes,
    VideoRtpParameters,
)
from custom_components.hksv.live.manager import LiveStreamManager
from custom_components.hksv.live.source import LiveFeed
from custom_components.hksv.live.viewers import LiveOptions

CLIENT = HapClient(("127.0.0.1", 50123), None, True, None, local_address="127.0.0.1")
OTHER = HapClient(("127.0.0.1", 50124), None, True, None, local_address="127.0.0.1")
SESSION = bytes(range(16))
KEY, SALT = bytes(range(16)), bytes(range(14))


@dataclass
class _View:
    pending: Any = None

    def unsubscribe(self) -> None:
        pass


class _Prebuffer:
    """The prebuffer as the feed sees it; ``gate`` holds ``async_start`` when set."""

    def __init__(self) -> None:
        self.running = False
        self.stale = False
        self.holders: set[str] = set()
        self.gate: asyncio.Event | None = None
        self.starting = asyncio.Event()
        self.part_listeners = 0

    def hold(self, holder: str) -> None:
        self.holders.add(holder)

    def release(self, holder: str) -> None:
        self.holders.discard(holder)

    async def async_start(self) -> None:
        self.starting.set()
        if self.gate is not None:
            await self.gate.wait()
        self.running = True

    async def async_stop(self) -> None:
        self.running = False

    def open_live(self, on_gop: None = None, on_part: Any = None, on_error: Any = None) -> _View:
        if on_part is None:
            return _View()
        self.part_listeners += 1

        def unsubscribe() -> None:
            self.part_listeners -= 1

        view = _View()
        view.unsubscribe = unsubscribe  # type: ignore[method-assign]
        return view


class _Publisher:
    def __init__(self) -> None:
        self.status: dict[int, StreamingState] = {}

    def set_streaming_status(self, slot: int, status: StreamingState) -> None:
        self.status[slot] = status


def _manager(prebuffer: _Prebuffer, publisher: _Publisher) -> LiveStreamManager:
    feed = LiveFeed(
        prebuffer,  # type: ignore[arg-type]
        recording_wants_stream=lambda: False,
        linger_seconds=0.0,
        log_name="test",
    )
    manager = LiveStreamManager(
        slots=1,
        feed=feed,
        publisher=publisher,
        source_profile=lambda: (None, None),
        options=LiveOptions(),
        on_change=lambda: None,
        log_name="test",
    )
    manager.set_allowed(True)
    return manager


def _setup_request() -> bytes:
    return SetupEndpointsRequest(
        session_id=SESSION,
        address=EndpointAddress(IPVersion.IPV4, "127.0.0.1", 40000, 40002),
        video_srtp=SrtpParameters(0, KEY, SALT),
        audio_srtp=SrtpParameters(0, KEY, SALT),
    ).encode()


def _start(video_pt: int = 99, audio_pt: int = 110) -> bytes:
    """Return a START shaped like iOS's, with Opus audio."""
    return SelectedRTPStreamConfiguration(
        SessionControl(SESSION, SessionCommand.START),
        video=SelectedVideoParameters(
            codec_type=0,
            codec_parameters=SelectedVideoCodecParameters(profile=2, level=2),
            attributes=VideoAttributes(width=1280, height=720, frame_rate=30),
            rtp=VideoRtpParameters(
                payload_type=video_pt,
                ssrc=1,
                max_bitrate=299,
                rtcp_interval=0.5,
                max_mtu=1378,
            ),
        ),
        audio=SelectedAudioParameters(
            codec_type=3,
            codec_parameters=SelectedAudioCodecParameters(
                channels=1, bitrate_mode=0, sample_rate=1, packet_time=20
            ),
            rtp=AudioRtpParameters(
                payload_type=audio_pt,
                ssrc=2,
                max_bitrate=24,
                rtcp_interval=5.0,
                comfort_noise_payload_type=13,
            ),
            comfort_noise=0,
        ),
    ).encode()


def _end_actions(manager: LiveStreamManager) -> dict[str, Callable[[], None]]:
    return {
        "end": lambda: manager.select_stream(
            0,
            SelectedRTPStreamConfiguration(SessionControl(SESSION, SessionCommand.END)).encode(),
            CLIENT,
        ),
        "hap_closed": lambda: manager.connection_lost(CLIENT.address),
        "camera_off": lambda: manager.set_allowed(False),
    }


ENDINGS = ["end", "hap_closed", "camera_off"]


async def _settle(manager: LiveStreamManager) -> None:
    """Let every task the manager started finish."""
    for _ in range(5):
        while manager._tasks:
            await asyncio.gather(*list(manager._tasks), return_exceptions=True)
        await asyncio.sleep(0)


@pytest.mark.parametrize("ending", ENDINGS)
async def test_end_while_camera_stream_starts(socket_enabled: None, ending: str) -> None:
    """Ended while the camera stream starts: no audio encoder, no listener, no hold, no socket."""
    prebuffer, publisher = _Prebuffer(), _Publisher()
    manager = _manager(prebuffer, publisher)
    prebuffer.gate = asyncio.Event()
    manager.setup_endpoints(0, _setup_request(), CLIENT)
    setup = manager._slots[0].setup
    assert setup is not None
    sockets = (setup.video_socket, setup.audio_socket)
    manager.select_stream(0, _start(), CLIENT)
    await prebuffer.starting.wait()  # the START waits for the camera right now

    _end_actions(manager)[ending]()
    prebuffer.gate.set()
    await _settle(manager)

    assert manager._media._opus == {}, "an Opus encoder is left encoding for nobody"
    assert manager.feed.viewers == 0
    assert prebuffer.holders == set(), "the camera stays held"
    assert prebuffer.part_listeners == 0
    assert [s.fileno() for s in sockets] == [-1, -1]
    assert manager.history[-1]["end_reason"] in ("end", "hap_connection_closed", "camera_off")
    await manager.async_stop()


@pytest.mark.parametrize("ending", ENDINGS)
async def test_end_while_sockets_open(socket_enabled: None, ending: str) -> None:
    """Ended inside ``MediaEndpoint.async_open``: both UDP sockets are closed all the same."""
    prebuffer, publisher = _Prebuffer(), _Publisher()
    manager = _manager(prebuffer, publisher)
    manager.setup_endpoints(0, _setup_request(), CLIENT)
    setup = manager._slots[0].setup
    assert setup is not None
    sockets = (setup.video_socket, setup.audio_socket)
    loop = asyncio.get_running_loop()
    original = loop.create_datagram_endpoint
    inside, gate = asyncio.Event(), asyncio.Event()

    async def held(*args: Any, **kwargs: Any) -> Any:
        inside.set()
        await gate.wait()
        return await original(*args, **kwargs)

    with patch.object(loop, "create_datagram_endpoint", held):
        manager.select_stream(0, _start(), CLIENT)
        await inside.wait()
        _end_actions(manager)[ending]()
        gate.set()
        await _settle(manager)
    await asyncio.sleep(0)  # transports close on the next loop iteration

    assert [s.fileno() for s in sockets] == [-1, -1], "a UDP socket leaked"
    assert manager._media._opus == {}
    assert manager.feed.viewers == 0
    assert prebuffer.holders == set()
    await manager.async_stop()


async def test_failed_camera_start_ends_session_with_reason(socket_enabled: None) -> None:
    """A camera integration raising anything at start ends the session with its reason."""
    prebuffer, publisher = _Prebuffer(), _Publisher()
    manager = _manager(prebuffer, publisher)

    async def broken() -> None:
        raise TimeoutError("camera did not answer")

    prebuffer.async_start = broken  # type: ignore[method-assign]
    manager.setup_endpoints(0, _setup_request(), CLIENT)
    manager.select_stream(0, _start(), CLIENT)
    await _settle(manager)
    assert manager._slots[0].idle
    assert publisher.status[0] == StreamingState.AVAILABLE
    ended = manager.history[-1]
    assert ended["end_reason"] == "error"
    assert "camera did not answer" in ended["error"]
    assert manager._media._opus == {}
    await manager.async_stop()


@pytest.mark.parametrize(("video_pt", "audio_pt"), [(200, 110), (99, 128)])
async def test_refused_start_frees_the_slot(
    socket_enabled: None, video_pt: int, audio_pt: int
) -> None:
    """A START refused after the setup timer stopped frees the sockets and says why."""
    prebuffer, publisher = _Prebuffer(), _Publisher()
    manager = _manager(prebuffer, publisher)
    manager.setup_endpoints(0, _setup_request(), CLIENT)
    setup = manager._slots[0].setup
    assert setup is not None
    with pytest.raises((HapStatusError, ValueError)) as err:
        manager.select_stream(0, _start(video_pt, audio_pt), CLIENT)
    if isinstance(err.value, HapStatusError):
        assert err.value.status == HapStatus.INVALID_VALUE_IN_REQUEST
    assert [setup.video_socket.fileno(), setup.audio_socket.fileno()] == [-1, -1]
    assert manager._slots[0].idle
    assert publisher.status[0] == StreamingState.AVAILABLE
    refused = manager.history[-1]
    assert refused["end_reason"] == "start_refused"
    assert "payload type" in refused["error"]
    await manager.async_stop()


async def test_other_connection_cannot_read_keys_or_start(socket_enabled: None) -> None:
    """Only the connection that set a slot up reads its keys back, starts or ends it."""
    prebuffer, publisher = _Prebuffer(), _Publisher()
    manager = _manager(prebuffer, publisher)
    manager.setup_endpoints(0, _setup_request(), CLIENT)
    own = SetupEndpointsResponse.decode(manager.read_setup_endpoints(0, CLIENT.address))
    assert own.status == SetupStatus.SUCCESS and own.video_srtp is not None
    assert manager.read_setup_endpoints(0, OTHER.address) == SETUP_ENDPOINTS_IDLE
    assert manager.read_setup_endpoints(0) == SETUP_ENDPOINTS_IDLE
    for command in (SessionCommand.START, SessionCommand.END):
        with pytest.raises(HapStatusError) as err:
            manager.select_stream(
                0,
                _start()
                if command is SessionCommand.START
                else SelectedRTPStreamConfiguration(SessionControl(SESSION, command)).encode(),
                OTHER,
            )
        assert err.value.status == HapStatus.INSUFFICIENT_PRIVILEGES
    # The other connection's own setup is answered BUSY, and only it reads that.
    manager.setup_endpoints(0, _setup_request(), OTHER)
    busy = SetupEndpointsResponse.decode(manager.read_setup_endpoints(0, OTHER.address))
    assert busy.status == SetupStatus.BUSY
    own = SetupEndpointsResponse.decode(manager.read_setup_endpoints(0, CLIENT.address))
    assert own.status == SetupStatus.SUCCESS
    manager.select_stream(0, _start(), CLIENT)
    await _settle(manager)
    assert manager.viewers == 1
    await manager.async_stop()


async def test_stop_in_the_turn_a_session_task_ended_does_not_spin() -> None:
    """A stop that runs in the same loop turn as a session task's last step still finishes.

    The task is done, but its done callback (which forgets it) is only queued; gather over
    done tasks returns without yielding, so waiting "while tasks remain" never let that
    callback run and spun on the event loop for good: CI's teardown hang, whose thread dump
    showed the main thread busy in this gather.
    """
    manager = _manager(_Prebuffer(), _Publisher())

    async def session_step() -> None:
        return None

    manager._spawn(session_step(), "session step")  # runs first in the next turn
    stop = asyncio.get_running_loop().create_task(manager.async_stop())  # same turn, after
    real_gather = asyncio.gather
    calls = 0

    def gather(*awaitables: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > 100:
            raise RuntimeError("async_stop waits without ever yielding to the event loop")
        return real_gather(*awaitables, **kwargs)

    with patch("custom_components.hksv.live.slot_sessions.asyncio.gather", gather):
        await stop
    assert calls <= 3
    assert manager._tasks == set()
