"""The OPACK decoder: every tag, HN's back-references included, bounded for untrusted input.

Raises only `OpackError` (hksv-protocol.md §4.2-§4.3).
"""

from __future__ import annotations

from collections.abc import Callable
from struct import Struct
from typing import Any, Final
import uuid

from .opack import (
    DEFAULT_MAX_DEPTH,
    DEFAULT_MAX_ITEMS,
    MAX_SHORT_LENGTH,
    TAG_ARRAY,
    TAG_ARRAY_TERMINATED,
    TAG_DATA_SHORT,
    TAG_DATA_TERMINATED,
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
    TAG_REF_FIRST,
    TAG_REF_LAST,
    TAG_SMALL_INT_BASE,
    TAG_STR_SHORT,
    TAG_STR_TERMINATED,
    TAG_TERMINATOR,
    TAG_TRUE,
    TAG_UUID,
    Date,
    OpackError,
)

__all__ = ["decode", "decode_prefix", "decode_range"]

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
