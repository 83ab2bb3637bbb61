"""DataStreamServer over loopback TCP: binding, sessions, matching, timeouts, teardown."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import os
import socket

import pytest

from custom_components.hksv.hds import (
    DataStreamServer,
    HDSConnectionError,
    HDSError,
    connection as connection_module,
    server as server_module,
)
from custom_components.hksv.hds.errors import HDSClosedError
from custom_components.hksv.hds.messages import MessageType
from tests.hub.hds_client import HDSClient

from .common import A2C_KEY, C2A_KEY, CONTROLLER_SALT, SHARED_SECRET, FakeDelegate
from .conftest import HOST, ConnectFactory


async def until(condition: Callable[[], bool]) -> None:
    """Let the loop run until condition() holds (server state has no event to wait on)."""
    async with asyncio.timeout(10):
        while not condition():
            await asyncio.sleep(0.005)


def _ipv6_available() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


async def test_start_binds_one_socket(server: DataStreamServer) -> None:
    """One socket on the given host, on an OS-chosen port."""
    assert server.port > 0
    assert server.diagnostics()["listening"] is True
    await server.async_start()  # idempotent
    assert server.diagnostics()["port"] == server.port


@pytest.mark.parametrize("host", ["localhost", "not an address", ""])
async def test_start_rejects_non_literal_host(socket_enabled: None, host: str) -> None:
    """The host must be an IP literal: no name resolution, one address family."""
    server = DataStreamServer(host=host, delegate=FakeDelegate(), log_name="cam")
    with pytest.raises(HDSConnectionError, match="not an IP address literal"):
        await server.async_start()
    await server.async_stop()


async def test_start_reports_bind_failure(socket_enabled: None) -> None:
    """An address that is not local cannot be bound."""
    server = DataStreamServer(host="192.0.2.1", delegate=FakeDelegate(), log_name="cam")
    with pytest.raises(HDSConnectionError, match="cannot bind"):
        await server.async_start()


@pytest.mark.skipif(not _ipv6_available(), reason="no IPv6 loopback")
async def test_ipv6_wildcard_is_dual_stack(socket_enabled: None) -> None:
    """'::' gives one socket that IPv4 hubs reach on the same port."""
    delegate = FakeDelegate()
    server = DataStreamServer(host="::", delegate=delegate, log_name="cam", salt_factory=bytes)
    await server.async_start()
    try:
        salt = server.prepare_session("hap", SHARED_SECRET, CONTROLLER_SALT)
        client = HDSClient.from_shared_secret(
            HOST, server.port, SHARED_SECRET, CONTROLLER_SALT, salt
        )
        await client.connect()
        assert (await client.hello()).status == 0
        client.abort()
        await client.wait_closed()
    finally:
        await server.async_stop()


async def test_port_before_start() -> None:
    """port and prepare_session need a started server."""
    server = DataStreamServer(host=HOST, delegate=FakeDelegate(), log_name="cam")
    with pytest.raises(HDSConnectionError, match="not started"):
        _ = server.port
    with pytest.raises(HDSConnectionError, match="not started"):
        server.prepare_session("hap", SHARED_SECRET, CONTROLLER_SALT)
    assert server.recording_stream_active is False
    assert server.diagnostics()["recording_stream_active"] is False
    await server.async_stop()


@pytest.mark.parametrize(
    ("secret", "salt", "match"),
    [
        (SHARED_SECRET[:31], CONTROLLER_SALT, "shared secret of 31 bytes"),
        (SHARED_SECRET, CONTROLLER_SALT + b"x", "controller key salt of 33 bytes"),
        (SHARED_SECRET, b"", "controller key salt of 0 bytes"),
    ],
)
async def test_prepare_session_rejects_bad_sizes(
    server: DataStreamServer, secret: bytes, salt: bytes, match: str
) -> None:
    """Bad input sizes raise HDSError and store nothing."""
    with pytest.raises(HDSError, match=match):
        server.prepare_session("hap", secret, salt)
    assert server.diagnostics()["pending_sessions"] == 0


async def test_prepare_session_rejects_bad_salt_factory(socket_enabled: None) -> None:
    """A salt factory returning the wrong size is refused."""
    server = DataStreamServer(
        host=HOST, delegate=FakeDelegate(), log_name="cam", salt_factory=lambda n: b"short"
    )
    await server.async_start()
    with pytest.raises(HDSError, match="accessory key salt of 5 bytes"):
        server.prepare_session("hap", SHARED_SECRET, CONTROLLER_SALT)
    await server.async_stop()


async def test_prepare_session_returns_salt(server: DataStreamServer) -> None:
    """The accessory salt comes from the salt factory; the keys are the golden ones."""
    salt = server.prepare_session("hap", SHARED_SECRET, CONTROLLER_SALT)
    client = HDSClient(
        HOST, server.port, accessory_to_controller_key=A2C_KEY, controller_to_accessory_key=C2A_KEY
    )
    await client.connect()
    assert (await client.hello()).status == 0
    assert salt == bytes(range(0xA0, 0xC0))
    client.abort()
    await client.wait_closed()


async def test_default_salt_factory_is_random(socket_enabled: None) -> None:
    """Without a seam the salt is 32 random bytes, different every time."""
    server = DataStreamServer(host=HOST, delegate=FakeDelegate(), log_name="cam")
    await server.async_start()
    first = server.prepare_session("hap", SHARED_SECRET, CONTROLLER_SALT)
    second = server.prepare_session("hap", SHARED_SECRET, CONTROLLER_SALT)
    assert len(first) == len(second) == 32
    assert first != second
    await server.async_stop()


async def test_session_expires(
    server: DataStreamServer, connect: ConnectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A prepared session nobody connects to is dropped after SESSION_TIMEOUT."""
    monkeypatch.setattr(server_module, "SESSION_TIMEOUT", 0.01)
    server.prepare_session("hap", SHARED_SECRET, CONTROLLER_SALT)
    await until(lambda: server.diagnostics()["pending_sessions"] == 0)
    assert server.diagnostics()["sessions_expired"] == 1
    client = await connect(prepare=False, hello=False)
    client.send_request("control", "hello")
    await client.wait_closed()
    assert client.messages == []
    # With no setup pending the connection is refused at accept, before any frame.
    assert server.diagnostics()["connections_refused"] == 1


async def test_repeated_setup_drops_own_oldest(
    server: DataStreamServer, connect: ConnectFactory
) -> None:
    """A HAP connection asking again displaces only its own oldest pending session."""
    server.prepare_session("other", SHARED_SECRET, bytes([0xEE]) * 32)
    salts = [bytes([i]) * 32 for i in range(server_module.MAX_PENDING_SESSIONS + 1)]
    for salt in salts:
        server.prepare_session("hap", SHARED_SECRET, salt)
    diagnostics = server.diagnostics()
    assert diagnostics["pending_sessions"] == 1 + server_module.MAX_PENDING_PER_HAP_CONNECTION
    assert (
        diagnostics["sessions_dropped"] == len(salts) - server_module.MAX_PENDING_PER_HAP_CONNECTION
    )
    oldest = await connect(controller_salt=salts[0], prepare=False, hello=False)
    oldest.send_request("control", "hello")
    await oldest.wait_closed()
    newest = await connect(controller_salt=salts[-1], prepare=False)
    assert newest.messages[0].status == 0
    other = await connect(controller_salt=bytes([0xEE]) * 32, prepare=False)
    assert other.messages[0].status == 0


async def test_full_pending_refuses_new_setups(server: DataStreamServer) -> None:
    """When other connections fill every slot a new setup is refused, not displacing them."""
    for index in range(server_module.MAX_PENDING_SESSIONS):
        server.prepare_session(f"hap-{index}", SHARED_SECRET, bytes([index]) * 32)
    with pytest.raises(HDSError):
        server.prepare_session("late", SHARED_SECRET, bytes(32))
    assert server.diagnostics()["pending_sessions"] == server_module.MAX_PENDING_SESSIONS
    assert server.diagnostics()["sessions_dropped"] == 0


async def test_matching_picks_the_right_session(
    server: DataStreamServer, connect: ConnectFactory
) -> None:
    """Trial decryption finds each connection's session, whatever the connect order."""
    salts = [bytes([0x11]) * 32, bytes([0x22]) * 32, bytes([0x33]) * 32]
    for index, salt in enumerate(salts):
        server.prepare_session(f"hap-{index}", SHARED_SECRET, salt)
    clients = [await connect(controller_salt=salt, prepare=False) for salt in reversed(salts)]
    assert all(client.messages[0].status == 0 for client in clients)
    assert sorted(str(c.hap_connection) for c in server.connections) == ["hap-0", "hap-1", "hap-2"]
    assert server.diagnostics()["pending_sessions"] == 0


async def test_session_is_consumed_by_first_match(
    server: DataStreamServer, connect: ConnectFactory
) -> None:
    """A second connection with the same keys does not match a consumed session."""
    await connect()
    second = await connect(prepare=False, hello=False)
    second.send_request("control", "hello")
    await second.wait_closed()
    assert second.messages == []


@pytest.mark.parametrize("misbehaviour", ["wrong_key", "garbage", "bad_type", "oversize"])
async def test_unmatched_connection_is_closed(
    server: DataStreamServer, connect: ConnectFactory, misbehaviour: str
) -> None:
    """A first frame that matches no session (or is not a frame) closes the connection."""
    server.prepare_session("hap", SHARED_SECRET, CONTROLLER_SALT)
    client = await connect(prepare=False, hello=False)
    if misbehaviour == "wrong_key":
        client.send_frame(b"\x00", key=A2C_KEY)
    elif misbehaviour == "garbage":
        client.send_garbage(64)
    elif misbehaviour == "bad_type":
        client.send_raw(b"\x02\x00\x00\x00" + os.urandom(20))
    else:
        client.send_raw(b"\x01\x10\x00\x00")
    await client.wait_closed()
    assert client.messages == []
    # The pending session survives a failed match and still works.
    assert server.diagnostics()["pending_sessions"] == 1
    good = await connect(prepare=False)
    assert good.messages[0].status == 0


async def test_silent_connection_is_closed(
    server: DataStreamServer, connect: ConnectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that sends nothing is closed after HELLO_TIMEOUT."""
    monkeypatch.setattr(connection_module, "HELLO_TIMEOUT", 0.05)
    client = await connect(hello=False)
    await client.wait_closed()
    assert server.connections == ()
    assert "no hello" in server.diagnostics()["last_connection_errors"][0]


async def test_partial_frame_connection_is_closed(
    server: DataStreamServer, connect: ConnectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A connection that stalls inside its first frame is closed too."""
    monkeypatch.setattr(connection_module, "HELLO_TIMEOUT", 0.05)
    client = await connect(hello=False)
    client.send_raw(b"\x01\x00\x00\x40" + bytes(10))
    await client.wait_closed()


async def test_first_message_not_hello_is_closed(
    server: DataStreamServer, connect: ConnectFactory
) -> None:
    """A matched connection whose first message is not hello is closed."""
    client = await connect(hello=False)
    client.send_request("dataSend", "open", client.open_message())
    await client.wait_closed()
    assert client.messages == []


async def test_unknown_request_over_tcp(server: DataStreamServer, connect: ConnectFactory) -> None:
    """An unknown request is answered with an error status."""
    client = await connect()
    response = await client.request("nonexistent", "thing", {})
    assert (response.type, response.status) == (MessageType.RESPONSE, 5)
    response = await client.request("dataSend", "nonexistent", {})
    assert response.status == 3
    version = await client.request("control", "version", {"version": 1.0})
    assert version.message == {"version": 1.1}


async def test_oversize_frame_after_hello_closes(
    server: DataStreamServer, connect: ConnectFactory
) -> None:
    """A frame length beyond 0xFFFFF closes the connection without waiting for its body."""
    client = await connect()
    client.send_raw(b"\x01\x10\x00\x00")
    await client.wait_closed()
    assert server.connections == ()


async def test_tcp_options(server: DataStreamServer, connect: ConnectFactory) -> None:
    """Nagle is off and keepalive on for HDS sockets."""
    await connect()
    (conn,) = server.connections
    sock = conn._transport.get_extra_info("socket")  # type: ignore[union-attr]
    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE)


async def test_hap_connection_lost_closes_its_connections(
    server: DataStreamServer, connect: ConnectFactory
) -> None:
    """Losing a HAP connection closes its HDS connections and drops its pending sessions."""
    a1 = await connect("hap-a")
    a2 = await connect("hap-a")
    b = await connect("hap-b")
    server.prepare_session("hap-a", SHARED_SECRET, bytes(32))
    server.prepare_session("hap-b", SHARED_SECRET, bytes([1]) * 32)
    server.hap_connection_lost("hap-a")
    await a1.wait_closed()
    await a2.wait_closed()
    assert not b.closed
    assert (await b.hello()).status == 0
    assert server.diagnostics()["pending_sessions"] == 1
    assert [c.hap_connection for c in server.connections] == ["hap-b"]


async def test_diagnostics_have_no_secrets(
    server: DataStreamServer, connect: ConnectFactory
) -> None:
    """Diagnostics count things and never show key material."""
    client = await connect()
    await client.request("nonexistent", "thing", {})
    server.prepare_session("hap", SHARED_SECRET, bytes(32))
    diagnostics = server.diagnostics()
    assert diagnostics["connections"] == 1
    assert diagnostics["ready_connections"] == 1
    assert diagnostics["pending_sessions"] == 1
    assert diagnostics["bytes_sent"] > 0
    assert diagnostics["frames_sent"] == 2
    text = repr(diagnostics)
    for secret in (A2C_KEY, C2A_KEY, SHARED_SECRET, CONTROLLER_SALT):
        assert secret.hex() not in text
        assert repr(secret) not in text


async def test_stop_closes_everything(socket_enabled: None) -> None:
    """async_stop closes connections and pending sessions and stops listening."""
    server = DataStreamServer(
        host=HOST, delegate=FakeDelegate(), log_name="cam", salt_factory=bytes
    )
    await server.async_start()
    port = server.port
    salt = server.prepare_session("hap", SHARED_SECRET, CONTROLLER_SALT)
    client = HDSClient.from_shared_secret(HOST, port, SHARED_SECRET, CONTROLLER_SALT, salt)
    await client.connect()
    await client.hello()
    server.prepare_session("hap", SHARED_SECRET, bytes(32))
    await server.async_stop()
    await client.wait_closed()
    assert server.diagnostics()["pending_sessions"] == 0
    assert server.diagnostics()["listening"] is False
    late = HDSClient(
        HOST, port, accessory_to_controller_key=A2C_KEY, controller_to_accessory_key=C2A_KEY
    )
    with pytest.raises(OSError):
        await late.connect()
    with pytest.raises(HDSClosedError):
        await client.hello()
    await server.async_stop()  # idempotent


@pytest.mark.parametrize(
    ("host", "normalized"),
    [
        ("127.0.0.1", "127.0.0.1"),
        ("::ffff:192.168.1.20", "192.168.1.20"),
        ("fe80::1%eth0", "fe80::1"),
        ("FE80::0001", "fe80::1"),
        ("not an address", "not an address"),
    ],
)
def test_normalize_host(host: str, normalized: str) -> None:
    """A hub reaching HAP over a dual-stack socket and HDS over IPv4 is the same address."""
    assert server_module.normalize_host(host) == normalized
