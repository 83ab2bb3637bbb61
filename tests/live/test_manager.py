"""LiveStreamManager's HAP policies without Home Assistant: setup, BUSY, ERROR, END, expiry."""

from __future__ import annotations

import asyncio
from typing import Any
from unittest.mock import patch

import pytest

from custom_components.hksv.hap.definitions import HapStatus, HapStatusError
from custom_components.hksv.hap.driver import HapClient
from custom_components.hksv.hap.rtp_stream import (
    EndpointAddress,
    IPVersion,
    SelectedRTPStreamConfiguration,
    SessionCommand,
    SessionControl,
    SetupEndpointsRequest,
    SetupEndpointsResponse,
    SetupStatus,
    SrtpParameters,
    StreamingState,
    decode_selection,
)
from custom_components.hksv.live import manager as manager_module
from custom_components.hksv.live.manager import LiveStreamManager
from custom_components.hksv.live.viewers import LiveOptions

CLIENT = HapClient(("127.0.0.1", 50123), None, True, None, local_address="127.0.0.1")
SESSION = bytes(range(16))


class _Feed:
    holding = False
    parts = 0
    malformed_parts = 0

    def remove(self, listener: Any) -> None:
        pass

    async def async_stop(self) -> None:
        pass


class _Publisher:
    def __init__(self) -> None:
        self.status: dict[int, StreamingState] = {}

    def set_streaming_status(self, slot: int, status: StreamingState) -> None:
        self.status[slot] = status


def _manager(publisher: _Publisher) -> LiveStreamManager:
    manager = LiveStreamManager(
        slots=2,
        feed=_Feed(),  # type: ignore[arg-type]
        publisher=publisher,
        source_profile=lambda: (None, None),
        options=LiveOptions(),
        on_change=lambda: None,
        log_name="test",
    )
    manager.set_allowed(True)
    return manager


def _request(
    session: bytes = SESSION, suite: int = 0, version: IPVersion = IPVersion.IPV4
) -> bytes:
    return SetupEndpointsRequest(
        session_id=session,
        address=EndpointAddress(version, "127.0.0.1", 40000, 40002),
        video_srtp=SrtpParameters(suite, bytes(16), bytes(14)),
        audio_srtp=SrtpParameters(suite, bytes(16), bytes(14)),
    ).encode()


def _command(command: SessionCommand, session: bytes = SESSION) -> bytes:
    return SelectedRTPStreamConfiguration(SessionControl(session, command)).encode()


async def test_setup_answers_and_busy(socket_enabled: None) -> None:
    """A setup succeeds with our address, ports, echoed keys and SSRCs; the next gets BUSY."""
    publisher = _Publisher()
    manager = _manager(publisher)
    assert publisher.status == {0: StreamingState.AVAILABLE, 1: StreamingState.AVAILABLE}
    manager.setup_endpoints(0, _request(), CLIENT)
    response = SetupEndpointsResponse.decode(manager.read_setup_endpoints(0, CLIENT.address))
    assert response.status == SetupStatus.SUCCESS
    assert response.session_id == SESSION
    assert response.address is not None
    assert response.address.address == "127.0.0.1"
    assert response.address.video_port != response.address.audio_port
    assert response.video_srtp == SrtpParameters(0, bytes(16), bytes(14))
    assert response.video_ssrc and response.audio_ssrc
    assert publisher.status[0] == StreamingState.IN_USE
    read = decode_selection(manager.read_selected_stream(0))
    assert read.session_control == SessionControl(SESSION, SessionCommand.SUSPEND)

    manager.setup_endpoints(0, _request(bytes(16)), CLIENT)
    busy = SetupEndpointsResponse.decode(manager.read_setup_endpoints(0, CLIENT.address))
    assert (busy.status, busy.session_id) == (SetupStatus.BUSY, bytes(16))
    await manager.async_stop()
    assert publisher.status[0] == StreamingState.UNAVAILABLE


@pytest.mark.parametrize(
    ("request_", "client"),
    [
        (_request(suite=1), CLIENT),
        (_request(version=IPVersion.IPV6), CLIENT),
        (_request(), HapClient(("127.0.0.1", 1), None, True, None, local_address=None)),
    ],
    ids=["aes256_suite", "ipv6_viewer_on_ipv4_connection", "no_local_address"],
)
async def test_setup_errors(socket_enabled: None, request_: bytes, client: HapClient) -> None:
    """Unusable requests are answered with status ERROR and leave the slot available."""
    publisher = _Publisher()
    manager = _manager(publisher)
    manager.setup_endpoints(0, request_, client)
    assert (
        SetupEndpointsResponse.decode(manager.read_setup_endpoints(0, CLIENT.address)).status == 2
    )
    assert publisher.status[0] == StreamingState.AVAILABLE
    await manager.async_stop()


async def test_refusals(socket_enabled: None) -> None:
    """Garbage is -70410, an unknown session -70410, streaming off -70412."""
    manager = _manager(_Publisher())
    with pytest.raises(HapStatusError) as err:
        manager.setup_endpoints(0, b"\x01\x02\x03", CLIENT)
    assert err.value.status == HapStatus.INVALID_VALUE_IN_REQUEST
    manager.setup_endpoints(0, _request(), CLIENT)
    with pytest.raises(HapStatusError) as err:
        manager.select_stream(0, _command(SessionCommand.START, bytes(16)), CLIENT)
    assert err.value.status == HapStatus.INVALID_VALUE_IN_REQUEST
    with pytest.raises(HapStatusError) as err:
        manager.select_stream(0, _command(SessionCommand.SUSPEND), CLIENT)
    assert err.value.status == HapStatus.INVALID_VALUE_IN_REQUEST  # not started
    manager.set_allowed(False)
    for call in (manager.setup_endpoints, manager.select_stream):
        with pytest.raises(HapStatusError) as err:
            call(1, _request(), CLIENT)
        assert err.value.status == HapStatus.NOT_ALLOWED_IN_CURRENT_STATE
    await manager.async_stop()


async def test_end_and_connection_loss_free_the_slot(socket_enabled: None) -> None:
    """END before START, or the HAP connection closing, frees the slot and its sockets."""
    publisher = _Publisher()
    manager = _manager(publisher)
    manager.setup_endpoints(0, _request(), CLIENT)
    setup = manager._slots[0].setup
    assert setup is not None
    manager.select_stream(0, _command(SessionCommand.END), CLIENT)
    assert setup.video_socket.fileno() == -1
    assert publisher.status[0] == StreamingState.AVAILABLE
    assert (
        SetupEndpointsResponse.decode(manager.read_setup_endpoints(0, CLIENT.address)).status == 2
    )
    manager.setup_endpoints(1, _request(), CLIENT)
    manager.connection_lost(("127.0.0.1", 9))  # another connection: nothing happens
    assert publisher.status[1] == StreamingState.IN_USE
    manager.connection_lost(CLIENT.address)
    assert publisher.status[1] == StreamingState.AVAILABLE
    await manager.async_stop()


async def test_setup_without_start_expires(socket_enabled: None) -> None:
    """A setup that no START follows frees the slot."""
    publisher = _Publisher()
    with patch.object(manager_module, "SETUP_TIMEOUT", 0.05):
        manager = _manager(publisher)
        manager.setup_endpoints(0, _request(), CLIENT)
    await asyncio.sleep(0.2)
    assert publisher.status[0] == StreamingState.AVAILABLE
    assert manager._slots[0].idle
    await manager.async_stop()


async def test_ipv6_setup(socket_enabled: None) -> None:
    """An IPv6 viewer on an IPv6 HAP connection gets an IPv6 endpoint; IPv4-mapped is IPv4."""
    manager = _manager(_Publisher())
    client = HapClient(("::1", 50123), None, True, None, local_address="::1")
    request = SetupEndpointsRequest(
        session_id=SESSION,
        address=EndpointAddress(IPVersion.IPV6, "::1", 40000, 40002),
        video_srtp=SrtpParameters(0, bytes(16), bytes(14)),
        audio_srtp=SrtpParameters(0, bytes(16), bytes(14)),
    ).encode()
    manager.setup_endpoints(0, request, client)
    response = SetupEndpointsResponse.decode(manager.read_setup_endpoints(0, client.address))
    assert response.status == SetupStatus.SUCCESS
    assert response.address is not None
    assert (response.address.ip_version, response.address.address) == (IPVersion.IPV6, "::1")
    mapped = HapClient(("::ffff:127.0.0.1", 1), None, True, None, local_address="::ffff:127.0.0.1")
    manager.setup_endpoints(1, _request(), mapped)
    response = SetupEndpointsResponse.decode(manager.read_setup_endpoints(1, mapped.address))
    assert response.address is not None and response.address.address == "127.0.0.1"
    await manager.async_stop()
