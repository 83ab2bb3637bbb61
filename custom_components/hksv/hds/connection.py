"""One HDS connection: matching, hello, frames in and out, closing (§3.4-§5.1).

Message routing is in `dispatch.py`, backpressure and the send-progress watch in `send_flow.py`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
import contextlib
import logging
import reprlib
import socket
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

from .dispatch import EventHandler, MessageRouter, RequestHandler
from .errors import (
    HDSClosedError,
    HDSDecryptError,
    HDSError,
    HDSProtocolError,
    HDSTimeoutError,
    OpackError,
)
from .frame import (
    HEADER_LENGTH,
    MAX_PAYLOAD_LENGTH,
    DecryptCipher,
    EncryptCipher,
    HDSFrameReader,
    decode_payload,
    encode_payload,
)
from .messages import (
    PROTOCOL_CONTROL,
    TOPIC_HELLO,
    DataSendCloseReason,
    HDSStatus,
    MessageType,
    event_header,
    parse_header,
    response_header,
)
from .send_flow import SendFlow

if TYPE_CHECKING:
    from asyncio import Transport

_LOGGER = logging.getLogger(__name__)

# Close a connection that has not completed hello this long after accept
# (HN DataStreamServer hello timer; ADK kHAPDataStream_TCPStreamTimeout for unmatched streams).
HELLO_TIMEOUT: Final = 10.0
# Largest first frame of an unmatched connection: a hub opens with the hello request (tens of
# bytes), so an unauthenticated peer cannot make the accessory buffer a 1 MiB frame (hksv).
MAX_FIRST_FRAME_PAYLOAD: Final = 1024
# Transport buffer limits: a slow hub pauses the producer instead of growing memory (hksv).
# Two 256 KiB dataSend chunks at most are queued in memory per connection.
WRITE_BUFFER_HIGH: Final = 1 << 19
WRITE_BUFFER_LOW: Final = 1 << 17
# Kernel send buffer of an HDS socket (Linux doubles it for bookkeeping). Fixed instead of
# autotuned (up to 4 MiB), so a hub that stops reading shows as "the kernel takes nothing"
# within about a second of a 2 Mbit/s recording (250 kB/s) instead of after many seconds. At
# a 5-50 ms LAN/Wi-Fi round trip it still carries 2.6-26 MB/s, ten times more than that
# recording, so a 1 MB fragment leaves in well under a second.
SOCKET_SEND_BUFFER: Final = 1 << 17

HDS_STATE_MATCHING: Final = 0
HDS_STATE_AWAITING_HELLO: Final = 1
HDS_STATE_READY: Final = 2
HDS_STATE_CLOSED: Final = 3
_STATE_NAMES: Final = ("MATCHING", "AWAITING_HELLO", "READY", "CLOSED")


class SessionMatch(NamedTuple):
    """A pending session that authenticated a connection's first frame."""

    hap_connection: Hashable
    encrypt: EncryptCipher
    decrypt: DecryptCipher  # counter already past the first frame
    plaintext: bytes


class ConnectionOwner(Protocol):
    """What a connection needs from its server."""

    def match_session(self, header: bytes, body: memoryview) -> SessionMatch | None:
        """Return the pending session whose key opens the first frame, consuming it."""

    def admit_connection(self, connection: HDSConnection, peer_host: str) -> bool:
        """Return whether a just-accepted connection from peer_host may wait for its frame."""

    def connection_closed(self, connection: HDSConnection, exc: BaseException | None) -> None:
        """Forget a connection that has closed."""


class HDSConnection(asyncio.Protocol):
    """The accessory side of one HDS TCP connection."""

    __slots__ = (
        "_debug",
        "_decrypt",
        "_encrypt",
        "_log_name",
        "_loop",
        "_owner",
        "_reader",
        "_router",
        "_send_flow",
        "_state",
        "_timer",
        "_transport",
        "_writelines",
        "bytes_sent",
        "close_reason",
        "frames_received",
        "frames_sent",
        "hap_connection",
        "peer",
        "peer_host",
    )

    def __init__(
        self, owner: ConnectionOwner, loop: asyncio.AbstractEventLoop, log_name: str
    ) -> None:
        """Create a connection waiting for its first frame."""
        self._owner = owner
        self._loop = loop
        self._log_name = log_name
        self._state = HDS_STATE_MATCHING
        self._transport: Transport | None = None
        self._writelines: Callable[[Any], None] | None = None
        self._reader = HDSFrameReader(MAX_FIRST_FRAME_PAYLOAD)
        self._encrypt: EncryptCipher | None = None
        self._decrypt: DecryptCipher | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._send_flow = SendFlow(self, loop, log_name)
        self._debug = _LOGGER.isEnabledFor(logging.DEBUG)
        self._router = MessageRouter(log_name, HDSConnection._handle_hello)
        self.hap_connection: Hashable | None = None
        self.peer = "?"
        self.peer_host = ""
        self.bytes_sent = 0
        self.frames_sent = 0
        self.frames_received = 0
        self.close_reason: str | None = None

    def __repr__(self) -> str:
        """Return a short description for logs."""
        return f"<HDSConnection {self._log_name} {self.peer} {_STATE_NAMES[self._state]}>"

    @property
    def state(self) -> int:
        """Return the HDS_STATE_* value."""
        return self._state

    @property
    def is_matching(self) -> bool:
        """Return True until the first frame has matched a session."""
        return self._state == HDS_STATE_MATCHING

    @property
    def is_ready(self) -> bool:
        """Return True after hello and before close."""
        return self._state == HDS_STATE_READY

    @property
    def is_closed(self) -> bool:
        """Return True once the connection is closed."""
        return self._state == HDS_STATE_CLOSED

    @property
    def writing_paused(self) -> bool:
        """Return True while the transport is above its high-water mark."""
        return self._send_flow.paused

    @property
    def write_buffer_size(self) -> int:
        """Return the bytes queued in the transport."""
        transport = self._transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def add_request_handler(self, protocol: str, topic: str, handler: RequestHandler) -> None:
        """Route requests for (protocol, topic) to handler."""
        self._router.add_request_handler(protocol, topic, handler)

    def add_event_handler(self, protocol: str, topic: str, handler: EventHandler) -> None:
        """Route events for (protocol, topic) to handler."""
        self._router.add_event_handler(protocol, topic, handler)

    # -- asyncio.Protocol -------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Configure the socket and start the hello timer."""
        if TYPE_CHECKING:
            assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._writelines = transport.writelines
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.peer_host = str(peer[0]) if isinstance(peer, tuple) else str(peer)
        if not self._owner.admit_connection(self, self.peer_host):
            self._cleanup(None, "refused at accept")
            return
        if (sock := transport.get_extra_info("socket")) is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SOCKET_SEND_BUFFER)
        transport.set_write_buffer_limits(high=WRITE_BUFFER_HIGH, low=WRITE_BUFFER_LOW)
        self._debug = _LOGGER.isEnabledFor(logging.DEBUG)
        self._timer = self._loop.call_at(self._loop.time() + HELLO_TIMEOUT, self._on_hello_timeout)
        if self._debug:
            _LOGGER.debug("%s: HDS connection from %s", self._log_name, self.peer)

    def data_received(self, data: bytes) -> None:
        """Process received bytes; never raises (violations close the connection)."""
        if self._state == HDS_STATE_CLOSED:
            return
        reader = self._reader
        try:
            reader.add_data(data)
            while (frame := reader.read_frame()) is not None:
                self.frames_received += 1
                if self._state == HDS_STATE_MATCHING:
                    self._handle_matching(*frame)
                else:
                    self._handle_frame(*frame)
                if self._state == HDS_STATE_CLOSED:
                    return
        except (HDSError, OpackError) as exc:
            self._handle_error_and_close(exc)

    def connection_lost(self, exc: Exception | None) -> None:
        """Clean up after the transport closed."""
        if self._state != HDS_STATE_CLOSED:
            if self._debug:
                _LOGGER.debug("%s: HDS connection %s lost: %s", self._log_name, self.peer, exc)
            self._cleanup(exc, "connection closed by peer" if exc is None else str(exc))

    def pause_writing(self) -> None:
        """Stop producers: the transport buffer reached the high-water mark."""
        self._send_flow.pause()

    def resume_writing(self) -> None:
        """Wake producers waiting in drain()."""
        self._send_flow.resume()

    async def drain(self) -> None:
        """Wait until the transport accepts more data.

        Raise HDSClosedError once closed, HDSSendStalledError while the hub reads nothing.
        """
        if self._state == HDS_STATE_CLOSED:
            raise HDSClosedError(f"{self._log_name}: HDS connection closed")
        await self._send_flow.wait()

    # -- receiving --------------------------------------------------------------------------

    def _handle_matching(self, header: bytes, body: memoryview) -> None:
        """Match the first frame to a pending session by trial decryption (§3.4)."""
        match = self._owner.match_session(header, body)
        if match is None:
            raise HDSDecryptError("first frame matches no pending session")
        self.hap_connection = match.hap_connection
        self._encrypt = match.encrypt
        self._decrypt = match.decrypt
        self._reader.max_payload = MAX_PAYLOAD_LENGTH
        self._state = HDS_STATE_AWAITING_HELLO
        self._handle_payload(match.plaintext)

    def _handle_frame(self, header: bytes, body: memoryview) -> None:
        """Decrypt and handle one frame of a matched connection."""
        if TYPE_CHECKING:
            assert self._decrypt is not None
        self._handle_payload(self._decrypt.open(header, body))

    def _handle_payload(self, plaintext: bytes) -> None:
        """Decode one message and dispatch it by state and kind."""
        raw_header, message = decode_payload(plaintext)
        header = parse_header(raw_header)
        if self._debug:
            _LOGGER.debug(
                "%s: HDS <- %s %s %s",
                self._log_name,
                self.peer,
                reprlib.repr(raw_header),
                reprlib.repr(message),
            )
        if self._state == HDS_STATE_AWAITING_HELLO and (
            header is None
            or header.type is not MessageType.REQUEST
            or (header.protocol, header.topic) != (PROTOCOL_CONTROL, TOPIC_HELLO)
        ):
            raise HDSProtocolError(
                DataSendCloseReason.PROTOCOL_ERROR, "first message is not a control/hello request"
            )
        self._router.route(self, raw_header, header, message)

    def _handle_hello(self, request_id: int, message: dict[Any, Any]) -> None:
        """Answer hello; the first one makes the connection ready (§5.1)."""
        self.send_response(PROTOCOL_CONTROL, TOPIC_HELLO, request_id, HDSStatus.SUCCESS, {})
        if self._state == HDS_STATE_AWAITING_HELLO:
            self._state = HDS_STATE_READY
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            _LOGGER.debug("%s: HDS connection %s ready", self._log_name, self.peer)

    # -- sending ----------------------------------------------------------------------------

    def send_event(self, protocol: str, topic: str, message: dict[str, Any]) -> None:
        """Send an event; raise HDSClosedError once closed."""
        self._send(event_header(protocol, topic), message)

    def send_response(
        self, protocol: str, topic: str, request_id: int, status: int, message: dict[str, Any]
    ) -> None:
        """Send a response; raise HDSClosedError once closed."""
        self._send(response_header(protocol, topic, request_id, status), message)

    def _send(self, header: dict[str, Any], message: dict[str, Any]) -> None:
        """Encode, seal and write one frame as two buffers, without joining them."""
        encrypt = self._encrypt
        writelines = self._writelines
        if self._state == HDS_STATE_CLOSED or encrypt is None or writelines is None:
            raise HDSClosedError(f"{self._log_name}: HDS connection closed")
        frame_header, sealed = encrypt.seal(encode_payload(header, message))
        writelines((frame_header, sealed))
        self.frames_sent += 1
        self.bytes_sent += HEADER_LENGTH + len(sealed)
        self._send_flow.frame_sent()
        if self._debug:
            _LOGGER.debug("%s: HDS -> %s %r", self._log_name, self.peer, header)

    # -- closing ----------------------------------------------------------------------------

    def _on_hello_timeout(self) -> None:
        """Close a connection that did not complete hello in time."""
        self._timer = None
        self._handle_error_and_close(
            HDSTimeoutError(f"no hello within {HELLO_TIMEOUT} s of connecting")
        )

    def _handle_error_and_close(self, exc: Exception) -> None:
        """Log a fatal error once and close."""
        if self._state == HDS_STATE_CLOSED:
            return
        _LOGGER.warning("%s: closing HDS connection from %s: %s", self._log_name, self.peer, exc)
        self._cleanup(exc, str(exc))

    def close(self) -> None:
        """Close the connection (HAP connection lost, server stopping)."""
        self._cleanup(None, "closed by the accessory")

    def _cleanup(self, exc: BaseException | None, reason: str) -> None:
        """Release everything once: timer, drain waiters, transport, owner."""
        if self._state == HDS_STATE_CLOSED:
            return
        self._state = HDS_STATE_CLOSED
        self.close_reason = reason
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._send_flow.close(f"{self._log_name}: HDS connection closed")
        self._reader = HDSFrameReader()
        if (transport := self._transport) is not None:
            # Queued data for a failed or vanished peer is dropped rather than kept in memory.
            if exc is None and transport.get_write_buffer_size() == 0:
                transport.close()
            else:
                transport.abort()
        self._owner.connection_closed(self, exc)
