"""The ISOBMFF box walker and checked field readers every other fmp4 module builds on.

Offsets cite ISO/IEC 14496-12:2015 (ISOBMFF) unless another standard is named.
"""

from __future__ import annotations

from collections.abc import Iterator
from struct import Struct
from typing import Final, NamedTuple

type Buffer = bytes | bytearray | memoryview

U16: Final = Struct(">H")
U32: Final = Struct(">I")
S32: Final = Struct(">i")
U64: Final = Struct(">Q")

# §4.2 Object structure: size(4) type(4), size 1 → largesize(8), type 'uuid' → usertype(16).
BOX_HEADER: Final = 8
LARGE_BOX_HEADER: Final = 16
UUID_SIZE: Final = 16
# §4.2 FullBox: version(1) flags(3) ahead of the payload.
FULLBOX_HEADER: Final = 4


class Fmp4Error(ValueError):
    """Malformed or unsupported fragmented MP4."""


class Box(NamedTuple):
    """One box: its four-character type and where its header, payload and end lie."""

    type: bytes
    start: int
    payload_start: int
    end: int


def iter_boxes(buf: Buffer, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """Yield the boxes between ``start`` and ``end`` (the whole buffer: top level)."""
    limit = len(buf) if end is None else end
    if not 0 <= start <= limit <= len(buf):
        raise Fmp4Error(f"box range {start}..{limit} outside a {len(buf)}-byte buffer")
    pos = start
    while pos < limit:
        if limit - pos < BOX_HEADER:
            raise Fmp4Error(f"truncated box header at {pos}")
        size = U32.unpack_from(buf, pos)[0]
        box_type = bytes(buf[pos + 4 : pos + 8])
        header = BOX_HEADER
        if size == 1:
            if limit - pos < LARGE_BOX_HEADER:
                raise Fmp4Error(f"truncated largesize at {pos}")
            size = U64.unpack_from(buf, pos + BOX_HEADER)[0]
            header = LARGE_BOX_HEADER
        elif size == 0:
            # §4.2: size 0 means "to the end of the file", so only a top-level box may use it.
            if end is not None:
                raise Fmp4Error(f"size-0 box {box_type!r} at {pos} inside a container")
            size = limit - pos
        if box_type == b"uuid":
            header += UUID_SIZE
        if size < header:
            raise Fmp4Error(f"box {box_type!r} at {pos} has size {size} < {header}")
        if size > limit - pos:
            raise Fmp4Error(f"box {box_type!r} at {pos} overruns its parent ({size} bytes)")
        yield Box(box_type, pos, pos + header, pos + size)
        pos += size


def find_box(buf: Buffer, box_type: bytes, start: int = 0, end: int | None = None) -> Box | None:
    """Return the first box of ``box_type`` between ``start`` and ``end``, or None."""
    for box in iter_boxes(buf, start, end):
        if box.type == box_type:
            return box
    return None


def child_box(buf: Buffer, parent: Box, box_type: bytes) -> Box | None:
    """Return the first child of ``parent`` with ``box_type``."""
    return find_box(buf, box_type, parent.payload_start, parent.end)


def need(box: Box, pos: int, size: int) -> None:
    """Raise unless ``size`` bytes at ``pos`` lie inside ``box``."""
    if pos < box.payload_start or pos + size > box.end:
        raise Fmp4Error(f"{box.type!r} at {box.start} is too short")


def full_box(buf: Buffer, box: Box) -> tuple[int, int, int]:
    """Return (version, flags, first payload offset) of a FullBox (§4.2)."""
    need(box, box.payload_start, FULLBOX_HEADER)
    word = U32.unpack_from(buf, box.payload_start)[0]
    return word >> 24, word & 0xFFFFFF, box.payload_start + FULLBOX_HEADER


def u32_at(buf: Buffer, box: Box, pos: int) -> int:
    """Return the unsigned 32-bit field at ``pos`` inside ``box``."""
    need(box, pos, 4)
    return int(U32.unpack_from(buf, pos)[0])
