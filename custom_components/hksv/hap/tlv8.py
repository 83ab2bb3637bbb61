"""TLV8 codec with lists, `00 00` separators and values longer than 255 bytes.

HAP-python's codec merges repeated tags and corrupts values of 510+ bytes, so hksv has its own
(docs/home-assistant.md §3.1). Structures are declared as dataclasses whose fields carry a
``tlv`` entry (type and value kind); unknown types are skipped on decode so a newer controller
can add fields, while wrong lengths and missing required fields raise ``TLVError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
import dataclasses
from enum import IntEnum
import struct
from typing import Any, Final, Self

SEPARATOR: Final = 0x00
_MAX_CHUNK: Final = 255
# HKSV TLVs are a few hundred bytes; nothing legitimate comes close to this.
MAX_ITEMS: Final = 1024


class TLVError(ValueError):
    """A TLV8 value is malformed."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        """Create the error, naming the byte offset when known."""
        super().__init__(message if offset is None else f"{message} (at byte {offset})")
        self.offset = offset


def iter_items(data: bytes) -> Iterator[tuple[int, bytes]]:
    """Yield (type, value) pairs, joining 255-byte fragments of one value."""
    length = len(data)
    pos = 0
    count = 0
    while pos < length:
        if pos + 2 > length:
            raise TLVError("truncated TLV header", pos)
        tlv_type = data[pos]
        size = data[pos + 1]
        end = pos + 2 + size
        if end > length:
            raise TLVError(f"TLV type {tlv_type} declares {size} bytes beyond the input", pos)
        value = data[pos + 2 : end]
        pos = end
        # A value over 255 bytes continues in the next item of the same type (HAP §14.1).
        while size == _MAX_CHUNK and pos + 2 <= length and data[pos] == tlv_type:
            size = data[pos + 1]
            end = pos + 2 + size
            if end > length:
                raise TLVError(f"TLV type {tlv_type} fragment runs past the input", pos)
            value += data[pos + 2 : end]
            pos = end
        count += 1
        if count > MAX_ITEMS:
            raise TLVError("too many TLV items", pos)
        yield tlv_type, value


def encode_item(tlv_type: int, value: bytes) -> bytes:
    """Encode one item, splitting values longer than 255 bytes into fragments."""
    if not value:
        return bytes((tlv_type, 0))
    out = bytearray()
    for start in range(0, len(value), _MAX_CHUNK):
        chunk = value[start : start + _MAX_CHUNK]
        out += bytes((tlv_type, len(chunk)))
        out += chunk
    return bytes(out)


class Kind:
    """How one field's value is turned into bytes and back."""

    def encode(self, value: Any) -> bytes:
        """Return the item value for ``value``."""
        raise NotImplementedError

    def decode(self, data: bytes) -> Any:
        """Return the Python value for the item bytes ``data``."""
        raise NotImplementedError


class UInt(Kind):
    """A little-endian unsigned integer of a fixed width, optionally an IntEnum."""

    def __init__(self, width: int, enum: type[IntEnum] | None = None) -> None:
        """Describe an unsigned integer of ``width`` bytes."""
        self.width = width
        self.enum = enum
        self._struct = struct.Struct({1: "<B", 2: "<H", 4: "<I", 8: "<Q"}[width])

    def encode(self, value: Any) -> bytes:
        """Pack the integer."""
        try:
            return self._struct.pack(int(value))
        except struct.error as err:
            raise TLVError(f"{value} does not fit in {self.width} bytes") from err

    def decode(self, data: bytes) -> Any:
        """Unpack the integer, checking its width and enum membership."""
        if len(data) != self.width:
            raise TLVError(f"expected {self.width} bytes, got {len(data)}")
        (number,) = self._struct.unpack(data)
        if self.enum is None:
            return number
        try:
            return self.enum(number)
        except ValueError as err:
            raise TLVError(f"{number} is not a valid {self.enum.__name__}") from err


class Bytes(Kind):
    """Raw bytes, optionally of an exact length."""

    def __init__(self, length: int | None = None) -> None:
        """Describe a byte string, of exactly ``length`` bytes when given."""
        self.length = length

    def encode(self, value: Any) -> bytes:
        """Return the bytes."""
        return bytes(value)

    def decode(self, data: bytes) -> Any:
        """Return the bytes, checking the length."""
        if self.length is not None and len(data) != self.length:
            raise TLVError(f"expected {self.length} bytes, got {len(data)}")
        return bytes(data)


class Nested(Kind):
    """A sub-TLV holding another structure."""

    def __init__(self, struct_type: type[TLVStruct]) -> None:
        """Describe a nested structure."""
        self.struct_type = struct_type

    def encode(self, value: Any) -> bytes:
        """Encode the nested structure."""
        return bytes(value.encode())

    def decode(self, data: bytes) -> Any:
        """Decode the nested structure."""
        return self.struct_type.decode(data)


U8: Final = UInt(1)
U16: Final = UInt(2)
U32: Final = UInt(4)
U64: Final = UInt(8)


@dataclasses.dataclass(frozen=True, slots=True)
class Entry:
    """A field's TLV type, value kind and whether it repeats as a list."""

    tlv_type: int
    kind: Kind
    is_list: bool = False


def tlv(tlv_type: int, kind: Kind, *, default: Any = dataclasses.MISSING) -> Any:
    """Declare a single-valued field; a ``None`` default makes it optional."""
    return dataclasses.field(default=default, metadata={"tlv": Entry(tlv_type, kind)})


def tlv_list(tlv_type: int, kind: Kind) -> Any:
    """Declare a field that repeats its type, items separated by `00 00`."""
    return dataclasses.field(default_factory=list, metadata={"tlv": Entry(tlv_type, kind, True)})


class TLVStruct:
    """Base of declarative TLV8 structures (subclasses are frozen, slotted dataclasses)."""

    __slots__ = ()

    @classmethod
    def _fields(cls) -> tuple[tuple[str, Entry], ...]:
        """Return (name, entry) for every TLV field, cached per class."""
        cached = cls.__dict__.get("_tlv_fields_cache")
        if cached is None:
            cached = tuple(
                (f.name, f.metadata["tlv"])
                for f in dataclasses.fields(cls)  # type: ignore[arg-type]
                if "tlv" in f.metadata
            )
            type.__setattr__(cls, "_tlv_fields_cache", cached)
        return cached

    def encode(self) -> bytes:
        """Encode the structure in field order."""
        out = bytearray()
        for name, entry in self._fields():
            value = getattr(self, name)
            if value is None:
                continue
            if entry.is_list:
                for index, item in enumerate(value):
                    if index:
                        out += bytes((SEPARATOR, 0))
                    out += encode_item(entry.tlv_type, entry.kind.encode(item))
            else:
                out += encode_item(entry.tlv_type, entry.kind.encode(value))
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes) -> Self:
        """Decode ``data``; unknown types are skipped, separators only split lists."""
        by_type = {entry.tlv_type: (name, entry) for name, entry in cls._fields()}
        values: dict[str, Any] = {}
        for tlv_type, raw in iter_items(bytes(data)):
            if tlv_type == SEPARATOR:
                continue
            found = by_type.get(tlv_type)
            if found is None:
                continue
            name, entry = found
            try:
                value = entry.kind.decode(raw)
            except TLVError as err:
                raise TLVError(f"{cls.__name__}.{name}: {err}") from err
            if entry.is_list:
                values.setdefault(name, []).append(value)
            elif name in values:
                raise TLVError(f"{cls.__name__}.{name}: type {tlv_type} appears twice")
            else:
                values[name] = value
        try:
            return cls(**values)
        except TypeError as err:
            missing = [
                n
                for n, e in cls._fields()
                if n not in values and _is_required(cls, n) and not e.is_list
            ]
            raise TLVError(f"{cls.__name__}: missing {', '.join(missing) or err}") from err


def _is_required(cls: type, name: str) -> bool:
    """Return True if dataclass field ``name`` has no default."""
    for f in dataclasses.fields(cls):
        if f.name == name:
            return f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    return False


def decode_list(data: bytes, kind: Kind, tlv_type: int) -> Sequence[Any]:
    """Decode a bare list of items of one type (e.g. a whole characteristic value)."""
    return [kind.decode(raw) for t, raw in iter_items(data) if t == tlv_type]
