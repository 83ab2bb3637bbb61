"""OPACK, the HDS message codec (HAP R17 §9.1.4; hksv-protocol.md §4.2-§4.3): the shared part.

Python mapping: None, bool, int, float (float64), str, bytes-like (data), list/tuple (array),
dict; `Int8`/`Int16`/`Int32`/`Int64`, `Float32`, `Date` and `uuid.UUID` force an encoding.
Here: those types, the tags, the bounds and `OpackError`, the only error either direction
raises. `opack_encoder` writes the ADK's choices and never back-references; `opack_decoder`
accepts every tag, including HN's back-references.
"""

from __future__ import annotations

from typing import Final

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
