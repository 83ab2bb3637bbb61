"""The OPACK encoder: the ADK's tag choices, never a back-reference (hksv-protocol.md §4.2)."""

from __future__ import annotations

from struct import Struct, error as StructError
from typing import Any, Final
import uuid

from .opack import (
    DEFAULT_MAX_DEPTH,
    MAX_COUNTED_ITEMS,
    MAX_SHORT_LENGTH,
    TAG_ARRAY,
    TAG_ARRAY_TERMINATED,
    TAG_DATA_SHORT,
    TAG_DATE,
    TAG_DICT,
    TAG_DICT_TERMINATED,
    TAG_FALSE,
    TAG_FLOAT32,
    TAG_FLOAT64,
    TAG_INT8,
    TAG_INT16,
    TAG_INT32,
    TAG_INT64,
    TAG_NULL,
    TAG_SMALL_INT_BASE,
    TAG_STR_SHORT,
    TAG_TERMINATOR,
    TAG_TRUE,
    TAG_UUID,
    Date,
    Float32,
    Int8,
    Int16,
    Int32,
    Int64,
    OpackError,
)

__all__ = ["encode", "encode_into"]

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1

# Tag byte + little-endian payload, packed in one call.
_TAGGED: Final = {
    Int8: (TAG_INT8, Struct("<Bb").pack, -(1 << 7), (1 << 7) - 1),
    Int16: (TAG_INT16, Struct("<Bh").pack, -(1 << 15), (1 << 15) - 1),
    Int32: (TAG_INT32, Struct("<Bi").pack, -(1 << 31), (1 << 31) - 1),
    Int64: (TAG_INT64, Struct("<Bq").pack, _INT64_MIN, _INT64_MAX),
}
_PACK_I8: Final = _TAGGED[Int8][1]
_PACK_I16: Final = _TAGGED[Int16][1]
_PACK_I32: Final = _TAGGED[Int32][1]
_PACK_I64: Final = _TAGGED[Int64][1]
_PACK_F32: Final = Struct("<Bf").pack
_PACK_F64: Final = Struct("<Bd").pack
_PACK_LEN8: Final = Struct("<BB").pack
_PACK_LEN16: Final = Struct("<BH").pack
_PACK_LEN32: Final = Struct("<BI").pack
_PACK_LEN64: Final = Struct("<BQ").pack


def encode(value: object) -> bytes:
    """Return the OPACK encoding of value."""
    out = bytearray()
    _encode(out, value, 0)
    return bytes(out)


def encode_into(out: bytearray, value: object) -> None:
    """Append the OPACK encoding of value to out."""
    _encode(out, value, 0)


def _encode_length(out: bytearray, short_base: int, long_base: int, length: int) -> None:
    """Append the tag (and length prefix) of a string or data item."""
    if length <= MAX_SHORT_LENGTH:
        out.append(short_base + length)
    elif length <= 0xFF:
        out += _PACK_LEN8(long_base, length)
    elif length <= 0xFFFF:
        out += _PACK_LEN16(long_base + 1, length)
    elif length <= 0xFFFFFFFF:
        out += _PACK_LEN32(long_base + 2, length)
    else:
        out += _PACK_LEN64(long_base + 3, length)


def _encode_int(out: bytearray, value: int) -> None:
    """Append an integer with the smallest tag that holds it (ADK semantics)."""
    if -1 <= value <= 39:
        out.append(TAG_SMALL_INT_BASE + value)
    elif -0x80 <= value <= 0x7F:
        out += _PACK_I8(TAG_INT8, value)
    elif -0x8000 <= value <= 0x7FFF:
        out += _PACK_I16(TAG_INT16, value)
    elif -0x8000_0000 <= value <= 0x7FFF_FFFF:
        out += _PACK_I32(TAG_INT32, value)
    elif _INT64_MIN <= value <= _INT64_MAX:
        out += _PACK_I64(TAG_INT64, value)
    else:
        raise OpackError(f"integer {value} outside the signed 64-bit range", len(out))


def _encode_str(out: bytearray, value: str) -> None:
    """Append a UTF-8 string."""
    try:
        raw = value.encode("utf-8")
    except UnicodeEncodeError as err:
        raise OpackError(f"string is not encodable as UTF-8: {err.reason}", len(out)) from err
    _encode_length(out, TAG_STR_SHORT, 0x61, len(raw))
    out += raw


def _encode_data(out: bytearray, value: bytes | bytearray | memoryview) -> None:
    """Append a data blob without an intermediate copy."""
    length = value.nbytes if isinstance(value, memoryview) else len(value)
    _encode_length(out, TAG_DATA_SHORT, 0x91, length)
    try:
        out += value
    except BufferError as err:
        raise OpackError(f"data is not a contiguous buffer: {err}", len(out)) from err


def _encode(out: bytearray, value: object, depth: int) -> None:
    """Append value; containers recurse up to DEFAULT_MAX_DEPTH."""
    cls = type(value)
    if cls is str:
        _encode_str(out, value)  # type: ignore[arg-type]
    elif cls is int:
        _encode_int(out, value)  # type: ignore[arg-type]
    elif value is True:
        out.append(TAG_TRUE)
    elif value is False:
        out.append(TAG_FALSE)
    elif value is None:
        out.append(TAG_NULL)
    elif isinstance(value, bytes | bytearray | memoryview):
        _encode_data(out, value)
    elif isinstance(value, dict):
        _encode_dict(out, value, depth)
    elif isinstance(value, list | tuple):
        _encode_array(out, value, depth)
    elif tagged := _TAGGED.get(cls):
        tag, pack, low, high = tagged
        if not low <= value <= high:  # type: ignore[operator]
            raise OpackError(f"{value} does not fit {cls.__name__}", len(out))
        out += pack(tag, value)
    elif isinstance(value, int):
        _encode_int(out, value)
    elif cls is Float32:
        try:
            out += _PACK_F32(TAG_FLOAT32, value)
        except (OverflowError, StructError) as err:
            raise OpackError(f"{value} does not fit Float32", len(out)) from err
    elif cls is Date:
        out += _PACK_F64(TAG_DATE, value)
    elif isinstance(value, float):
        out += _PACK_F64(TAG_FLOAT64, value)
    elif isinstance(value, uuid.UUID):
        out.append(TAG_UUID)
        out += value.bytes
    elif isinstance(value, str):
        _encode_str(out, value)
    else:
        raise OpackError(f"cannot encode {cls.__name__}", len(out))


def _check_depth(out: bytearray, depth: int) -> None:
    """Refuse to encode containers nested deeper than DEFAULT_MAX_DEPTH (or cyclic)."""
    if depth >= DEFAULT_MAX_DEPTH:
        raise OpackError(f"nesting deeper than {DEFAULT_MAX_DEPTH}", len(out))


def _encode_array(out: bytearray, value: list[Any] | tuple[Any, ...], depth: int) -> None:
    """Append an array, counted up to 14 items and terminated beyond."""
    _check_depth(out, depth)
    count = len(value)
    out.append(TAG_ARRAY + count if count <= MAX_COUNTED_ITEMS else TAG_ARRAY_TERMINATED)
    for item in value:
        _encode(out, item, depth + 1)
    if count > MAX_COUNTED_ITEMS:
        out.append(TAG_TERMINATOR)


def _encode_dict(out: bytearray, value: dict[Any, Any], depth: int) -> None:
    """Append a dictionary, counted up to 14 pairs and terminated beyond."""
    _check_depth(out, depth)
    count = len(value)
    out.append(TAG_DICT + count if count <= MAX_COUNTED_ITEMS else TAG_DICT_TERMINATED)
    for key, item in value.items():
        _encode(out, key, depth + 1)
        _encode(out, item, depth + 1)
    if count > MAX_COUNTED_ITEMS:
        out.append(TAG_TERMINATOR)
