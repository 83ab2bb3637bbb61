"""Frames: key derivation, ciphers, the frame reader and the payload layout, against vectors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.hksv.hds.errors import (
    HDSDecryptError,
    HDSFrameError,
    HDSProtocolError,
    OpackError,
)
from custom_components.hksv.hds.frame import (
    AUTH_TAG_LENGTH,
    MAX_PAYLOAD_LENGTH,
    DecryptCipher,
    EncryptCipher,
    HDSFrameReader,
    decode_payload,
    derive_keys,
    encode_payload,
    pack_header,
    pack_nonce,
)

from .common import (
    A2C_KEY,
    ACCESSORY_SALT,
    C2A_KEY,
    CONTROLLER_SALT,
    CRYPTO,
    FRAME_VECTORS,
    KEY_DERIVATION,
    PAYLOAD_VECTORS,
    SHARED_SECRET,
    TRANSCRIPTS,
    from_json,
    typed,
)

A2C_FRAMES = [v for v in FRAME_VECTORS if v["name"].startswith("frame_a2c")]
C2A_FRAME = CRYPTO["frame_c2a_counter_0_hello_request"]
# Every complete frame in the vectors file: crypto vectors and transcript steps.
ALL_FRAMES = [(v["name"], bytes.fromhex(v["frame_hex"])) for v in FRAME_VECTORS] + [
    (f"{t['name']}[{i}]", bytes.fromhex(step["frame_hex"]))
    for t in TRANSCRIPTS
    for i, step in enumerate(t["steps"])
    if "frame_hex" in step
]
# hap-nodejs back-references the Int64 status to the equal Int64 id; we never write references.
PAYLOAD_ENCODING_DEVIATIONS = {"control_hello_response_id0"}

BUFFER_TYPES: list[Callable[[bytes], Any]] = [bytes, bytearray, memoryview]


def test_derive_keys() -> None:
    """HKDF-SHA512 over the shared secret with controller || accessory salt (§3.2)."""
    inputs = KEY_DERIVATION["inputs"]
    assert (CONTROLLER_SALT + ACCESSORY_SALT).hex() == inputs["hkdf_salt_hex"]
    keys = derive_keys(SHARED_SECRET, CONTROLLER_SALT, ACCESSORY_SALT)
    assert keys.accessory_to_controller.hex() == KEY_DERIVATION["accessory_to_controller_key_hex"]
    assert keys.controller_to_accessory.hex() == KEY_DERIVATION["controller_to_accessory_key_hex"]


@pytest.mark.parametrize("vector", A2C_FRAMES, ids=lambda v: v["name"])
def test_a2c_frame_vector(vector: dict[str, Any]) -> None:
    """Seal an accessory frame byte for byte like hap-nodejs' sendHDSFrame."""
    key = bytes.fromhex(vector["key_hex"])
    counter = vector["counter"]
    payload = encode_payload(from_json(vector["header_value"]), from_json(vector["message_value"]))
    assert payload.hex() == vector["plaintext_payload_hex"]
    assert pack_nonce(counter).hex() == vector["nonce_hex"]
    cipher = EncryptCipher(key, counter)
    header, sealed = cipher.seal(payload)
    assert header.hex() == vector["aad_hex"]
    assert sealed[:-AUTH_TAG_LENGTH].hex() == vector["ciphertext_hex"]
    assert sealed[-AUTH_TAG_LENGTH:].hex() == vector["tag_hex"]
    assert (header + sealed).hex() == vector["frame_hex"]
    assert cipher.counter == vector["next_counter_after_send"]
    assert DecryptCipher(key, counter).open(header, sealed) == payload


def test_c2a_frame_vector() -> None:
    """Open the controller's hello frame with c2a, fail with another key, seal it identically."""
    frame = bytes.fromhex(C2A_FRAME["frame_hex"])
    assert C2A_FRAME["key_hex"] == C2A_KEY.hex()
    reader = HDSFrameReader()
    reader.add_data(frame)
    read = reader.read_frame()
    assert read is not None
    header, body = read
    wrong = DecryptCipher(A2C_KEY)
    with pytest.raises(HDSDecryptError, match="frame 0 failed authentication"):
        wrong.open(header, body)
    assert wrong.counter == 0
    right = DecryptCipher(C2A_KEY)
    assert right.open(header, body).hex() == C2A_FRAME["plaintext_payload_hex"]
    assert right.counter == C2A_FRAME["controller_counter_after"]
    sealed_header, sealed = EncryptCipher(C2A_KEY).seal(
        bytes.fromhex(C2A_FRAME["plaintext_payload_hex"])
    )
    assert sealed_header + sealed == frame


def test_decrypt_counter_advances_only_on_success() -> None:
    """A failed decrypt (wrong counter or tampered bytes) leaves the receive counter alone."""
    encrypt = EncryptCipher(C2A_KEY)
    first = encrypt.seal(b"first")
    second = encrypt.seal(b"second")
    decrypt = DecryptCipher(C2A_KEY)
    with pytest.raises(HDSDecryptError):
        decrypt.open(*second)  # counter mismatch: sealed with 1, expected 0
    tampered = bytearray(first[1])
    tampered[0] ^= 1
    with pytest.raises(HDSDecryptError):
        decrypt.open(first[0], bytes(tampered))
    with pytest.raises(HDSDecryptError):
        decrypt.open(b"\x01\x00\x00\x06", first[1])  # AAD covers the header
    assert decrypt.counter == 0
    assert decrypt.open(*first) == b"first"
    assert decrypt.open(*second) == b"second"
    assert decrypt.counter == 2


def test_pack_header() -> None:
    """The header is 0x01 and a 3-byte big-endian length, up to 0xFFFFF."""
    assert pack_header(0).hex() == "01000000"
    assert pack_header(MAX_PAYLOAD_LENGTH).hex() == "010fffff"
    with pytest.raises(HDSFrameError, match="exceeds 1048575"):
        pack_header(MAX_PAYLOAD_LENGTH + 1)


def test_seal_rejects_oversize_payload() -> None:
    """Refuse to send a payload beyond the limit, without using a counter value."""
    cipher = EncryptCipher(A2C_KEY)
    with pytest.raises(HDSFrameError):
        cipher.seal(bytes(MAX_PAYLOAD_LENGTH + 1))
    assert cipher.counter == 0
    header, sealed = cipher.seal(memoryview(bytes(MAX_PAYLOAD_LENGTH)))
    assert header == b"\x01\x0f\xff\xff"
    assert len(sealed) == MAX_PAYLOAD_LENGTH + AUTH_TAG_LENGTH


# -- frame reader -------------------------------------------------------------------------


def _feed(reader: HDSFrameReader, pieces: list[bytes], kind: Callable[[bytes], Any]) -> list[bytes]:
    """Feed pieces and return every frame read, re-joined."""
    frames: list[bytes] = []
    for piece in pieces:
        reader.add_data(kind(piece))
        while (frame := reader.read_frame()) is not None:
            header, body = frame
            frames.append(header + bytes(body))
    return frames


@pytest.mark.parametrize("kind", BUFFER_TYPES, ids=lambda k: k.__name__)
@pytest.mark.parametrize(("name", "frame"), ALL_FRAMES, ids=[name for name, _ in ALL_FRAMES])
def test_reader_whole(name: str, frame: bytes, kind: Callable[[bytes], Any]) -> None:
    """A frame fed whole comes out whole."""
    reader = HDSFrameReader()
    assert _feed(reader, [frame], kind) == [frame]
    assert reader.buffered == 0


@pytest.mark.parametrize("kind", BUFFER_TYPES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("vector", FRAME_VECTORS, ids=lambda v: v["name"])
def test_reader_byte_by_byte(vector: dict[str, Any], kind: Callable[[bytes], Any]) -> None:
    """A frame fed one byte at a time comes out once, after its last byte."""
    frame = bytes.fromhex(vector["frame_hex"])
    reader = HDSFrameReader()
    pieces = [frame[i : i + 1] for i in range(len(frame))]
    assert _feed(reader, pieces[:-1], kind) == []
    assert reader.buffered == len(frame) - 1
    assert _feed(reader, pieces[-1:], kind) == [frame]
    assert reader.buffered == 0


@pytest.mark.parametrize("kind", BUFFER_TYPES, ids=lambda k: k.__name__)
@pytest.mark.parametrize("split", [None, 1, 7, 100])
def test_reader_concatenated(split: int | None, kind: Callable[[bytes], Any]) -> None:
    """Every vector frame concatenated three times comes out in order, however it is split."""
    frames = [frame for _, frame in ALL_FRAMES if len(frame) < 4096] * 3
    stream = b"".join(frames)
    pieces = (
        [stream] if split is None else [stream[i : i + split] for i in range(0, len(stream), split)]
    )
    reader = HDSFrameReader()
    assert _feed(reader, pieces, kind) == frames
    assert reader.buffered == 0


def test_reader_decrypts_a_stream_of_frames() -> None:
    """Frames read from a stream decrypt in counter order."""
    encrypt = EncryptCipher(A2C_KEY)
    payloads = [bytes([i]) * i for i in range(1, 20)]
    stream = b"".join(b"".join(encrypt.seal(p)) for p in payloads)
    reader = HDSFrameReader()
    reader.add_data(stream)
    decrypt = DecryptCipher(A2C_KEY)
    out = []
    while (frame := reader.read_frame()) is not None:
        out.append(decrypt.open(*frame))
    assert out == payloads


def test_reader_rejects_oversize_length_from_header_alone() -> None:
    """A length beyond 0xFFFFF is refused as soon as the 4 header bytes are in."""
    reader = HDSFrameReader()
    reader.add_data(b"\x01\x10\x00")
    assert reader.read_frame() is None
    reader.add_data(b"\x00")
    with pytest.raises(HDSFrameError, match="frame length 1048576 exceeds 1048575"):
        reader.read_frame()


def test_reader_accepts_maximum_length() -> None:
    """A header announcing exactly 0xFFFFF bytes waits for its body."""
    reader = HDSFrameReader()
    reader.add_data(b"\x01\x0f\xff\xff")
    assert reader.read_frame() is None
    assert reader.buffered == 4


@pytest.mark.parametrize("type_byte", [0x00, 0x02, 0xFF])
def test_reader_rejects_bad_type_byte(type_byte: int) -> None:
    """Only frame type 0x01 exists."""
    reader = HDSFrameReader()
    reader.add_data(bytes([type_byte, 0, 0, 0]))
    with pytest.raises(HDSFrameError, match="frame type"):
        reader.read_frame()


def test_reader_truncated_header_waits() -> None:
    """Fewer than 4 bytes are kept until the rest arrives."""
    reader = HDSFrameReader()
    reader.add_data(b"\x01\x00")
    assert reader.read_frame() is None
    assert reader.buffered == 2
    reader.add_data(b"\x00\x00" + bytes(AUTH_TAG_LENGTH))
    frame = reader.read_frame()
    assert frame is not None
    assert frame[0] == b"\x01\x00\x00\x00"


def test_reader_keeps_partial_frame_after_complete_ones() -> None:
    """Complete frames are returned; the partial tail is kept, re-sliced once."""
    frame = bytes.fromhex(C2A_FRAME["frame_hex"])
    reader = HDSFrameReader()
    reader.add_data(frame + frame[:10])
    assert reader.read_frame() is not None
    assert reader.read_frame() is None
    assert reader.buffered == 10
    reader.add_data(frame[10:])
    assert reader.read_frame() is not None
    assert reader.read_frame() is None
    assert reader.buffered == 0


@settings(max_examples=500, deadline=None)
@given(st.lists(st.binary(max_size=64), max_size=20))
def test_reader_arbitrary_bytes(pieces: list[bytes]) -> None:
    """Arbitrary bytes yield frames or HDSFrameError; opening them yields HDSDecryptError."""
    reader = HDSFrameReader()
    decrypt = DecryptCipher(C2A_KEY)
    try:
        for piece in pieces:
            reader.add_data(piece)
            while (frame := reader.read_frame()) is not None:
                with pytest.raises(HDSDecryptError):
                    decrypt.open(*frame)
    except HDSFrameError:
        pass


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_decode_payload_arbitrary_bytes(data: bytes) -> None:
    """Arbitrary plaintext decodes to two dictionaries or raises OpackError."""
    try:
        header, message = decode_payload(data)
    except OpackError:
        return
    assert isinstance(header, dict)
    assert isinstance(message, dict)


# -- payload ------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", PAYLOAD_VECTORS, ids=lambda v: v["name"])
@pytest.mark.parametrize("kind", BUFFER_TYPES, ids=lambda k: k.__name__)
def test_payload_vector(vector: dict[str, Any], kind: Callable[[bytes], Any]) -> None:
    """Decode hap-nodejs' frame plaintext; our encoding decodes to the same header/message."""
    header = from_json(vector["value"]["header"])
    message = from_json(vector["value"]["message"])
    encoded = bytes.fromhex(vector["encoded_hex"])
    assert encoded[0] == vector["header_length"]
    decoded_header, decoded_message = decode_payload(kind(encoded))
    assert typed(decoded_header) == typed(header)
    assert typed(decoded_message) == typed(message)
    ours = encode_payload(header, message)
    assert typed(decode_payload(ours)) == typed((header, message))
    if vector["name"] not in PAYLOAD_ENCODING_DEVIATIONS:
        assert ours.hex() == vector["encoded_hex"]


@pytest.mark.parametrize(
    ("hex_input", "match", "offset"),
    [
        ("", "empty payload", 0),
        ("05e0e0", "header length 5 runs past", 0),
        ("01d0e0", "header is not a dictionary", 1),
        ("01e0d0", "message is not a dictionary", 2),
        ("01e0", "truncated", 2),
        ("02e008e0", "1 trailing bytes", 2),
        ("01e00f", "invalid tag 0x0f|message is not", 2),
    ],
)
def test_decode_payload_rejects(hex_input: str, match: str, offset: int) -> None:
    """Raise OpackError for every malformed plaintext layout."""
    with pytest.raises(OpackError, match=match) as err:
        decode_payload(bytes.fromhex(hex_input))
    assert err.value.offset == offset


def test_encode_payload_rejects_long_header() -> None:
    """headerLen is one byte: a header encoding beyond 255 bytes is refused."""
    assert encode_payload({"protocol": "p" * 235, "event": "e"}, {})[0] == 255
    with pytest.raises(HDSProtocolError, match="header of 256 bytes exceeds 255"):
        encode_payload({"protocol": "p" * 236, "event": "e"}, {})
