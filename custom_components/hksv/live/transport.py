"""UDP for one live session: one socket per medium, SRTP out, SRTCP both ways on the same port.

Every peer multiplexes RTCP on the RTP port and iOS sends its receiver reports to the port the
accessory advertised (docs/live-view.md §1.5), so each medium gets one socket bound to the HAP
connection's local address; its port goes into the SetupEndpoints response, RTP and RTCP leave
from it, and only SRTCP from the viewer's address that authenticates is taken in. Sockets are
bound synchronously (the response must be readable right after the write) and wrapped in
asyncio transports when the session starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import ipaddress
import logging
import socket
import time
from typing import Final, override

from .rtcp import ReceiverReport, RtcpError, SenderReport, parse_rtcp
from .srtp import SrtpContext, SrtpError

_LOGGER = logging.getLogger(__name__)

# Bound what one datagram may cost us before it is authenticated.
MAX_DATAGRAM: Final = 2048
# RFC 5761 §4: RTCP packet types 192-223 share the port with RTP payload types 64-95.
_RTCP_TYPES: Final = range(192, 224)
# Log at most this many rejected datagrams per endpoint (debug level beyond).
_LOG_REJECTS: Final = 3


def normalize_local_address(address: str, ipv6: bool) -> str | None:
    """Return ``address`` in the family the viewer uses, or None if it has no such form.

    A link-local IPv6 address keeps its ``%scope``: the sockets are bound with it. What is
    advertised to the viewer goes through ``unscoped`` first.
    """
    bare, _, scope = address.partition("%")
    try:
        parsed = ipaddress.ip_address(bare)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address):
        mapped = parsed.ipv4_mapped
        if mapped is not None:
            return None if ipv6 else str(mapped)
        if not ipv6:
            return None
        return f"{parsed}%{scope}" if scope and parsed.is_link_local else str(parsed)
    return None if ipv6 else str(parsed)


def unscoped(address: str) -> str:
    """Return ``address`` without an IPv6 ``%scope`` (which means nothing to another host)."""
    return address.partition("%")[0]


def same_host(first: str, second: str) -> bool:
    """Return True if two addresses are the same, ignoring IPv6 scopes and spelling."""
    try:
        return ipaddress.ip_address(unscoped(first)) == ipaddress.ip_address(unscoped(second))
    except ValueError:
        return False


type SocketAddress = tuple[str, int] | tuple[str, int, int, int]


def socket_address(address: str, port: int) -> SocketAddress:
    """Return a socket address; a ``%scope`` becomes the scope id (Python's bind needs it)."""
    bare, _, scope = address.partition("%")
    if not scope:
        return address, port
    scope_id = int(scope) if scope.isdigit() else socket.if_nametoindex(scope)
    return bare, port, 0, scope_id


def peer_for(address: str, port: int, local_address: str) -> SocketAddress:
    """Return where to send a viewer: a link-local viewer is reached through our scope.

    iOS sends its link-local address without a scope; sending to it needs the interface
    our own (scoped) link-local address is on.
    """
    try:
        parsed = ipaddress.ip_address(unscoped(address))
    except ValueError:
        return address, port
    _, _, scope = local_address.partition("%")
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.is_link_local and scope:
        try:
            return socket_address(f"{parsed}%{scope}", port)
        except OSError:
            return address, port
    return address, port


def bind_socket(local_address: str, ipv6: bool) -> socket.socket:
    """Return a non-blocking UDP socket on ``local_address`` and an OS-chosen port."""
    family = socket.AF_INET6 if ipv6 else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind(socket_address(local_address, 0))
    except OSError:
        sock.close()
        raise
    return sock


class ReceptionStats:
    """What the viewer reported about one of our streams (RTCP receiver reports)."""

    __slots__ = ("cumulative_lost", "fraction_lost", "jitter", "reports")

    def __init__(self) -> None:
        """Start with nothing reported."""
        self.reports = 0
        self.fraction_lost = 0.0
        self.cumulative_lost = 0
        self.jitter = 0

    def as_dict(self) -> dict[str, float | int]:
        """Return the numbers for diagnostics."""
        return {
            "reports": self.reports,
            "fraction_lost": round(self.fraction_lost, 4),
            "cumulative_lost": self.cumulative_lost,
            "jitter": self.jitter,
        }


class MediaEndpoint(asyncio.DatagramProtocol):
    """One medium's socket: SRTP/SRTCP out to the viewer, SRTCP in from the viewer only."""

    def __init__(
        self,
        sock: socket.socket,
        *,
        peer: SocketAddress,
        send_context: SrtpContext,
        receive_context: SrtpContext,
        our_ssrc: int,
        on_valid_rtcp: Callable[[], None],
        log_name: str,
    ) -> None:
        """Wrap a bound socket; ``async_open`` starts receiving."""
        self._sock: socket.socket | None = sock
        self.port: int = sock.getsockname()[1]
        self.peer = peer
        self._send_context = send_context
        self._receive_context = receive_context
        self._our_ssrc = our_ssrc
        self._on_valid_rtcp = on_valid_rtcp
        self._log_name = log_name
        self._transport: asyncio.DatagramTransport | None = None
        self._closed = False
        self.reception = ReceptionStats()
        self.packets_sent = 0
        self.bytes_sent = 0
        self.largest_datagram = 0
        self.rtcp_received = 0
        self.rejected = 0
        self.send_errors = 0

    async def async_open(self) -> None:
        """Start the asyncio transport on the bound socket."""
        sock, self._sock = self._sock, None
        if sock is None or self._closed:
            return
        loop = asyncio.get_running_loop()
        # The socket belongs to the transport from here on; a ``close`` while this waits
        # reaches it through ``connection_made``.
        try:
            await loop.create_datagram_endpoint(lambda: self, sock=sock)
        except BaseException:
            if self._transport is None:
                sock.close()
            raise

    @override
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport (or close it: the session ended while it was opening)."""
        if self._closed:
            transport.close()
            return
        if isinstance(transport, asyncio.DatagramTransport):
            self._transport = transport

    @override
    def error_received(self, exc: Exception) -> None:
        """Count ICMP errors (a viewer that went away); the idle timer ends the session."""
        self.send_errors += 1

    def send_rtp(self, rtp: bytes) -> None:
        """Encrypt and send one RTP packet."""
        self._send(self._send_context.protect(rtp))

    def send_rtcp(self, rtcp: bytes) -> None:
        """Encrypt and send one RTCP compound packet."""
        self._send(self._send_context.protect_rtcp(rtcp))

    def _send(self, datagram: bytes) -> None:
        """Send to the viewer, counting what went out."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        transport.sendto(datagram, self.peer)
        self.packets_sent += 1
        self.bytes_sent += len(datagram)
        self.largest_datagram = max(self.largest_datagram, len(datagram))

    @override
    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        """Take authenticated SRTCP from the viewer's address; drop everything else."""
        if (
            not isinstance(addr[0], str)
            or not same_host(addr[0], self.peer[0])
            or len(data) > MAX_DATAGRAM
            or len(data) < 8
        ):
            self._reject("datagram from %s of %d bytes", addr[0], len(data))
            return
        if data[1] not in _RTCP_TYPES:
            return  # return audio (talkback) is not supported; ignore it
        try:
            packets = parse_rtcp(self._receive_context.unprotect_rtcp(data))
        except (SrtpError, RtcpError) as err:
            self._reject("SRTCP refused: %s", err)
            return
        self.rtcp_received += 1
        for packet in packets:
            if isinstance(packet, (ReceiverReport, SenderReport)):
                for block in packet.reports:
                    if block.ssrc == self._our_ssrc:
                        stats = self.reception
                        stats.reports += 1
                        stats.fraction_lost = block.fraction_lost / 256
                        stats.cumulative_lost = block.cumulative_lost
                        stats.jitter = block.jitter
        self._on_valid_rtcp()

    def _reject(self, message: str, *args: object) -> None:
        """Count a refused datagram; log the first few only."""
        self.rejected += 1
        level = logging.INFO if self.rejected <= _LOG_REJECTS else logging.DEBUG
        _LOGGER.log(level, "%s: " + message, self._log_name, *args)

    @property
    def closed(self) -> bool:
        """Return True once ``close`` was called."""
        return self._closed

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self._closed = True
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        if self._transport is not None:
            self._transport.close()
            self._transport = None


class SessionTransport:
    """The video and audio endpoints of one session, and the viewer's RTCP liveness."""

    def __init__(self, video: MediaEndpoint, audio: MediaEndpoint) -> None:
        """Pair the two endpoints."""
        self.video = video
        self.audio = audio
        self.last_valid_rtcp = time.monotonic()

    def touch(self) -> None:
        """Note valid SRTCP from the viewer."""
        self.last_valid_rtcp = time.monotonic()

    async def async_open(self) -> None:
        """Start both endpoints; the idle clock starts now."""
        await self.video.async_open()
        await self.audio.async_open()
        self.last_valid_rtcp = time.monotonic()

    def close(self) -> None:
        """Close both sockets."""
        self.video.close()
        self.audio.close()
