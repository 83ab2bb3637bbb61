"""One HDS connection: matching, hello, dispatch, sending with backpressure (§3.4-§5.1)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable
import contextlib
import logging
import reprlib
import socket
from typing import TYPE_CHECKING, Any, Final, NamedTuple, Protocol

from .errors import (
    HDSClosedError,
    HDSDecryptError,
    HDSError,
    HDSProtocolError,
    HDSSendStalledError,
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
    HDS_VERSION,
    PROTOCOL_CONTROL,
    TOPIC_HELLO,
    TOPIC_VERSION,
    DataSendCloseReason,
    HDSStatus,
    Header,
    MessageType,
    event_header,
    parse_header,
    response_header,
)

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
# No byte of a non-empty send queue taken by the kernel for this long: the hub stopped
# reading, and sending fails (dataSend closes the stream with TIMEOUT) so that it does not
# hold the camera's only recording slot. Longer than a 4 s fragment and a few TCP
# retransmission backoffs, so a slow or briefly lossy hub that still reads is never cut off.
SEND_STALL_TIMEOUT: Final = 5.0
# How often a non-empty send queue is checked for progress.
SEND_STALL_CHECK_INTERVAL: Final = 0.5

HDS_STATE_MATCHING: Final = 0
HDS_STATE_AWAITING_HELLO: Final = 1
HDS_STATE_READY: Final = 2
HDS_STATE_CLOSED: Final = 3
_STATE_NAMES: Final = ("MATCHING", "AWAITING_HELLO", "READY", "CLOSED")

type RequestHandler = Callable[[HDSConnection, int, dict[Any, Any]], None]
type EventHandler = Callable[[HDSConnection, dict[Any, Any]], None]


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
        "_drain_waiters",
        "_encrypt",
        "_event_handlers",
        "_log_name",
        "_loop",
        "_owner",
        "_paused",
        "_protocols",
        "_reader",
        "_request_handlers",
        "_send_stall",
        "_sent_mark",
        "_sent_mark_time",
        "_stall_timer",
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
        self._paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        # Send progress at the socket: bytes the kernel took, and when that last grew.
        self._stall_timer: asyncio.TimerHandle | None = None
        self._sent_mark = 0
        self._sent_mark_time = 0.0
        self._send_stall: HDSSendStalledError | None = None
        self._debug = _LOGGER.isEnabledFor(logging.DEBUG)
        self._request_handlers: dict[tuple[str, str], RequestHandler] = {
            (PROTOCOL_CONTROL, TOPIC_HELLO): HDSConnection._handle_hello,
            (PROTOCOL_CONTROL, TOPIC_VERSION): HDSConnection._handle_version,
        }
        self._event_handlers: dict[tuple[str, str], EventHandler] = {}
        self._protocols: set[str] = {PROTOCOL_CONTROL}
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
        return self._paused

    @property
    def write_buffer_size(self) -> int:
        """Return the bytes queued in the transport."""
        transport = self._transport
        return 0 if transport is None else transport.get_write_buffer_size()

    def add_request_handler(self, protocol: str, topic: str, handler: RequestHandler) -> None:
        """Route requests for (protocol, topic) to handler."""
        self._request_handlers[(protocol, topic)] = handler
        self._protocols.add(protocol)

    def add_event_handler(self, protocol: str, topic: str, handler: EventHandler) -> None:
        """Route events for (protocol, topic) to handler."""
        self._event_handlers[(protocol, topic)] = handler
        self._protocols.add(protocol)

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
        self._paused = True

    def resume_writing(self) -> None:
        """Wake producers waiting in drain()."""
        self._paused = False
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def drain(self) -> None:
        """Wait until the transport accepts more data.

        Raise HDSClosedError once closed, HDSSendStalledError while the hub reads nothing.
        """
        if self._state == HDS_STATE_CLOSED:
            raise HDSClosedError(f"{self._log_name}: HDS connection closed")
        if self._send_stall is not None:
            raise self._send_stall
        if not self._paused:
            return
        waiter = self._loop.create_future()
        self._drain_waiters.append(waiter)
        await waiter

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
        if header is None:
            _LOGGER.warning(
                "%s: ignoring HDS message with header %s",
                self._log_name,
                reprlib.repr(raw_header),
            )
        elif header.type is MessageType.REQUEST:
            self._dispatch_request(header, message)
        elif header.type is MessageType.EVENT:
            self._dispatch_event(header, message)
        elif self._debug:
            _LOGGER.debug("%s: ignoring unsolicited HDS response %r", self._log_name, header)

    def _dispatch_request(self, header: Header, message: dict[Any, Any]) -> None:
        """Call the request's handler, or answer with an error status (ADK, not HN)."""
        handler = self._request_handlers.get((header.protocol, header.topic))
        if TYPE_CHECKING:
            assert header.id is not None
        if handler is None:
            if header.protocol in self._protocols:
                status = HDSStatus.HEADER_ERROR
            else:
                status = HDSStatus.MISSING_PROTOCOL
            _LOGGER.info(
                "%s: no handler for HDS request %s/%s, answering %s",
                self._log_name,
                header.protocol,
                header.topic,
                status.name,
            )
            self.send_response(header.protocol, header.topic, header.id, status, {})
            return
        self._call_handler(handler, header, self, header.id, message)

    def _dispatch_event(self, header: Header, message: dict[Any, Any]) -> None:
        """Call the event's handler; events nobody handles are ignored."""
        handler = self._event_handlers.get((header.protocol, header.topic))
        if handler is None:
            _LOGGER.debug(
                "%s: ignoring HDS event %s/%s", self._log_name, header.protocol, header.topic
            )
            return
        self._call_handler(handler, header, self, message)

    def _call_handler(self, handler: Callable[..., None], header: Header, *args: Any) -> None:
        """Run one handler so that a failing consumer cannot kill the session."""
        try:
            handler(*args)
        except HDSError, OpackError:
            raise
        except Exception:  # per-handler isolation (STYLE Layer 2 §10)
            _LOGGER.exception(
                "%s: unexpected error in handler %r for %s/%s",
                self._log_name,
                handler,
                header.protocol,
                header.topic,
            )

    def _handle_hello(self, request_id: int, message: dict[Any, Any]) -> None:
        """Answer hello; the first one makes the connection ready (§5.1)."""
        self.send_response(PROTOCOL_CONTROL, TOPIC_HELLO, request_id, HDSStatus.SUCCESS, {})
        if self._state == HDS_STATE_AWAITING_HELLO:
            self._state = HDS_STATE_READY
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            _LOGGER.debug("%s: HDS connection %s ready", self._log_name, self.peer)

    def _handle_version(self, request_id: int, message: dict[Any, Any]) -> None:
        """Answer control/version with HDS 1.1 like the ADK (HN does not answer)."""
        self.send_response(
            PROTOCOL_CONTROL,
            TOPIC_VERSION,
            request_id,
            HDSStatus.SUCCESS,
            {"version": HDS_VERSION},
        )

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
        if self._stall_timer is None and self.write_buffer_size:
            self._watch_send_progress()
        if self._debug:
            _LOGGER.debug("%s: HDS -> %s %r", self._log_name, self.peer, header)

    # -- send progress ----------------------------------------------------------------------

    def _bytes_taken_by_kernel(self) -> int:
        """Return the bytes the socket accepted so far (sent minus still queued)."""
        return self.bytes_sent - self.write_buffer_size

    def _watch_send_progress(self) -> None:
        """Start checking a non-empty send queue for progress at the socket."""
        self._sent_mark = self._bytes_taken_by_kernel()
        self._sent_mark_time = self._loop.time()
        self._stall_timer = self._loop.call_at(
            self._sent_mark_time + SEND_STALL_CHECK_INTERVAL, self._check_send_progress
        )

    def _check_send_progress(self) -> None:
        """Note progress; fail sending once the kernel took nothing for SEND_STALL_TIMEOUT."""
        self._stall_timer = None
        if self._state == HDS_STATE_CLOSED:
            return
        now = self._loop.time()
        if (taken := self._bytes_taken_by_kernel()) != self._sent_mark:
            self._sent_mark = taken
            self._sent_mark_time = now
            self._send_stall = None
        elif self._send_stall is None and now - self._sent_mark_time >= SEND_STALL_TIMEOUT:
            self._on_send_stall()
        if self.write_buffer_size:
            self._stall_timer = self._loop.call_at(
                now + SEND_STALL_CHECK_INTERVAL, self._check_send_progress
            )
        else:
            self._send_stall = None

    def _on_send_stall(self) -> None:
        """Fail the producers: the hub keeps the connection open but reads nothing."""
        stall = HDSSendStalledError(f"the hub read nothing for {SEND_STALL_TIMEOUT:g} s")
        self._send_stall = stall
        _LOGGER.info(
            "%s: HDS connection %s: %s with %d bytes queued",
            self._log_name,
            self.peer,
            stall,
            self.write_buffer_size,
        )
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(stall)

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
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        waiters, self._drain_waiters = self._drain_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_exception(HDSClosedError(f"{self._log_name}: HDS connection closed"))
        self._reader = HDSFrameReader()
        if (transport := self._transport) is not None:
            # Queued data for a failed or vanished peer is dropped rather than kept in memory.
            if exc is None and transport.get_write_buffer_size() == 0:
                transport.close()
            else:
                transport.abort()
        self._owner.connection_closed(self, exc)
