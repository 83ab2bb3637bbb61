"""HDS frames: key derivation, the ChaCha20-Poly1305 ciphers, the frame reader (§3.2-§3.3)."""

from __future__ import annotations

from functools import partial
from struct import Struct
from typing import Any, Final, NamedTuple

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import HDSDecryptError, HDSFrameError, HDSProtocolError, OpackError
from .messages import DataSendCloseReason
from .opack_decoder import decode_range
from .opack_encoder import encode_into

# Info strings are named from the controller's point of view (§3.2).
HKDF_INFO_ACCESSORY_TO_CONTROLLER: Final = b"HDS-Read-Encryption-Key"
HKDF_INFO_CONTROLLER_TO_ACCESSORY: Final = b"HDS-Write-Encryption-Key"
KEY_LENGTH: Final = 32

FRAME_TYPE: Final = 0x01  # HN accepts only this type
HEADER_LENGTH: Final = 4  # type (1) + big-endian length (3)
AUTH_TAG_LENGTH: Final = 16
# 20 bits although the field has 24 (HN DataStreamConnection, ADK kHAPDataStream_MaxPayloadBytes).
MAX_PAYLOAD_LENGTH: Final = 0xFFFFF
MAX_HEADER_DICT_LENGTH: Final = 0xFF  # the header length is one byte

# Nonce = 4 zero bytes || uint64 little-endian counter.
_PACK_NONCE: Final = partial(Struct("<LQ").pack, 0)
_PACK_HEADER: Final = Struct(">I").pack


class HDSKeys(NamedTuple):
    """The two HDS session keys."""

    accessory_to_controller: bytes
    controller_to_accessory: bytes


def derive_keys(shared_secret: bytes, controller_salt: bytes, accessory_salt: bytes) -> HDSKeys:
    """Derive both HDS keys from the pair-verify shared secret and the two salts (§3.2)."""
    salt = controller_salt + accessory_salt

    def hkdf(info: bytes) -> bytes:
        kdf = HKDF(algorithm=hashes.SHA512(), length=KEY_LENGTH, salt=salt, info=info)
        return kdf.derive(shared_secret)

    return HDSKeys(hkdf(HKDF_INFO_ACCESSORY_TO_CONTROLLER), hkdf(HKDF_INFO_CONTROLLER_TO_ACCESSORY))


def pack_nonce(counter: int) -> bytes:
    """Return the 12-byte nonce for counter."""
    return _PACK_NONCE(counter)


def pack_header(length: int) -> bytes:
    """Return the 4-byte frame header (also the AAD) for a payload of length bytes."""
    if not 0 <= length <= MAX_PAYLOAD_LENGTH:
        raise HDSFrameError(f"payload of {length} bytes exceeds {MAX_PAYLOAD_LENGTH}")
    return _PACK_HEADER((FRAME_TYPE << 24) | length)


class EncryptCipher:
    """Seal outgoing frames with one key and a counter starting at 0."""

    __slots__ = ("_encrypt", "counter")

    def __init__(self, key: bytes, counter: int = 0) -> None:
        """Bind the AEAD for key."""
        self._encrypt = ChaCha20Poly1305(key).encrypt
        self.counter = counter

    def seal(self, payload: bytes | bytearray | memoryview) -> tuple[bytes, bytes]:
        """Return (frame header, ciphertext || tag) for payload; write them back to back."""
        length = payload.nbytes if isinstance(payload, memoryview) else len(payload)
        header = pack_header(length)
        sealed = self._encrypt(_PACK_NONCE(self.counter), payload, header)
        self.counter += 1
        return header, sealed


class DecryptCipher:
    """Open incoming frames; the counter advances only after a frame authenticates (HN)."""

    __slots__ = ("_decrypt", "counter")

    def __init__(self, key: bytes, counter: int = 0) -> None:
        """Bind the AEAD for key."""
        self._decrypt = ChaCha20Poly1305(key).decrypt
        self.counter = counter

    def open(self, header: bytes | memoryview, body: bytes | memoryview) -> bytes:
        """Return the plaintext of one frame (header is the AAD, body is ciphertext || tag)."""
        try:
            plaintext = self._decrypt(_PACK_NONCE(self.counter), body, header)
        except InvalidTag:
            raise HDSDecryptError(f"frame {self.counter} failed authentication") from None
        self.counter += 1
        return plaintext


class HDSFrameReader:
    """Split a TCP byte stream into frames without copying more than needed."""

    __slots__ = ("_buffer", "_buffer_len", "_pos", "max_payload")

    def __init__(self, max_payload: int = MAX_PAYLOAD_LENGTH) -> None:
        """Start with an empty buffer; frames longer than max_payload are refused."""
        self._buffer: bytes | None = None
        self._buffer_len = 0
        self._pos = 0
        self.max_payload = max_payload

    @property
    def buffered(self) -> int:
        """Return the number of bytes received but not yet returned as frames."""
        return self._buffer_len - self._pos

    def add_data(self, data: bytes | bytearray | memoryview) -> None:
        """Append received bytes; a lone chunk is kept as is, without concatenation."""
        if type(data) is not bytes:
            data = bytes(data)
        if self._buffer is None:
            self._buffer = data
            self._buffer_len = len(data)
            self._pos = 0
        else:
            self._buffer += data
            self._buffer_len += len(data)

    def read_frame(self) -> tuple[bytes, memoryview] | None:
        """Return the next (header, ciphertext || tag) or None; reject bad headers at once."""
        buffer = self._buffer
        if buffer is None:
            return None
        pos = self._pos
        if self._buffer_len - pos >= HEADER_LENGTH:
            if buffer[pos] != FRAME_TYPE:
                raise HDSFrameError(f"frame type 0x{buffer[pos]:02x}, expected 0x01")
            length = (buffer[pos + 1] << 16) | (buffer[pos + 2] << 8) | buffer[pos + 3]
            if length > self.max_payload:
                raise HDSFrameError(f"frame length {length} exceeds {self.max_payload}")
            end = pos + HEADER_LENGTH + length + AUTH_TAG_LENGTH
            if end <= self._buffer_len:
                self._pos = end
                body_start = pos + HEADER_LENGTH
                return buffer[pos:body_start], memoryview(buffer)[body_start:end]
        self._remove_consumed()
        return None

    def _remove_consumed(self) -> None:
        """Drop returned frames; re-slice only when a partial frame remains."""
        pos = self._pos
        if pos == 0:
            return
        buffer = self._buffer
        if buffer is None or pos >= self._buffer_len:
            self._buffer = None
            self._buffer_len = 0
        else:
            self._buffer = buffer[pos:]
            self._buffer_len -= pos
        self._pos = 0


def encode_payload(header: dict[str, Any], message: dict[str, Any]) -> bytearray:
    """Return the frame plaintext headerLen(1) || opack(header) || opack(message)."""
    out = bytearray(1)
    encode_into(out, header)
    header_length = len(out) - 1
    if header_length > MAX_HEADER_DICT_LENGTH:
        raise HDSProtocolError(
            DataSendCloseReason.PROTOCOL_ERROR,
            f"encoded header of {header_length} bytes exceeds {MAX_HEADER_DICT_LENGTH}",
        )
    out[0] = header_length
    encode_into(out, message)
    return out


def decode_payload(
    payload: bytes | bytearray | memoryview,
) -> tuple[dict[Any, Any], dict[Any, Any]]:
    """Return (header, message) from a frame plaintext; raise OpackError if malformed."""
    if isinstance(payload, memoryview):
        payload = payload.tobytes()
    if not payload:
        raise OpackError("empty payload", 0)
    header_end = 1 + payload[0]
    if header_end > len(payload):
        raise OpackError(f"header length {payload[0]} runs past the payload", 0)
    header = decode_range(payload, 1, header_end)
    if not isinstance(header, dict):
        raise OpackError("header is not a dictionary", 1)
    message = decode_range(payload, header_end, len(payload))
    if not isinstance(message, dict):
        raise OpackError("message is not a dictionary", header_end)
    return header, message
