"""OPACK, the HDS message codec (HAP R17 §9.1.4; hksv-protocol.md §4.2-§4.3).

Python mapping: None, bool, int, float (float64), str, bytes-like (data), list/tuple (array),
dict; `Int8`/`Int16`/`Int32`/`Int64`, `Float32`, `Date` and `uuid.UUID` force an encoding.
The encoder writes the ADK's choices and never back-references; the decoder accepts every
tag, including HN's back-references, and raises only `OpackError`.
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct, error as StructError
from typing import Any, Final
import uuid

__all__ = [
    "DEFAULT_MAX_DEPTH",
    "DEFAULT_MAX_ITEMS",
    "Date",
    "Float32",
    "Int8",
    "Int16",
    "Int32",
    "Int64",
    "OpackError",
    "decode",
    "decode_prefix",
    "decode_range",
    "encode",
    "encode_into",
]

# Bounds for untrusted input; HDS messages nest 4 levels and hold a few dozen items.
DEFAULT_MAX_DEPTH: Final = 32
DEFAULT_MAX_ITEMS: Final = 100_000
# Counted arrays/dictionaries hold 0…14 items (tags D0…DE, E0…EE); more use DF/EF … 03.
MAX_COUNTED_ITEMS: Final = 14
# Short strings and data carry their length in the tag (40…60, 70…90).
MAX_SHORT_LENGTH: Final = 32

TAG_TRUE: Final = 0x01
TAG_FALSE: Final = 0x02
TAG_TERMINATOR: Final = 0x03
TAG_NULL: Final = 0x04
TAG_UUID: Final = 0x05
TAG_DATE: Final = 0x06
TAG_SMALL_INT_BASE: Final = 0x08  # 0x07…0x2F = -1…39 (ADK: 0x2F is 39)
TAG_INT8: Final = 0x30
TAG_INT16: Final = 0x31
TAG_INT32: Final = 0x32
TAG_INT64: Final = 0x33
TAG_FLOAT32: Final = 0x35
TAG_FLOAT64: Final = 0x36
TAG_STR_SHORT: Final = 0x40
TAG_STR_TERMINATED: Final = 0x6F
TAG_DATA_SHORT: Final = 0x70
TAG_DATA_TERMINATED: Final = 0x9F
TAG_REF_FIRST: Final = 0xA0
TAG_REF_LAST: Final = 0xCF
TAG_ARRAY: Final = 0xD0
TAG_ARRAY_TERMINATED: Final = 0xDF
TAG_DICT: Final = 0xE0
TAG_DICT_TERMINATED: Final = 0xEF

_INT64_MIN: Final = -(1 << 63)
_INT64_MAX: Final = (1 << 63) - 1


class OpackError(ValueError):
    """Malformed OPACK input, or a value OPACK cannot encode; `offset` is the byte position."""

    def __init__(self, message: str, offset: int) -> None:
        """Store the offset and prefix it to the message."""
        super().__init__(f"{message} (at byte {offset})")
        self.offset = offset


class Int8(int):
    """An integer written as int8 (tag 0x30)."""

    __slots__ = ()


class Int16(int):
    """An integer written as int16 (tag 0x31)."""

    __slots__ = ()


class Int32(int):
    """An integer written as int32 (tag 0x32)."""

    __slots__ = ()


class Int64(int):
    """An integer written as int64 (tag 0x33), as HN writes header ids and statuses."""

    __slots__ = ()


class Float32(float):
    """A float written as float32 (tag 0x35)."""

    __slots__ = ()


class Date(float):
    """A date as seconds since 2001-01-01 00:00:00 UTC (tag 0x06)."""

    __slots__ = ()


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


# -- decoding ------------------------------------------------------------------------------

_UNPACK_I8: Final = Struct("<b").unpack_from
_UNPACK_I16: Final = Struct("<h").unpack_from
_UNPACK_I32: Final = Struct("<i").unpack_from
_UNPACK_I64: Final = Struct("<q").unpack_from
_UNPACK_F32: Final = Struct("<f").unpack_from
_UNPACK_F64: Final = Struct("<d").unpack_from
_UNPACK_U16: Final = Struct("<H").unpack_from
_UNPACK_U32: Final = Struct("<I").unpack_from
_UNPACK_U64: Final = Struct("<Q").unpack_from

type _Buffer = bytes | bytearray


class _Decoder:
    """One pass over one buffer: a position, a back-reference table and the bounds."""

    __slots__ = ("data", "end", "items", "max_depth", "max_items", "pos", "table")

    def __init__(self, data: _Buffer, pos: int, end: int, max_depth: int, max_items: int) -> None:
        """Start decoding data[pos:end]."""
        self.data = data
        self.pos = pos
        self.end = end
        self.max_depth = max_depth
        self.max_items = max_items
        self.items = 0
        # Back-reference table (§4.3): every literal scalar except bool/null/-1…39.
        self.table: list[Any] = []

    def take(self, length: int, item_start: int) -> int:
        """Consume length bytes and return where they start."""
        pos = self.pos
        if length > self.end - pos:
            raise OpackError(
                f"length {length} runs past the end of input ({self.end - pos} bytes left)",
                item_start,
            )
        self.pos = pos + length
        return pos

    def item(self, depth: int) -> Any:
        """Decode one item."""
        pos = self.pos
        if pos >= self.end:
            raise OpackError("truncated: an item was expected", pos)
        self.items += 1
        if self.items > self.max_items:
            raise OpackError(f"more than {self.max_items} items", pos)
        tag = self.data[pos]
        self.pos = pos + 1
        return _DECODERS[tag](self, tag, pos, depth)

    def at_terminator(self) -> bool:
        """Consume a terminator if one is next; raise if the input ends first."""
        pos = self.pos
        if pos >= self.end:
            raise OpackError("truncated: terminator 0x03 missing", pos)
        if self.data[pos] == TAG_TERMINATOR:
            self.pos = pos + 1
            return True
        return False


type _ItemDecoder = Callable[[_Decoder, int, int, int], Any]


def _invalid(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
    raise OpackError(f"invalid tag 0x{tag:02x}", start)


def _terminator(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
    raise OpackError("terminator 0x03 outside a terminated container", start)


def _constant(value: object) -> _ItemDecoder:
    def decode_constant(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
        return value

    return decode_constant


def _small_int(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
    return tag - TAG_SMALL_INT_BASE


def _fixed(size: int, unpack: Callable[[_Buffer, int], tuple[Any]], wrap: type | None) -> Any:
    def decode_fixed(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
        value = unpack(dec.data, dec.take(size, start))[0]
        if wrap is not None:
            value = wrap(value)
        dec.table.append(value)
        return value

    return decode_fixed


def _uuid(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
    pos = dec.take(16, start)
    value = uuid.UUID(bytes=bytes(dec.data[pos : pos + 16]))
    dec.table.append(value)
    return value


def _length(dec: _Decoder, tag: int, base: int, start: int) -> int:
    """Read the 1/2/4/8-byte little-endian length that follows a long-form tag."""
    size = 1 << (tag - base)
    pos = dec.take(size, start)
    data = dec.data
    if size == 1:
        return data[pos]
    if size == 2:
        return int(_UNPACK_U16(data, pos)[0])
    if size == 4:
        return int(_UNPACK_U32(data, pos)[0])
    return int(_UNPACK_U64(data, pos)[0])


def _utf8(dec: _Decoder, pos: int, end: int, start: int) -> str:
    try:
        return str(dec.data[pos:end], "utf-8")
    except UnicodeDecodeError as err:
        raise OpackError(f"invalid UTF-8 in string: {err.reason}", start) from err


def _string(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
    if tag <= TAG_STR_SHORT + MAX_SHORT_LENGTH:
        length = tag - TAG_STR_SHORT
    else:
        length = _length(dec, tag, 0x61, start)
    pos = dec.take(length, start)
    value = _utf8(dec, pos, pos + length, start)
    dec.table.append(value)
    return value


def _string_terminated(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
    pos = dec.pos
    nul = dec.data.find(0, pos, dec.end)
    if nul < 0:
        raise OpackError("truncated: NUL-terminated string without NUL", start)
    dec.pos = nul + 1
    value = _utf8(dec, pos, nul, start)
    dec.table.append(value)
    return value


def _read_data(dec: _Decoder, tag: int, start: int) -> bytes:
    if tag <= TAG_DATA_SHORT + MAX_SHORT_LENGTH:
        length = tag - TAG_DATA_SHORT
    else:
        length = _length(dec, tag, 0x91, start)
    pos = dec.take(length, start)
    return bytes(dec.data[pos : pos + length])


def _data(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
    value = _read_data(dec, tag, start)
    dec.table.append(value)
    return value


def _data_terminated(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
    # ADK: a sequence of data items ended by 0x03, concatenated (HN reads raw bytes instead).
    parts: list[bytes] = []
    while not dec.at_terminator():
        pos = dec.pos
        part_tag = dec.data[pos]
        if not TAG_DATA_SHORT <= part_tag <= 0x94:
            raise OpackError(f"tag 0x{part_tag:02x} inside terminated data", pos)
        dec.items += 1
        if dec.items > dec.max_items:
            raise OpackError(f"more than {dec.max_items} items", pos)
        dec.pos = pos + 1
        parts.append(_read_data(dec, part_tag, pos))
    value = b"".join(parts)
    dec.table.append(value)
    return value


def _reference(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
    index = tag - TAG_REF_FIRST
    if index >= len(dec.table):
        raise OpackError(
            f"back-reference {index} with only {len(dec.table)} values in the table", start
        )
    return dec.table[index]


def _enter(dec: _Decoder, start: int, depth: int) -> None:
    if depth >= dec.max_depth:
        raise OpackError(f"nesting deeper than {dec.max_depth}", start)


def _array(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
    _enter(dec, start, depth)
    item = dec.item
    if tag == TAG_ARRAY_TERMINATED:
        result = []
        while not dec.at_terminator():
            result.append(item(depth + 1))
        return result
    return [item(depth + 1) for _ in range(tag - TAG_ARRAY)]


def _dict_pair(dec: _Decoder, result: dict[Any, Any], depth: int) -> None:
    key_start = dec.pos
    key = dec.item(depth)
    if isinstance(key, list | dict):
        raise OpackError("dictionary key is a container", key_start)
    result[key] = dec.item(depth)


def _dict(dec: _Decoder, tag: int, start: int, depth: int) -> Any:
    _enter(dec, start, depth)
    result: dict[Any, Any] = {}
    if tag == TAG_DICT_TERMINATED:
        while not dec.at_terminator():
            _dict_pair(dec, result, depth + 1)
    else:
        for _ in range(tag - TAG_DICT):
            _dict_pair(dec, result, depth + 1)
    return result


def _build_decoders() -> list[_ItemDecoder]:
    table: list[_ItemDecoder] = [_invalid] * 256
    table[TAG_TRUE] = _constant(True)
    table[TAG_FALSE] = _constant(False)
    table[TAG_TERMINATOR] = _terminator
    table[TAG_NULL] = _constant(None)
    table[TAG_UUID] = _uuid
    table[TAG_DATE] = _fixed(8, _UNPACK_F64, Date)
    for tag in range(0x07, 0x30):
        table[tag] = _small_int
    table[TAG_INT8] = _fixed(1, _UNPACK_I8, None)
    table[TAG_INT16] = _fixed(2, _UNPACK_I16, None)
    table[TAG_INT32] = _fixed(4, _UNPACK_I32, None)
    table[TAG_INT64] = _fixed(8, _UNPACK_I64, None)
    table[TAG_FLOAT32] = _fixed(4, _UNPACK_F32, None)
    table[TAG_FLOAT64] = _fixed(8, _UNPACK_F64, None)
    for tag in range(TAG_STR_SHORT, 0x65):
        table[tag] = _string
    table[TAG_STR_TERMINATED] = _string_terminated
    for tag in range(TAG_DATA_SHORT, 0x95):
        table[tag] = _data
    table[TAG_DATA_TERMINATED] = _data_terminated
    for tag in range(TAG_REF_FIRST, TAG_REF_LAST + 1):
        table[tag] = _reference
    for tag in range(TAG_ARRAY, TAG_ARRAY_TERMINATED + 1):
        table[tag] = _array
    for tag in range(TAG_DICT, TAG_DICT_TERMINATED + 1):
        table[tag] = _dict
    return table


_DECODERS: Final = _build_decoders()


def _as_buffer(data: bytes | bytearray | memoryview) -> _Buffer:
    """Return data as bytes or bytearray (a memoryview is copied once)."""
    if isinstance(data, bytes | bytearray):
        return data
    if isinstance(data, memoryview):
        return data.tobytes()
    raise OpackError(f"cannot decode {type(data).__name__}, expected bytes", 0)


def decode_range(
    data: bytes | bytearray,
    start: int,
    end: int,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> Any:
    """Decode exactly one item filling data[start:end], without slicing data."""
    dec = _Decoder(data, start, end, max_depth, max_items)
    try:
        value = dec.item(0)
    except RecursionError as err:
        raise OpackError("nesting too deep for the interpreter", dec.pos) from err
    if dec.pos != end:
        raise OpackError(f"{end - dec.pos} trailing bytes after the item", dec.pos)
    return value


def decode(
    data: bytes | bytearray | memoryview,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> Any:
    """Decode one item that must fill the whole input."""
    buf = _as_buffer(data)
    return decode_range(buf, 0, len(buf), max_depth=max_depth, max_items=max_items)


def decode_prefix(
    data: bytes | bytearray | memoryview,
    offset: int = 0,
    *,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_items: int = DEFAULT_MAX_ITEMS,
) -> tuple[Any, int]:
    """Decode one item starting at offset; return it and the offset just past it."""
    buf = _as_buffer(data)
    if not 0 <= offset <= len(buf):
        raise OpackError(f"offset outside the input ({len(buf)} bytes)", offset)
    dec = _Decoder(buf, offset, len(buf), max_depth, max_items)
    try:
        value = dec.item(0)
    except RecursionError as err:
        raise OpackError("nesting too deep for the interpreter", dec.pos) from err
    return value, dec.pos
