"""HomeKit Data Stream (HDS): the encrypted TCP channel that carries HKSV recordings.

Pure asyncio + `cryptography`; no Home Assistant imports (see docs/hksv-protocol.md §3-§5).
"""

from .delegate import RecordingDelegate, RecordingPacket
from .errors import (
    HDSClosedError,
    HDSConnectionError,
    HDSDecryptError,
    HDSError,
    HDSFrameError,
    HDSProtocolError,
    HDSSendStalledError,
    HDSTimeoutError,
    OpackError,
)
from .frame import HDSKeys, derive_keys
from .messages import DataSendCloseReason, HDSStatus
from .server import DataStreamServer

__all__ = [
    "DataSendCloseReason",
    "DataStreamServer",
    "HDSClosedError",
    "HDSConnectionError",
    "HDSDecryptError",
    "HDSError",
    "HDSFrameError",
    "HDSKeys",
    "HDSProtocolError",
    "HDSSendStalledError",
    "HDSStatus",
    "HDSTimeoutError",
    "OpackError",
    "RecordingDelegate",
    "RecordingPacket",
    "derive_keys",
]
