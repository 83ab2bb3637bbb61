"""Header parsing, status codes and close reasons (§4.1, §4.4)."""

from __future__ import annotations

from typing import Any

import pytest

from custom_components.hksv.hds.messages import (
    DataSendCloseReason,
    HDSStatus,
    Header,
    MessageType,
    close_message,
    event_header,
    parse_header,
    reject_message,
    request_header,
    response_header,
)
from custom_components.hksv.hds.opack import Int64
from custom_components.hksv.hds.opack_encoder import encode


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (
            {"protocol": "dataSend", "event": "ack"},
            Header(MessageType.EVENT, "dataSend", "ack", None, None),
        ),
        (
            {"protocol": "control", "request": "hello", "id": 3},
            Header(MessageType.REQUEST, "control", "hello", 3, None),
        ),
        (
            {"protocol": "control", "response": "hello", "id": 3, "status": 0},
            Header(MessageType.RESPONSE, "control", "hello", 3, 0),
        ),
        # The first kind key present wins, in HN's order event -> request -> response.
        (
            {"protocol": "p", "response": "r", "id": 1, "status": 0, "event": "e"},
            Header(MessageType.EVENT, "p", "e", None, None),
        ),
        (
            {"protocol": "p", "request": "r", "event": "e"},
            Header(MessageType.EVENT, "p", "e", None, None),
        ),
        ({"event": "e"}, None),
        ({"protocol": 1, "event": "e"}, None),
        ({"protocol": "p"}, None),
        ({"protocol": "p", "event": 5}, None),
        ({"protocol": "p", "request": "r"}, None),
        ({"protocol": "p", "request": "r", "id": True}, None),
        ({"protocol": "p", "request": "r", "id": "1"}, None),
        ({"protocol": "p", "response": "r", "id": 1}, None),
        ({"protocol": "p", "response": "r", "id": 1, "status": None}, None),
    ],
)
def test_parse_header(header: dict[str, Any], expected: Header | None) -> None:
    """Return the kind, protocol, topic, id and status, or None for an invalid header."""
    assert parse_header(header) == expected


def test_header_builders() -> None:
    """Requests and responses carry id and status as Int64, like HN (§4.1)."""
    assert event_header("dataSend", "data") == {"protocol": "dataSend", "event": "data"}
    request = request_header("control", "hello", 1)
    assert type(request["id"]) is Int64
    response = response_header("dataSend", "open", 7, HDSStatus.SUCCESS)
    assert encode(response).hex() == (
        "e44870726f746f636f6c486461746153656e6448726573706f6e7365446f70656e42696433"
        "070000000000000046737461747573330000000000000000"
    )
    assert reject_message(DataSendCloseReason.BUSY) == {"status": 2}
    assert close_message(1, DataSendCloseReason.NOT_ALLOWED) == {"streamId": 1, "reason": 1}
    assert type(close_message(1, DataSendCloseReason.NOT_ALLOWED)["reason"]) is int


def test_status_codes() -> None:
    """The spec's numbering."""
    assert [s.value for s in HDSStatus] == list(range(7))
    assert HDSStatus.MISSING_PROTOCOL.value == 5
    assert HDSStatus.PROTOCOL_SPECIFIC_ERROR.value == 6
    assert [r.name for r in DataSendCloseReason] == [
        "NORMAL",
        "NOT_ALLOWED",
        "BUSY",
        "CANCELLED",
        "UNSUPPORTED",
        "UNEXPECTED_FAILURE",
        "TIMEOUT",
        "BAD_DATA",
        "PROTOCOL_ERROR",
        "INVALID_CONFIGURATION",
    ]


def test_unknown_close_reason_is_typed() -> None:
    """Reasons a newer hub may send become pseudo-members instead of raising."""
    reason = DataSendCloseReason(42)
    assert isinstance(reason, DataSendCloseReason)
    assert reason == 42
    assert reason.name == "UNKNOWN_42"
    assert DataSendCloseReason(1) is DataSendCloseReason.NOT_ALLOWED
    with pytest.raises(ValueError):
        DataSendCloseReason("1")  # type: ignore[arg-type]
