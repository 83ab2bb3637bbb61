"""Size limits on HAP requests, enforced while they arrive (before anything is buffered).

HAP-python collects a request body without limit before dispatching it, so one unpaired
connection declaring a huge ``Content-Length`` could grow Home Assistant by hundreds of MB.
Every HAP request is small: TLV pairing messages, a characteristics batch, a snapshot
request. The h11 connection of each HAP connection is replaced by one that refuses a request
as soon as its declared or received body exceeds the limit of its endpoint, and that bounds
the request line and headers.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final, override

import h11
from pyhap.hap_protocol import HAPServerProtocol

from ..hds.server import normalize_host

# Request line and headers together; controllers send a few short headers.
MAX_HEADER_BYTES: Final = 8 * 1024
# Largest PUT /characteristics accepted (a batch of writes with TLV8 values).
MAX_CHARACTERISTICS_BODY: Final = 64 * 1024
# Pair-setup M3 (SRP key and proof) is the largest pairing message, under 1 KiB.
MAX_PAIRING_BODY: Final = 4 * 1024
# /prepare, /resource, /identify and anything unknown: a short JSON object at most.
MAX_SMALL_BODY: Final = 1024
# Connections that have not completed pair-verify: a controller needs one at a time per
# device (pair-setup, or the few milliseconds before pair-verify). Beyond the per-address
# bound new ones are refused; beyond the total the longest-idle one is closed, so that
# strangers can hold neither memory nor sockets without end.
MAX_UNVERIFIED_PER_PEER: Final = 8
MAX_UNVERIFIED: Final = 64

BODY_LIMITS: Final[dict[bytes, int]] = {
    b"/characteristics": MAX_CHARACTERISTICS_BODY,
    b"/pair-setup": MAX_PAIRING_BODY,
    b"/pair-verify": MAX_PAIRING_BODY,
    b"/pairings": MAX_PAIRING_BODY,
}


def body_limit(target: bytes) -> int:
    """Return the largest body accepted for a request target (path and query)."""
    path = target.partition(b"?")[0]
    return BODY_LIMITS.get(path, MAX_SMALL_BODY)


class RequestTooLarge(h11.RemoteProtocolError):
    """A request body over its endpoint's limit (answered 413, then closed)."""

    def __init__(self, message: str) -> None:
        """Hint HTTP 413 to the protocol that answers."""
        super().__init__(message, error_status_hint=413)


class BoundedConnection(h11.Connection):
    """A server-side h11 connection that refuses oversized requests while they arrive.

    The body check runs on the Request event (the declared length) and on every Data event
    (the running total, which also covers chunked bodies), so the protocol never stores more
    than one endpoint limit plus the chunk in hand.
    """

    def __init__(self) -> None:
        """Create the connection with the header bound."""
        super().__init__(h11.SERVER, max_incomplete_event_size=MAX_HEADER_BYTES)
        self._body_limit = MAX_SMALL_BODY
        self._body_received = 0

    @override
    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """Return the next event; raise RemoteProtocolError for anything over a limit."""
        try:
            event = super().next_event()
        except ValueError as err:
            # h11 turns a Content-Length beyond Python's int digit limit into ValueError.
            raise h11.RemoteProtocolError(f"unparsable request: {err}") from None
        if type(event) is h11.Request:
            self._body_limit = body_limit(event.target)
            self._body_received = 0
            declared = _declared_length(event.headers)
            if declared is not None and declared > self._body_limit:
                raise RequestTooLarge(
                    f"body of {declared} bytes declared, {self._body_limit} allowed"
                )
        elif type(event) is h11.Data:
            self._body_received += len(event.data)
            if self._body_received > self._body_limit:
                raise RequestTooLarge(f"more than {self._body_limit} body bytes received")
        return event


def _declared_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    """Return the Content-Length (h11 has checked it is digits), or None."""
    for name, value in headers:
        if name == b"content-length":
            return int(value) if len(value) <= 19 else 1 << 63
    return None


def unverified_admission(
    new: HAPServerProtocol, connections: Iterable[HAPServerProtocol]
) -> tuple[bool, HAPServerProtocol | None]:
    """Return (admit ``new``, the idle unverified connection to close to make room)."""
    others = [c for c in connections if c is not new and c.hap_crypto is None]
    host = normalize_host(str(new.peername[0])) if new.peername else ""
    same_peer = sum(1 for c in others if c.peername and normalize_host(str(c.peername[0])) == host)
    if same_peer >= MAX_UNVERIFIED_PER_PEER:
        return False, None
    if len(others) >= MAX_UNVERIFIED:
        return True, min(others, key=lambda c: c.last_activity or 0.0)
    return True, None
