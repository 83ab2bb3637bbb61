"""OPACK codec: every golden codec vector, every rejection branch, and property tests."""

from __future__ import annotations

from array import array
from typing import Any
import uuid

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.hksv.hds.opack import (
    Date,
    Float32,
    Int8,
    Int16,
    Int32,
    Int64,
    OpackError,
)
from custom_components.hksv.hds.opack_decoder import decode, decode_prefix
from custom_components.hksv.hds.opack_encoder import encode, encode_into

from .common import CODEC_VECTORS, from_json, typed

# Where our encoder deliberately differs from hap-nodejs (§4.2, §4.3, §7 #9): ADK integer
# widths, correct UTF-8 lengths, counted containers up to 14 items, no back-references.
_MANY = ["s" + str(i) for i in range(50)] + ["s0", "s47", "s48"]
ENCODING_DEVIATIONS: dict[str, str] = {
    "int_32768": "3200800000",
    "int_65536": "3200000100",
    "int_2^31-1": "32ffffff7f",
    "int_-32769": "32ff7fffff",  # HN cannot encode it
    "int_2^32": "330000000001000000",  # HN cannot encode it
    "int_2^40": "330000000000010000",  # HN cannot encode it
    "str_utf8_2byte": "42c3a9",
    "array_13": "dd08090a0b0c0d0e0f1011121314",
    "terminated_array_in_dict": "e24161dd08080808080808080808080808416209",
    "backref_repeated_string_in_array": "d343666f6f43666f6f43666f6f",
    "backref_value_equals_key": "e141614161",
    "backref_two_keys_same_value": "e241614378797a41624378797a",
    "backref_int16": "d2312c01312c01",
    "backref_int64_wrappers": "d2330700000000000000330700000000000000",
    "backref_buffer_same_object": "d2720102720102",
    "backref_after_small_int": "e34178094179417a4177417a",
    "backref_many_strings": "df"
    + "".join(f"{0x40 + len(s):02x}{s.encode().hex()}" for s in _MANY)
    + "03",
}
# HN's own bytes that we refuse: tag 41 followed by half of a UTF-8 sequence (HN bug).
STRICT_UTF8_REJECTS = {"str_utf8_2byte"}


@pytest.mark.parametrize(
    "vector", [v for v in CODEC_VECTORS if v["encoded_hex"]], ids=lambda v: v["name"]
)
def test_codec_vector_decode(vector: dict[str, Any]) -> None:
    """Decode hap-nodejs' bytes to the value (or the ADK-semantics reference)."""
    encoded = bytes.fromhex(vector["encoded_hex"])
    if vector["name"] in STRICT_UTF8_REJECTS:
        with pytest.raises(OpackError, match="UTF-8"):
            decode(encoded)
        return
    expected = from_json(vector["value"] if vector["roundtrip_ok"] else vector["reference_decoded"])
    assert typed(decode(encoded)) == typed(expected)
    value, end = decode_prefix(encoded)
    assert end == vector["reference_consumed_bytes"] == len(encoded)
    assert typed(value) == typed(expected)


@pytest.mark.parametrize("vector", CODEC_VECTORS, ids=lambda v: v["name"])
def test_codec_vector_encode(vector: dict[str, Any]) -> None:
    """Encode the value as the ADK would, and decode it back to the same value."""
    value = from_json(vector["value"])
    encoded = encode(value)
    assert encoded.hex() == ENCODING_DEVIATIONS.get(vector["name"], vector["encoded_hex"])
    assert typed(decode(encoded)) == typed(value)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (Int8(-128), "3080"),
        (Int16(-32768), "310080"),
        (Int32(2**31 - 1), "32ffffff7f"),
        (Int64(-(2**63)), "330000000000000080"),
        (2**63 - 1, "33ffffffffffffff7f"),
        (-(2**63), "330000000000000080"),
        (-1, "07"),
        (39, "2f"),
        (Float32(-2.0), "35000000c0"),
        (Date(0.0), "060000000000000000"),
        (True, "01"),
        (None, "04"),
        ((1, 2), "d2090a"),
        (memoryview(b"\x01\x02"), "720102"),
        (bytearray(b"\x01"), "7101"),
        (memoryview(array("H", [1, 2])), "7401000200"),
        (list(range(14)), "de" + "".join(f"{8 + i:02x}" for i in range(14))),
        ({"a" * 300: 0}, "e1622c01" + "61" * 300 + "08"),
    ],
    # Stable ids (no memory addresses) so parallel workers collect the same tests.
    ids=lambda value: value if isinstance(value, str) else type(value).__name__,
)
def test_encode_forms(value: object, expected: str) -> None:
    """Encode wrappers, containers and buffer types with the expected tags."""
    assert encode(value).hex() == expected


def test_encode_long_forms() -> None:
    """Use 4-byte length prefixes beyond 65535 bytes."""
    assert encode("x" * 70000)[:5] == b"\x63" + (70000).to_bytes(4, "little")
    assert encode(b"x" * 70000)[:5] == b"\x93" + (70000).to_bytes(4, "little")


def test_encode_into_appends() -> None:
    """encode_into appends to an existing buffer."""
    out = bytearray(b"\xff")
    encode_into(out, {"a": 1})
    assert out == b"\xff\xe1\x41\x61\x09"


class _Custom:
    pass


def _cyclic() -> list[Any]:
    items: list[Any] = []
    items.append(items)
    return items


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (_Custom(), "cannot encode _Custom"),
        (2**63, "outside the signed 64-bit range"),
        (-(2**63) - 1, "outside the signed 64-bit range"),
        (Int8(128), "does not fit Int8"),
        (Int16(-32769), "does not fit Int16"),
        (Int32(2**31), "does not fit Int32"),
        (Int64(2**63), "does not fit Int64"),
        (Float32(1e300), "does not fit Float32"),
        ("\ud800", "not encodable as UTF-8"),
        (_cyclic(), "nesting deeper than"),
        ({1: {_Custom()}}, "cannot encode set"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_encode_rejects(value: object, match: str) -> None:
    """Raise OpackError for values OPACK cannot carry."""
    with pytest.raises(OpackError, match=match):
        encode(value)


@pytest.mark.parametrize(
    ("hex_input", "expected"),
    [
        ("6f616200", "ab"),  # NUL-terminated string (the ADK writes long strings this way)
        ("6f00", ""),
        ("9f710172020303", b"\x01\x02\x03"),  # ADK: data items up to 0x03, concatenated
        ("9f03", b""),
        ("9f9102aabb03", b"\xaa\xbb"),
        ("640300000000000000616263", "abc"),  # 8-byte length prefix
        ("94020000000000000001ff", b"\x01\xff"),
        ("6302000000c3a9", "é"),
        ("d3300571aaa1", [5, b"\xaa", b"\xaa"]),  # a1: int8 5 is entry 0, the data entry 1
        ("d3094178a0", [1, "x", "x"]),  # small ints never enter the table (§4.3)
        ("d43005a0a0a0", [5, 5, 5, 5]),  # references are not re-added
        ("d30141780d", [True, "x", 5]),
        ("d2e0a0", None),  # a container never enters the table
        ("d2060000000000000000a0", [Date(0.0), Date(0.0)]),
        ("d23600000000000000c0a0", [-2.0, -2.0]),
        ("d2350000c03fa0", [1.5, 1.5]),
        ("d2310001a0", [256, 256]),
        ("d23200000100a0", [65536, 65536]),
        ("d2330000000001000000a0", [2**32, 2**32]),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_decode_forms(hex_input: str, expected: object) -> None:
    """Decode forms hap-nodejs never writes but the ADK or iOS may."""
    data = bytes.fromhex(hex_input)
    if expected is None:
        with pytest.raises(OpackError, match="back-reference 0 with only 0"):
            decode(data)
        return
    assert typed(decode(data)) == typed(expected)


def test_decode_uuid_reference() -> None:
    """A UUID enters the back-reference table and can be a dictionary key."""
    key = uuid.UUID(bytes=bytes(range(1, 17)))
    assert decode(bytes.fromhex("e1050102030405060708090a0b0c0d0e0f10a0")) == {key: key}


@pytest.mark.parametrize("data_type", [bytes, bytearray, memoryview])
def test_decode_accepts_buffers(data_type: type) -> None:
    """Decode bytes, bytearray and memoryview alike."""
    value = {"a": b"\xff", "bc": ["a", 1.5, None]}
    assert decode(data_type(encode(value))) == value


def test_decode_prefix_streams() -> None:
    """decode_prefix reads consecutive items and reports where each ends."""
    data = encode({"a": 1}) + encode([2, "x"]) + encode(None)
    first, offset = decode_prefix(data)
    second, offset = decode_prefix(data, offset)
    third, offset = decode_prefix(data, offset)
    assert (first, second, third, offset) == ({"a": 1}, [2, "x"], None, len(data))
    with pytest.raises(OpackError, match="offset outside"):
        decode_prefix(data, len(data) + 1)
    with pytest.raises(OpackError, match="truncated"):
        decode_prefix(data, len(data))


def test_decode_small_ints() -> None:
    """Map 0x07…0x2F to -1…39, including 0x2F = 39 (ADK; HN throws)."""
    assert [decode(bytes([tag])) for tag in range(0x07, 0x30)] == list(range(-1, 40))


def test_decode_wrapped_ints_are_plain() -> None:
    """Decoded wrapper integers come back as plain int, floats as float, dates as Date."""
    assert type(decode(encode(Int64(5)))) is int
    assert type(decode(encode(Float32(1.5)))) is float
    assert type(decode(encode(Date(1.5)))) is Date


INVALID_TAGS = [0x00, 0x34, *range(0x37, 0x40), *range(0x65, 0x6F), *range(0x95, 0x9F)]
INVALID_TAGS += list(range(0xF0, 0x100))


@pytest.mark.parametrize("tag", INVALID_TAGS, ids=lambda t: f"0x{t:02x}")
def test_decode_rejects_invalid_tag(tag: int) -> None:
    """Reject every tag OPACK does not define, at its offset."""
    with pytest.raises(OpackError, match=f"invalid tag 0x{tag:02x}") as err:
        decode(bytes([0xD2, 0x08, tag]))
    assert err.value.offset == 2


@pytest.mark.parametrize(
    ("hex_input", "match", "offset"),
    [
        ("", "truncated: an item was expected", 0),
        ("03", "terminator 0x03 outside", 0),
        ("30", "runs past the end", 0),
        ("3100", "runs past the end", 0),
        ("32000000", "runs past the end", 0),
        ("3300000000000000", "runs past the end", 0),
        ("35000000", "runs past the end", 0),
        ("36", "runs past the end", 0),
        ("06000000", "runs past the end", 0),
        ("05" + "00" * 15, "runs past the end", 0),
        ("456162", "length 5 runs past", 0),
        ("610561", "length 5 runs past", 0),
        ("61", "length 1 runs past", 0),
        ("62ff", "length 2 runs past", 0),
        ("6300000100", "length 65536 runs past", 0),
        ("64ffffffffffffffff", "runs past", 0),
        ("910500", "length 5 runs past", 0),
        ("94ffffffffffffff7f00", "runs past", 0),
        ("42c328", "invalid UTF-8", 0),
        ("6fc30000", "invalid UTF-8", 0),
        ("6f6162", "without NUL", 0),
        ("9f710041", "tag 0x41 inside terminated data", 3),
        ("9f7100", "terminator 0x03 missing", 3),
        ("9f9f03", "tag 0x9f inside terminated data", 1),
        ("a0", "back-reference 0 with only 0 values", 0),
        ("d24161a1", "back-reference 1 with only 1 values", 3),
        ("d30941", "length 1 runs past", 2),
        ("d309", "truncated: an item was expected", 2),
        ("df0809", "terminator 0x03 missing", 3),
        ("ef416109", "terminator 0x03 missing", 4),
        ("ef416103", "terminator 0x03 outside", 3),
        ("e1d008", "dictionary key is a container", 1),
        ("e1e00808", "dictionary key is a container", 1),
        ("e14161", "truncated", 3),
        ("0808", "1 trailing bytes", 1),
        ("ef4161090341", "1 trailing bytes", 5),
    ],
    ids=lambda v: v if isinstance(v, str) else None,
)
def test_decode_rejects(hex_input: str, match: str, offset: int) -> None:
    """Raise OpackError with a clear message and the offset for every malformed input."""
    with pytest.raises(OpackError, match=match) as err:
        decode(bytes.fromhex(hex_input))
    assert err.value.offset == offset


def test_decode_depth_bound() -> None:
    """Refuse nesting beyond max_depth (default 32) without recursing further."""
    assert decode(b"\xd1" * 31 + b"\xd0") is not None
    with pytest.raises(OpackError, match="nesting deeper than 32") as err:
        decode(b"\xd1" * 32 + b"\xd0")
    assert err.value.offset == 32
    with pytest.raises(OpackError, match="nesting deeper than 2"):
        decode(b"\xe1\x41\x61\xd1\xd0", max_depth=2)
    with pytest.raises(OpackError, match="nesting"):
        decode(b"\xd1" * 100_000 + b"\xd0", max_depth=1_000_000)


def test_decode_item_bound() -> None:
    """Refuse more items than max_items."""
    data = encode(list(range(100)))
    assert decode(data, max_items=101) == list(range(100))
    with pytest.raises(OpackError, match="more than 100 items"):
        decode(data, max_items=100)
    with pytest.raises(OpackError, match="more than 3 items"):
        decode(bytes.fromhex("9f7100710071007100710003"), max_items=3)


def test_decode_rejects_non_buffer() -> None:
    """Refuse input that is not bytes-like."""
    with pytest.raises(OpackError, match="cannot decode str"):
        decode("e0")  # type: ignore[arg-type]


def test_opack_error_is_value_error() -> None:
    """OpackError is a ValueError carrying the offset in its message."""
    err = OpackError("bad", 7)
    assert isinstance(err, ValueError)
    assert str(err) == "bad (at byte 7)"


# -- properties ---------------------------------------------------------------------------

_FLOATS = st.floats(allow_nan=False)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | _FLOATS
    | st.text(max_size=40)
    | st.binary(max_size=300)
    | st.uuids()
    | st.builds(Int8, st.integers(-(2**7), 2**7 - 1))
    | st.builds(Int16, st.integers(-(2**15), 2**15 - 1))
    | st.builds(Int32, st.integers(-(2**31), 2**31 - 1))
    | st.builds(Int64, st.integers(-(2**63), 2**63 - 1))
    | st.builds(Float32, st.floats(width=32, allow_nan=False))
    | st.builds(Date, _FLOATS)
)
_KEYS = (
    st.none()
    | st.booleans()
    | st.integers(-1000, 1000)
    | st.text(max_size=20)
    | st.binary(max_size=8)
)
VALUES = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=20) | st.dictionaries(_KEYS, children, max_size=20)
    ),
    max_leaves=60,
)


@settings(max_examples=400, deadline=None)
@given(VALUES)
def test_round_trip(value: Any) -> None:
    """decode(encode(v)) == v for every representable value."""
    assert typed(decode(encode(value))) == typed(value)


@settings(max_examples=1000, deadline=None)
@given(st.binary(max_size=600))
def test_decode_arbitrary_bytes(data: bytes) -> None:
    """Arbitrary bytes decode or raise OpackError; nothing else, never a hang."""
    try:
        decode(data)
    except OpackError as err:
        offset = err.offset
    else:
        return
    assert 0 <= offset <= len(data)


@settings(max_examples=500, deadline=None)
@given(VALUES, st.data())
def test_decode_mutated_encodings(value: Any, data: st.DataObject) -> None:
    """Valid encodings with bytes changed, cut or appended decode or raise OpackError."""
    encoded = bytearray(encode(value))
    position = data.draw(st.integers(0, len(encoded)))
    action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    if action == "flip" and position < len(encoded):
        encoded[position] = data.draw(st.integers(0, 255))
    elif action == "cut":
        del encoded[position:]
    else:
        encoded[position:position] = data.draw(st.binary(min_size=1, max_size=4))
    try:
        decode(bytes(encoded), max_items=10_000)
    except OpackError as err:
        offset = err.offset
    else:
        return
    assert 0 <= offset <= len(encoded)
