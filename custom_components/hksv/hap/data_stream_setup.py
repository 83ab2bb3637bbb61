"""SetupDataStreamTransport: the hub's request for an HDS connection, and our answer (§2.5–§2.6)."""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from .definitions import HapStatus, HapStatusError
from .tlv8 import U8, U16, Bytes, Nested, TLVError, TLVStruct, tlv, tlv_list

SALT_LENGTH: Final = 32


class SessionCommand(IntEnum):
    """Session command types; only "start" exists."""

    START = 0


class TransportType(IntEnum):
    """Transport types; HAP-NodeJS and hksv speak HDS over TCP only."""

    HDS_OVER_TCP = 0


class SetupStatus(IntEnum):
    """Status in the write response (ADK values)."""

    SUCCESS = 0
    GENERIC_ERROR = 1
    BUSY = 2


@dataclass(frozen=True, slots=True)
class TransferTransportConfiguration(TLVStruct):
    """One supported transport."""

    transport_type: int = tlv(1, U8)


@dataclass(frozen=True, slots=True)
class SupportedDataStreamTransportConfiguration(TLVStruct):
    """SupportedDataStreamTransportConfiguration, UUID 00000130."""

    transports: list[TransferTransportConfiguration] = tlv_list(
        1, Nested(TransferTransportConfiguration)
    )


SUPPORTED_TRANSPORTS: Final = SupportedDataStreamTransportConfiguration(
    transports=[TransferTransportConfiguration(transport_type=TransportType.HDS_OVER_TCP)]
)


@dataclass(frozen=True, slots=True)
class SetupDataStreamRequest(TLVStruct):
    """The hub's SetupDataStreamTransport write."""

    command: int = tlv(1, U8)
    transport_type: int = tlv(2, U8)
    controller_key_salt: bytes | None = tlv(3, Bytes(), default=None)


@dataclass(frozen=True, slots=True)
class TransportSessionParameters(TLVStruct):
    """Where the hub connects: the TCP port."""

    tcp_port: int = tlv(1, U16)


@dataclass(frozen=True, slots=True)
class SetupDataStreamResponse(TLVStruct):
    """Our answer, sent as the write response; later reads get it without the salt."""

    status: int = tlv(1, U8)
    parameters: TransportSessionParameters | None = tlv(
        2, Nested(TransportSessionParameters), default=None
    )
    accessory_key_salt: bytes | None = tlv(3, Bytes(SALT_LENGTH), default=None)


type PrepareSession = Callable[[bytes], tuple[int, bytes]]


def answer_setup(value: object, prepare: PrepareSession) -> tuple[str, str]:
    """Handle a SetupDataStreamTransport write; return (write response, later read) base64.

    ``prepare`` takes the controller salt and returns (port, accessory salt). Malformed
    requests are refused with -70410 as HAP-NodeJS does.
    """
    if not isinstance(value, str):
        raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "value is not base64 text")
    try:
        raw = base64.b64decode(value, validate=True)
    except ValueError as err:  # binascii.Error, and plain ValueError for non-ASCII text
        raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, f"not base64: {err}") from err
    try:
        request = SetupDataStreamRequest.decode(raw)
    except TLVError as err:
        raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, f"malformed: {err}") from err
    if request.command != SessionCommand.START:
        raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "unknown session command")
    if request.transport_type != TransportType.HDS_OVER_TCP:
        raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "unsupported transport")
    salt = request.controller_key_salt
    if salt is None or len(salt) != SALT_LENGTH:
        raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "controller salt must be 32 bytes")
    port, accessory_salt = prepare(salt)
    params = TransportSessionParameters(tcp_port=port)
    response = SetupDataStreamResponse(
        status=SetupStatus.SUCCESS, parameters=params, accessory_key_salt=accessory_salt
    )
    read_back = SetupDataStreamResponse(status=SetupStatus.SUCCESS, parameters=params)
    return _b64(response.encode()), _b64(read_back.encode())


def busy_response() -> str:
    """Return the write response telling the hub to try again later (ADK status 2)."""
    return _b64(SetupDataStreamResponse(status=SetupStatus.BUSY).encode())


def _b64(data: bytes) -> str:
    """Return base64 text."""
    return base64.b64encode(data).decode()
