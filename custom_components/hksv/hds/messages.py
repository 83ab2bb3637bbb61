"""HDS message shapes: header dictionaries, status codes and dataSend reasons (§4.1, §4.4)."""

from __future__ import annotations

from enum import IntEnum
from typing import Any, Final, NamedTuple, Self, TypeIs

from .opack import Int64

PROTOCOL_CONTROL: Final = "control"
PROTOCOL_DATA_SEND: Final = "dataSend"

TOPIC_HELLO: Final = "hello"
TOPIC_VERSION: Final = "version"
TOPIC_OPEN: Final = "open"
TOPIC_DATA: Final = "data"
TOPIC_ACK: Final = "ack"
TOPIC_CLOSE: Final = "close"

# control/version answer: the ADK reports HDS 1.1 as float64 (HAPDataStreamProtocols+Control.c).
HDS_VERSION: Final = 1.1


class MessageType(IntEnum):
    """Kind of an HDS message, decided by the header's keys (HN MessageType)."""

    EVENT = 1
    REQUEST = 2
    RESPONSE = 3


class HDSStatus(IntEnum):
    """Header `status` of a response (HN HDSStatus, ADK HAPDataStreamResponseStatus)."""

    SUCCESS = 0
    OUT_OF_MEMORY = 1
    TIMEOUT = 2
    HEADER_ERROR = 3
    PAYLOAD_ERROR = 4
    MISSING_PROTOCOL = 5
    PROTOCOL_SPECIFIC_ERROR = 6


class DataSendCloseReason(IntEnum):
    """dataSend close reason and open-reject status (HN HDSProtocolSpecificErrorReason)."""

    NORMAL = 0
    NOT_ALLOWED = 1
    BUSY = 2
    CANCELLED = 3
    UNSUPPORTED = 4
    UNEXPECTED_FAILURE = 5
    TIMEOUT = 6
    BAD_DATA = 7
    PROTOCOL_ERROR = 8
    INVALID_CONFIGURATION = 9

    @classmethod
    def _missing_(cls, value: object) -> Self | None:
        """Return a pseudo-member for reasons newer hubs may send, so they stay typed."""
        if type(value) is not int:
            return None
        member = int.__new__(cls, value)
        member._name_ = f"UNKNOWN_{value}"
        member._value_ = value
        return member


class Header(NamedTuple):
    """A parsed header dictionary."""

    type: MessageType
    protocol: str
    topic: str
    id: int | None
    status: int | None


# HN decides the kind by the first key present, in this order (§4.1).
_KIND_KEYS: Final = (
    ("event", MessageType.EVENT),
    ("request", MessageType.REQUEST),
    ("response", MessageType.RESPONSE),
)


def is_int(value: object) -> TypeIs[int]:
    """Return True for an int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def parse_header(header: dict[Any, Any]) -> Header | None:
    """Return the parsed header, or None if it is not a valid event, request or response."""
    protocol = header.get("protocol")
    if not isinstance(protocol, str):
        return None
    for key, kind in _KIND_KEYS:
        if key in header:
            return _parse_kind(header, kind, protocol, header[key])
    return None


def _parse_kind(
    header: dict[Any, Any], kind: MessageType, protocol: str, topic: object
) -> Header | None:
    """Return the header of a known kind, or None if a field has the wrong type."""
    if not isinstance(topic, str):
        return None
    if kind is MessageType.EVENT:
        return Header(kind, protocol, topic, None, None)
    request_id = header.get("id")
    if not is_int(request_id):
        return None
    if kind is MessageType.REQUEST:
        return Header(kind, protocol, topic, request_id, None)
    status = header.get("status")
    if not is_int(status):
        return None
    return Header(kind, protocol, topic, request_id, status)


def event_header(protocol: str, topic: str) -> dict[str, Any]:
    """Return an event header."""
    return {"protocol": protocol, "event": topic}


def request_header(protocol: str, topic: str, request_id: int) -> dict[str, Any]:
    """Return a request header; the id is written as Int64 like HN does."""
    return {"protocol": protocol, "request": topic, "id": Int64(request_id)}


def response_header(protocol: str, topic: str, request_id: int, status: int) -> dict[str, Any]:
    """Return a response header; id and status are Int64 like HN writes them (§4.1)."""
    return {
        "protocol": protocol,
        "response": topic,
        "id": Int64(request_id),
        "status": Int64(status),
    }


def reject_message(reason: DataSendCloseReason) -> dict[str, Any]:
    """Return the message of a rejected dataSend open (header status 6)."""
    return {"status": int(reason)}


def close_message(stream_id: int, reason: DataSendCloseReason) -> dict[str, Any]:
    """Return the message of a dataSend close event."""
    return {"streamId": stream_id, "reason": int(reason)}
