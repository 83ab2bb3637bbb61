"""Shared helpers for the HDS tests: golden vectors, JSON conventions, a fake delegate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
import json
import math
from pathlib import Path
from typing import Any, Final
import uuid

from custom_components.hksv.hds import DataSendCloseReason, HDSDecryptError, RecordingPacket
from custom_components.hksv.hds.connection import SessionMatch
from custom_components.hksv.hds.frame import DecryptCipher, EncryptCipher
from custom_components.hksv.hds.opack import Date, Float32, Int8, Int16, Int32, Int64

SHARED: Final = Path(__file__).resolve().parents[2].parent / "shared"
VECTORS_PATH: Final = SHARED / "fixtures" / "hds-vectors.json"
EXAMPLES: Final = SHARED / "fixtures" / "hksv-spec-examples"
FRAGMENT_FILES: Final = ("mediaInitialization", "sequence2", "sequence3", "sequence4")

VECTORS: Final[dict[str, Any]] = json.loads(VECTORS_PATH.read_text())
CODEC_VECTORS: Final = [v for v in VECTORS["vectors"] if v["kind"] == "codec"]
PAYLOAD_VECTORS: Final = [v for v in VECTORS["vectors"] if v["kind"] == "hds_payload"]
CRYPTO: Final = {v["name"]: v for v in VECTORS["crypto_vectors"]}
KEY_DERIVATION: Final = CRYPTO["hds_key_derivation"]
FRAME_VECTORS: Final = [v for v in VECTORS["crypto_vectors"] if "frame_hex" in v]
TRANSCRIPTS: Final = VECTORS["transcripts"]

SHARED_SECRET: Final = bytes.fromhex(KEY_DERIVATION["inputs"]["shared_secret_hex"])
CONTROLLER_SALT: Final = bytes.fromhex(KEY_DERIVATION["inputs"]["controller_key_salt_hex"])
ACCESSORY_SALT: Final = bytes.fromhex(KEY_DERIVATION["inputs"]["accessory_key_salt_hex"])
A2C_KEY: Final = bytes.fromhex(KEY_DERIVATION["accessory_to_controller_key_hex"])
C2A_KEY: Final = bytes.fromhex(KEY_DERIVATION["controller_to_accessory_key_hex"])


class _Undefined:
    """hap-nodejs' `undefined`."""

    def __repr__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Final = _Undefined()

_WRAPPERS: Final[dict[str, Any]] = {
    "$int8": Int8,
    "$int16": Int16,
    "$int32": Int32,
    "$int64": Int64,
    "$float32": Float32,
    "$float64": float,
    "$float": float,
    "$date": Date,
}


def from_json(value: Any) -> Any:
    """Convert a vector value from the JSON conventions of hds-vectors.json to Python."""
    if isinstance(value, list):
        return [from_json(item) for item in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == "$bytes":
                return bytes.fromhex(inner)
            if key == "$uuid":
                return uuid.UUID(inner)
            if key == "$undefined":
                return UNDEFINED
            if key in _WRAPPERS:
                return _WRAPPERS[key](inner)
        converted = {key: from_json(item) for key, item in value.items()}
        return {key: item for key, item in converted.items() if item is not UNDEFINED}
    return value


def typed(value: Any) -> Any:
    """Return value with every scalar tagged by its kind, so 2 != 2.0 and Date != float."""
    if isinstance(value, list | tuple):
        return ["list", [typed(item) for item in value]]
    if isinstance(value, dict):
        return ["dict", [(typed(k), typed(v)) for k, v in value.items()]]
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int):
        return ("int", int(value))
    if isinstance(value, Date):
        return ("date", float(value))
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else float(value))
    if isinstance(value, bytes | bytearray | memoryview):
        return ("bytes", bytes(value))
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, uuid.UUID):
        return ("uuid", value)
    if value is None:
        return ("none",)
    raise TypeError(f"unexpected {type(value)!r}")


def fixture_fragments() -> list[bytes]:
    """Return the example recording: the init segment, then three fragments."""
    return [(EXAMPLES / "fragments" / f"{name}.mp4").read_bytes() for name in FRAGMENT_FILES]


def fixture_chunk_sizes() -> list[list[int]]:
    """Return, per fragment file, the sizes of its chunks as sent over HDS."""
    sizes: list[list[int]] = []
    for name in FRAGMENT_FILES:
        single = EXAMPLES / "chunks" / f"{name}.mp4"
        if single.exists():
            sizes.append([single.stat().st_size])
        else:
            parts = sorted((EXAMPLES / "chunks").glob(f"{name}_*.mp4"))
            sizes.append([part.stat().st_size for part in parts])
    return sizes


@dataclass
class FakeDelegate:
    """A RecordingDelegate that yields given packets and records every call."""

    packets: list[RecordingPacket] = field(default_factory=list)
    recording_active: bool = True
    camera_active: bool = True
    has_selected_configuration: bool = True
    # After the packets: wait until the stream is closed (True) or return at once (False).
    hold_open: bool = True
    fail_after: int | None = None  # raise this many packets in
    failure: BaseException | None = None
    calls: list[tuple[Any, ...]] = field(default_factory=list)
    refusals: list[tuple[int, DataSendCloseReason]] = field(default_factory=list)
    pulled: int = 0
    closed_generators: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _released: set[int] = field(default_factory=set)

    def handle_recording_stream_request(self, stream_id: int) -> AsyncIterator[RecordingPacket]:
        """Record the call and return the packet generator."""
        self.calls.append(("handleRecordingStreamRequest", stream_id))
        return self._generate(stream_id)

    async def _generate(self, stream_id: int) -> AsyncIterator[RecordingPacket]:
        """Yield the packets, fail or hold as configured."""
        try:
            for index, packet in enumerate(self.packets):
                if self.fail_after is not None and index == self.fail_after:
                    raise self.failure or RuntimeError("camera failed")
                self.pulled += 1
                yield packet
            if self.fail_after is not None and self.fail_after >= len(self.packets):
                raise self.failure or RuntimeError("camera failed")
            if self.hold_open:
                await asyncio.Event().wait()
        finally:
            self.closed_generators += 1

    def acknowledge_stream(self, stream_id: int) -> None:
        """Record an ack."""
        self.calls.append(("acknowledgeStream", stream_id))
        self.ended.set()

    def close_recording_stream(self, stream_id: int, reason: DataSendCloseReason | None) -> None:
        """Record a close."""
        self.calls.append(("closeRecordingStream", stream_id, reason))
        self.ended.set()

    def recording_stream_refused(self, stream_id: int, reason: DataSendCloseReason) -> None:
        """Record a refused open (apart from ``calls``: the stream never started)."""
        self.refusals.append((stream_id, reason))


def packets_from(datas: Iterable[bytes], *, last: bool = True) -> list[RecordingPacket]:
    """Return RecordingPackets for datas, the final one flagged is_last if last."""
    items = list(datas)
    return [
        RecordingPacket(data, last and index == len(items) - 1) for index, data in enumerate(items)
    ]


class FakeTransport(asyncio.Transport):
    """A transport that records writes, for connection tests without sockets."""

    def __init__(self) -> None:
        """Start open with an empty buffer."""
        super().__init__()
        self.frames: list[bytes] = []
        self.buffer_size = 0
        self.closed = False
        self.aborted = False
        self.limits: tuple[int | None, int | None] = (None, None)

    def writelines(self, list_of_data: Iterable[Any]) -> None:
        """Record one frame (header + ciphertext) per call."""
        self.frames.append(b"".join(bytes(part) for part in list_of_data))

    def write(self, data: Any) -> None:
        """Record raw bytes."""
        self.frames.append(bytes(data))

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """Return a fake peer address."""
        return {"peername": ("192.0.2.1", 50000)}.get(name, default)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Record the limits."""
        self.limits = (high, low)

    def get_write_buffer_size(self) -> int:
        """Return the simulated buffer size."""
        return self.buffer_size

    def is_closing(self) -> bool:
        """Return True after close or abort."""
        return self.closed or self.aborted

    def close(self) -> None:
        """Record a graceful close."""
        self.closed = True

    def abort(self) -> None:
        """Record an abort."""
        self.aborted = True


@dataclass
class MockOwner:
    """A ConnectionOwner with fixed sessions (c2a keys, in order) that records closes."""

    keys: list[tuple[bytes, bytes]] = field(default_factory=lambda: [(A2C_KEY, C2A_KEY)])
    closed: list[tuple[Any, BaseException | None]] = field(default_factory=list)
    closed_event: asyncio.Event = field(default_factory=asyncio.Event)

    def match_session(self, header: bytes, body: memoryview) -> SessionMatch | None:
        """Try each session's c2a key with counter 0."""
        for index, (a2c, c2a) in enumerate(self.keys):
            decrypt = DecryptCipher(c2a)
            try:
                plaintext = decrypt.open(header, body)
            except HDSDecryptError:
                continue
            del self.keys[index]
            return SessionMatch(f"hap-{index}", EncryptCipher(a2c), decrypt, plaintext)
        return None

    def admit_connection(self, connection: Any, peer_host: str) -> bool:
        """Admit every connection (admission is tested on the real server)."""
        return True

    def connection_closed(self, connection: Any, exc: BaseException | None) -> None:
        """Record the close."""
        self.closed.append((connection, exc))
        self.closed_event.set()
