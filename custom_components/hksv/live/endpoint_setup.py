"""A SetupEndpoints that succeeded: one viewer's sockets, keys and SSRCs until START.

Answering a SetupEndpoints write (docs/live-view.md §1.4 step 1) binds one UDP socket per medium
on our address and picks our SSRCs; the answer echoes the controller's SRTP keys, so we send
with what we answer (docs/live-view.md §1.5). At START the sockets become the session's SRTP
transport; a setup that never starts closes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
import logging
import secrets
import time
from typing import TYPE_CHECKING, Final

from ..hap.rtp_stream import (
    EndpointAddress,
    SetupEndpointsRequest,
    SetupEndpointsResponse,
    SetupStatus,
    SrtpSuite,
)
from .srtp import SrtpContext
from .transport import MediaEndpoint, SessionTransport, bind_socket, peer_for, unscoped

if TYPE_CHECKING:
    import socket

    from ..hap.driver import ClientAddress

_LOGGER = logging.getLogger(__name__)

_KEY_LENGTH: Final = 16
_SALT_LENGTH: Final = 14


@dataclass(slots=True)
class PendingSetup:
    """A SetupEndpoints that succeeded: sockets, keys and SSRCs, waiting for START."""

    session_id: bytes
    client: ClientAddress
    request: SetupEndpointsRequest
    local_address: str
    video_socket: socket.socket
    audio_socket: socket.socket
    video_ssrc: int
    audio_ssrc: int
    created: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        """Close sockets not handed to a session."""
        self.video_socket.close()
        self.audio_socket.close()

    def response(self) -> bytes:
        """Return the success answer the controller reads back (it echoes the keys)."""
        request = self.request
        return SetupEndpointsResponse(
            session_id=request.session_id,
            status=SetupStatus.SUCCESS,
            address=EndpointAddress(
                request.address.ip_version,
                unscoped(self.local_address),
                self.video_socket.getsockname()[1],
                self.audio_socket.getsockname()[1],
            ),
            video_srtp=request.video_srtp,
            audio_srtp=request.audio_srtp,
            video_ssrc=self.video_ssrc,
            audio_ssrc=self.audio_ssrc,
        ).encode()


def usable_srtp(request: SetupEndpointsRequest) -> bool:
    """Return True if both media ask for AES_CM_128_HMAC_SHA1_80 with proper key sizes."""
    return all(
        params.suite == SrtpSuite.AES_CM_128_HMAC_SHA1_80
        and len(params.master_key) == _KEY_LENGTH
        and len(params.master_salt) == _SALT_LENGTH
        for params in (request.video_srtp, request.audio_srtp)
    )


def bind_setup(
    request: SetupEndpointsRequest,
    client: ClientAddress,
    local: str,
    ipv6: bool,
    log_name: str,
) -> PendingSetup | None:
    """Bind both media's sockets on ``local``; None (logged) if either cannot be opened."""
    try:
        video_socket = bind_socket(local, ipv6)
    except OSError as err:
        _LOGGER.warning("%s: cannot open a live view socket: %s", log_name, err)
        return None
    try:
        audio_socket = bind_socket(local, ipv6)
    except OSError as err:
        video_socket.close()
        _LOGGER.warning("%s: cannot open a live view socket: %s", log_name, err)
        return None
    return PendingSetup(
        request.session_id,
        client,
        request,
        local,
        video_socket,
        audio_socket,
        _ssrc(),
        _ssrc(),
    )


def _ssrc() -> int:
    """Return a random non-zero SSRC."""
    return secrets.randbelow(0xFFFFFFFF) + 1


def session_transport(setup: PendingSetup, log_name: str) -> SessionTransport:
    """Wrap a setup's sockets in SRTP endpoints aimed at the viewer."""
    request = setup.request
    holder: list[SessionTransport] = []

    def touch() -> None:
        holder[0].touch()

    endpoints = []
    for sock, params, port, ssrc in (
        (setup.video_socket, request.video_srtp, request.address.video_port, setup.video_ssrc),
        (setup.audio_socket, request.audio_srtp, request.address.audio_port, setup.audio_ssrc),
    ):
        endpoints.append(
            MediaEndpoint(
                sock,
                peer=peer_for(request.address.address, port, setup.local_address),
                send_context=SrtpContext(params.master_key, params.master_salt),
                receive_context=SrtpContext(params.master_key, params.master_salt),
                our_ssrc=ssrc,
                on_valid_rtcp=touch,
                log_name=log_name,
            )
        )
    transport = SessionTransport(endpoints[0], endpoints[1])
    holder.append(transport)
    return transport
