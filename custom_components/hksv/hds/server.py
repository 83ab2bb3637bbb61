"""The HDS listener of one camera: pending setups, matchmaking and connections (§3.1, §3.4)."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Hashable
import ipaddress
import logging
import os
import socket
from typing import Any, Final

from .connection import HDSConnection, SessionMatch
from .datasend import RecordingStreams
from .delegate import RecordingDelegate
from .errors import HDSConnectionError, HDSDecryptError, HDSError
from .frame import DecryptCipher, EncryptCipher, HDSKeys, derive_keys
from .messages import DataSendCloseReason

_LOGGER = logging.getLogger(__name__)

# A prepared session waits this long for its TCP connection and first frame
# (HN DataStreamServer pending-setup timer; ADK kHAPDataStream_SetupTimeout).
SESSION_TIMEOUT: Final = 10.0
# Pending sessions kept at once (hksv: bounds the trial decryptions one new connection can
# cost). Beyond it a new setup is refused (BUSY) rather than displacing another controller's.
MAX_PENDING_SESSIONS: Final = 8
# Pending sessions per HAP connection and per controller address: a controller that asks
# again displaces only its own oldest setup, never the home hub's.
MAX_PENDING_PER_HAP_CONNECTION: Final = 2
MAX_PENDING_PER_PEER: Final = 4
# Accepted connections that have not yet matched a session (each holds at most one small
# first frame, see connection.MAX_FIRST_FRAME_PAYLOAD); more are refused at accept.
MAX_UNMATCHED_CONNECTIONS: Final = 16
MAX_UNMATCHED_PER_PEER: Final = 4
SHARED_SECRET_LENGTH: Final = 32  # X25519
SALT_LENGTH: Final = 32  # §2.6 controller and accessory key salts
# Connection errors kept for diagnostics.
ERROR_HISTORY: Final = 10


class _PendingSession:
    """A SetupDataStreamTransport write waiting for its TCP connection."""

    __slots__ = ("decrypt", "hap_connection", "keys", "peer_host", "timer")

    def __init__(self, hap_connection: Hashable, peer_host: str | None, keys: HDSKeys) -> None:
        """Store the keys; the c2a cipher starts at counter 0 for trial decryption."""
        self.hap_connection = hap_connection
        self.peer_host = peer_host
        self.keys = keys
        self.decrypt = DecryptCipher(keys.controller_to_accessory)
        self.timer: asyncio.TimerHandle | None = None


def normalize_host(host: str) -> str:
    """Return an address in one spelling: no zone, IPv4-mapped IPv6 as plain IPv4."""
    text = host.partition("%")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def _bind_socket(host: str) -> socket.socket:
    """Return one non-blocking TCP socket bound to host on an OS-chosen port."""
    try:
        address = ipaddress.ip_address(host)
        family = socket.AF_INET6 if address.version == 6 else socket.AF_INET
        flags = socket.AI_NUMERICHOST | socket.AI_PASSIVE
        sockaddr = socket.getaddrinfo(host, 0, family, socket.SOCK_STREAM, 0, flags)[0][4]
    except (ValueError, OSError) as err:
        raise HDSConnectionError(f"HDS host {host!r} is not an IP address literal") from err
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        if family == socket.AF_INET6 and address.is_unspecified:
            # One dual-stack socket, so IPv4 hubs reach the one advertised port (§7 #11).
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
            except OSError:
                _LOGGER.debug("dual-stack HDS socket unavailable, listening on IPv6 only")
        sock.bind(sockaddr)
        sock.setblocking(False)
    except OSError as err:
        sock.close()
        raise HDSConnectionError(f"cannot bind the HDS socket on {host!r}: {err}") from err
    return sock


class DataStreamServer:
    """Listen for HDS connections of one camera and serve its recording streams."""

    def __init__(
        self,
        *,
        host: str,
        delegate: RecordingDelegate,
        log_name: str,
        salt_factory: Callable[[int], bytes] = os.urandom,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Create a stopped server; call async_start to listen."""
        self._host = host
        self._delegate = delegate
        self._log_name = log_name
        self._salt_factory = salt_factory
        self._loop = loop
        self._server: asyncio.Server | None = None
        self._port = 0
        self._pending: list[_PendingSession] = []
        self._connections: set[HDSConnection] = set()
        self._streams: RecordingStreams | None = None
        self._errors: deque[str] = deque(maxlen=ERROR_HISTORY)
        self._closed_bytes_sent = 0
        self._closed_frames_sent = 0
        self._stats = {
            "sessions_prepared": 0,
            "sessions_expired": 0,
            "sessions_dropped": 0,
            "connections_accepted": 0,
            "connections_unmatched": 0,
            "connections_refused": 0,
        }

    def _get_loop(self) -> asyncio.AbstractEventLoop:
        """Return the loop given or the running one."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def _get_streams(self) -> RecordingStreams:
        """Return the stream registry, created on first use."""
        if self._streams is None:
            self._streams = RecordingStreams(self._delegate, self._log_name, self._get_loop())
        return self._streams

    async def async_start(self) -> None:
        """Bind one socket on host with an OS-chosen port and start accepting."""
        if self._server is not None:
            return
        loop = self._get_loop()
        self._get_streams()
        sock = _bind_socket(self._host)
        try:
            self._server = await loop.create_server(self._make_connection, sock=sock)
        except OSError as err:
            sock.close()
            raise HDSConnectionError(f"cannot listen for HDS on {self._host!r}: {err}") from err
        self._port = sock.getsockname()[1]
        _LOGGER.debug("%s: HDS listening on %s port %s", self._log_name, self._host, self._port)

    @property
    def port(self) -> int:
        """Return the listening port."""
        if self._server is None:
            raise HDSConnectionError(f"{self._log_name}: HDS server is not started")
        return self._port

    @property
    def connections(self) -> tuple[HDSConnection, ...]:
        """Return the open HDS connections."""
        return tuple(self._connections)

    @property
    def recording_stream_active(self) -> bool:
        """Return True while a recording stream holds the camera."""
        return self._streams is not None and self._streams.active

    def _make_connection(self) -> HDSConnection:
        """Create the protocol for an accepted TCP connection."""
        connection = HDSConnection(self, self._get_loop(), self._log_name)
        self._get_streams().attach(connection)
        self._connections.add(connection)
        self._stats["connections_accepted"] += 1
        return connection

    def admit_connection(self, connection: HDSConnection, peer_host: str) -> bool:
        """Return whether a just-accepted connection may wait for its first frame.

        Only an address that prepared a session over HAP may connect, and unmatched
        connections are capped overall and per address, so unauthenticated peers can hold
        neither memory nor the slots a hub's connection needs.
        """
        host = normalize_host(peer_host)
        if not any(s.peer_host in (None, host) for s in self._pending):
            refusal = "no HDS setup was prepared from this address"
        else:
            unmatched = [c for c in self._connections if c.is_matching and c is not connection]
            if len(unmatched) >= MAX_UNMATCHED_CONNECTIONS:
                refusal = "too many connections waiting for their first frame"
            elif (
                sum(normalize_host(c.peer_host) == host for c in unmatched)
                >= MAX_UNMATCHED_PER_PEER
            ):
                refusal = "too many connections from this address waiting for their first frame"
            else:
                return True
        self._stats["connections_refused"] += 1
        _LOGGER.debug("%s: HDS connection from %s refused: %s", self._log_name, host, refusal)
        return False

    # -- sessions -------------------------------------------------------------------------

    def prepare_session(
        self,
        hap_connection: Hashable,
        shared_secret: bytes,
        controller_salt: bytes,
        *,
        peer_host: str | None = None,
    ) -> bytes:
        """Derive and store a pending session for a HAP connection; return the accessory salt.

        ``peer_host`` is the HAP connection's address: only a TCP connection from it may use
        the session (None: any address, for tests and benchmarks without HAP). Raise HDSError
        when the pending sessions of other controllers fill every slot (answered BUSY).
        """
        if self._server is None:
            raise HDSConnectionError(f"{self._log_name}: HDS server is not started")
        if len(shared_secret) != SHARED_SECRET_LENGTH:
            raise HDSError(f"shared secret of {len(shared_secret)} bytes, expected 32")
        if len(controller_salt) != SALT_LENGTH:
            raise HDSError(f"controller key salt of {len(controller_salt)} bytes, expected 32")
        accessory_salt = self._salt_factory(SALT_LENGTH)
        if len(accessory_salt) != SALT_LENGTH:
            raise HDSError(f"accessory key salt of {len(accessory_salt)} bytes, expected 32")
        host = None if peer_host is None else normalize_host(peer_host)
        self._make_room(hap_connection, host)
        keys = derive_keys(bytes(shared_secret), bytes(controller_salt), bytes(accessory_salt))
        session = _PendingSession(hap_connection, host, keys)
        loop = self._get_loop()
        session.timer = loop.call_at(loop.time() + SESSION_TIMEOUT, self._expire_session, session)
        self._pending.append(session)
        self._stats["sessions_prepared"] += 1
        return bytes(accessory_salt)

    def _make_room(self, hap_connection: Hashable, host: str | None) -> None:
        """Free a slot for a new setup, displacing only the asking controller's own ones."""
        own = [s for s in self._pending if s.hap_connection == hap_connection]
        if len(own) < MAX_PENDING_PER_HAP_CONNECTION:
            own = [s for s in self._pending if host is not None and s.peer_host == host]
            if len(own) < MAX_PENDING_PER_PEER:
                own = []
        if own:
            _LOGGER.debug("%s: HDS setup repeated, dropping the older one", self._log_name)
            self._drop_session(own[0])
            self._stats["sessions_dropped"] += 1
        elif len(self._pending) >= MAX_PENDING_SESSIONS:
            raise HDSError(f"{len(self._pending)} HDS setups of other controllers are pending")

    def _drop_session(self, session: _PendingSession) -> None:
        """Forget a pending session and cancel its timer."""
        if session.timer is not None:
            session.timer.cancel()
            session.timer = None
        if session in self._pending:
            self._pending.remove(session)

    def _expire_session(self, session: _PendingSession) -> None:
        """Drop a pending session nobody connected to in time."""
        session.timer = None
        _LOGGER.info("%s: HDS setup expired without a connection", self._log_name)
        self._drop_session(session)
        self._stats["sessions_expired"] += 1

    def match_session(self, header: bytes, body: memoryview) -> SessionMatch | None:
        """Return the first pending session, in preparation order, whose key opens the frame."""
        for session in self._pending:
            try:
                plaintext = session.decrypt.open(header, body)
            except HDSDecryptError:
                continue
            self._drop_session(session)
            return SessionMatch(
                session.hap_connection,
                EncryptCipher(session.keys.accessory_to_controller),
                session.decrypt,
                plaintext,
            )
        self._stats["connections_unmatched"] += 1
        return None

    def connection_closed(self, connection: HDSConnection, exc: BaseException | None) -> None:
        """Forget a closed connection and release its streams."""
        if connection not in self._connections:
            return
        self._connections.discard(connection)
        self._closed_bytes_sent += connection.bytes_sent
        self._closed_frames_sent += connection.frames_sent
        if exc is not None:
            self._errors.append(f"{connection.peer}: {connection.close_reason}")
        if self._streams is not None:
            self._streams.connection_closed(connection)

    def hap_connection_lost(self, hap_connection: Hashable) -> None:
        """Drop the pending sessions and close the HDS connections of a closed HAP connection."""
        for session in [s for s in self._pending if s.hap_connection == hap_connection]:
            self._drop_session(session)
        for connection in list(self._connections):
            if (
                connection.hap_connection is not None
                and connection.hap_connection == hap_connection
            ):
                _LOGGER.debug("%s: HAP connection lost, closing %r", self._log_name, connection)
                connection.close()

    def close_recording_streams(self, reason: DataSendCloseReason) -> None:
        """Close every recording stream from the accessory side (e.g. camera turned off)."""
        if self._streams is not None:
            self._streams.close_all(reason)

    def diagnostics(self) -> dict[str, Any]:
        """Return counters for diagnostics; never keys or salts."""
        streams = self._streams
        return {
            "listening": self._server is not None,
            "port": self._port,
            "pending_sessions": len(self._pending),
            "connections": len(self._connections),
            "ready_connections": sum(1 for c in self._connections if c.is_ready),
            "recording_stream_active": self.recording_stream_active,
            "streams_opened": streams.streams_opened if streams else 0,
            "opens_rejected": streams.opens_rejected if streams else 0,
            "bytes_sent": self._closed_bytes_sent + sum(c.bytes_sent for c in self._connections),
            "frames_sent": self._closed_frames_sent + sum(c.frames_sent for c in self._connections),
            **self._stats,
            "last_stream_ends": list(streams.close_reasons) if streams else [],
            "last_connection_errors": list(self._errors),
        }

    async def async_stop(self) -> None:
        """Close the listener, every connection and stream; leave no task or timer behind."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for session in list(self._pending):
            self._drop_session(session)
        for connection in list(self._connections):
            connection.close()
        if self._streams is not None:
            await self._streams.async_stop()
        if server is not None:
            await server.wait_closed()
