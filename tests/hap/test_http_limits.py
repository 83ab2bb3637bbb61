"""The bounded h11 connection: no body byte past an endpoint's limit ever reaches the caller."""

from __future__ import annotations

import itertools

import h11
from hypothesis import given, settings, strategies as st
import pytest

from custom_components.hksv.hap.http_limits import (
    MAX_CHARACTERISTICS_BODY,
    MAX_HEADER_BYTES,
    MAX_PAIRING_BODY,
    MAX_SMALL_BODY,
    BoundedConnection,
    RequestTooLarge,
    body_limit,
)

TARGETS = {
    b"/pair-setup": MAX_PAIRING_BODY,
    b"/pairings": MAX_PAIRING_BODY,
    b"/characteristics?id=1.2": MAX_CHARACTERISTICS_BODY,
    b"/prepare": MAX_SMALL_BODY,
    b"/resource": MAX_SMALL_BODY,
    b"/unknown": MAX_SMALL_BODY,
}


def _feed(
    conn: BoundedConnection, data: bytes, cuts: list[int]
) -> tuple[int, bool, h11.RemoteProtocolError | None]:
    """Feed data in pieces; return (body bytes delivered, message complete, refusal)."""
    delivered = 0
    pieces = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    for start, end in itertools.pairwise(pieces):
        conn.receive_data(data[start:end])
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as err:
                return delivered, False, err
            if event is h11.NEED_DATA or event is h11.PAUSED:
                break
            if isinstance(event, h11.Data):
                delivered += len(event.data)
            if isinstance(event, h11.EndOfMessage):
                return delivered, True, None
    return delivered, False, None


@settings(max_examples=300, deadline=None)
@given(
    target=st.sampled_from(sorted(TARGETS)),
    size=st.integers(0, 80 * 1024),
    chunked=st.booleans(),
    declared_extra=st.integers(0, 1 << 40),
    cuts=st.lists(st.integers(0, 1 << 20), max_size=12),
)
def test_body_never_passes_the_limit(
    target: bytes, size: int, chunked: bool, declared_extra: int, cuts: list[int]
) -> None:
    """Whatever the split, a body within the limit arrives whole; beyond it is refused."""
    limit = TARGETS[target]
    body = bytes(size)
    if chunked:
        framing = b"Transfer-Encoding: chunked\r\n\r\n"
        payload = (f"{size:x}\r\n".encode() + body + b"\r\n" if size else b"") + b"0\r\n\r\n"
        declared = size
    else:
        # Sometimes declare more than is sent: the declaration alone must be refused.
        declared = size + (declared_extra if declared_extra % 3 == 0 else 0)
        framing = f"Content-Length: {declared}\r\n\r\n".encode()
        payload = body
    request = b"POST " + target + b" HTTP/1.1\r\nHost: h\r\n" + framing + payload
    delivered, complete, refused = _feed(BoundedConnection(), request, cuts)
    assert delivered <= limit
    if declared > limit or size > limit:
        assert isinstance(refused, RequestTooLarge)
        assert refused.error_status_hint == 413
    elif declared == size:
        assert refused is None
        assert complete and delivered == size


@pytest.mark.parametrize("filler", [MAX_HEADER_BYTES + 1, 64 * 1024])
def test_headers_are_bounded(filler: int) -> None:
    """Headers that never end are refused with 431 once past the bound."""
    conn = BoundedConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nX: " + b"a" * filler)
    with pytest.raises(h11.RemoteProtocolError) as err:
        conn.next_event()
    assert err.value.error_status_hint == 431


def test_content_length_beyond_int_digits_is_a_protocol_error() -> None:
    """A 5000-digit Content-Length is a 400, not a ValueError escaping data_received."""
    conn = BoundedConnection()
    conn.receive_data(b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n")
    with pytest.raises(h11.RemoteProtocolError):
        conn.next_event()


def test_body_limit_ignores_the_query() -> None:
    """Limits are per path."""
    assert body_limit(b"/characteristics?id=1.2") == MAX_CHARACTERISTICS_BODY
    assert body_limit(b"/nope") == MAX_SMALL_BODY
