"""Exceptions raised by the HomeKit Data Stream package."""

from __future__ import annotations

from .messages import DataSendCloseReason
from .opack import OpackError

__all__ = [
    "HDSClosedError",
    "HDSConnectionError",
    "HDSDecryptError",
    "HDSError",
    "HDSFrameError",
    "HDSProtocolError",
    "HDSSendStalledError",
    "HDSTimeoutError",
    "OpackError",
]


class HDSError(Exception):
    """Base class of every HDS error."""


class HDSConnectionError(HDSError):
    """The HDS connection or its listener failed."""


class HDSProtocolError(HDSError):
    """The peer broke the protocol, or a recording stream must end with a dataSend reason."""

    def __init__(self, reason: DataSendCloseReason, message: str = "") -> None:
        """Store the dataSend reason to send when this error ends a recording stream."""
        super().__init__(message or reason.name)
        self.reason = reason


class HDSSendStalledError(HDSProtocolError):
    """The hub stopped reading: a recording stream could not send anything for too long."""

    def __init__(self, message: str) -> None:
        """Create the error with reason TIMEOUT."""
        super().__init__(DataSendCloseReason.TIMEOUT, message)


class HDSFrameError(HDSProtocolError):
    """A frame header is invalid (wrong type byte or length beyond the payload limit)."""

    def __init__(self, message: str) -> None:
        """Create the error with reason PROTOCOL_ERROR."""
        super().__init__(DataSendCloseReason.PROTOCOL_ERROR, message)


class HDSDecryptError(HDSError):
    """A frame failed authentication (wrong key, wrong counter or tampered bytes)."""


class HDSTimeoutError(HDSError):
    """The peer did not act within an HDS timeout."""


class HDSClosedError(HDSError):
    """The HDS connection is closed."""
