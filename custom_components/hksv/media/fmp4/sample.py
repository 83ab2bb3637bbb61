"""Track-fragment vocabulary shared by fragment parsing and building: samples, flags, trun rows.

Offsets cite ISO/IEC 14496-12:2015 (ISOBMFF).
"""

from __future__ import annotations

from dataclasses import dataclass
from struct import Struct
from typing import Final

# §8.8.7.1 tfhd flags, in the order their optional fields follow track_ID.
TFHD_BASE_DATA_OFFSET: Final = 0x000001
TFHD_SAMPLE_DESCRIPTION_INDEX: Final = 0x000002
TFHD_DEFAULT_DURATION: Final = 0x000008
TFHD_DEFAULT_SIZE: Final = 0x000010
TFHD_DEFAULT_FLAGS: Final = 0x000020
TFHD_DURATION_IS_EMPTY: Final = 0x010000
TFHD_DEFAULT_BASE_IS_MOOF: Final = 0x020000
# §8.8.8.1 trun flags; the per-sample fields follow in this order.
TRUN_DATA_OFFSET: Final = 0x000001
TRUN_FIRST_SAMPLE_FLAGS: Final = 0x000004
TRUN_DURATION: Final = 0x000100
TRUN_SIZE: Final = 0x000200
TRUN_FLAGS: Final = 0x000400
TRUN_CTS_OFFSET: Final = 0x000800
_TRUN_FIELDS: Final = (TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTS_OFFSET)
# §8.8.3.1 sample flags: sample_depends_on (bits 25-24) and sample_is_non_sync_sample (bit 16).
SAMPLE_DEPENDS_ON_SHIFT: Final = 24
SAMPLE_DEPENDS_ON_OTHERS: Final = 1
SAMPLE_IS_NON_SYNC: Final = 0x00010000
# What an encoder writes for an IDR (depends on nothing) and for other frames; ffmpeg's values.
SYNC_SAMPLE_FLAGS: Final = 0x02000000
NON_SYNC_SAMPLE_FLAGS: Final = 0x01010000


@dataclass(slots=True)
class Sample:
    """One media sample of a fragment; ``data`` is a view into the part it came from."""

    decode_time: int  # absolute, track timescale
    duration: int
    size: int
    flags: int
    composition_offset: int
    data: memoryview

    @property
    def is_sync(self) -> bool:
        """Return True for a sync sample (§8.8.3.1: not non-sync, not dependent)."""
        depends_on = (self.flags >> SAMPLE_DEPENDS_ON_SHIFT) & 0x3
        return not self.flags & SAMPLE_IS_NON_SYNC and depends_on != SAMPLE_DEPENDS_ON_OTHERS


_ENTRY_STRUCTS: dict[tuple[int, int], Struct] = {}


def trun_entry_struct(flags: int, version: int) -> Struct:
    """Return the Struct of one trun sample entry for these flags (cached)."""
    key = (flags & 0xF00, version)
    entry = _ENTRY_STRUCTS.get(key)
    if entry is None:
        codes = "".join(
            ("i" if bit == TRUN_CTS_OFFSET and version else "I")
            for bit in _TRUN_FIELDS
            if flags & bit
        )
        entry = _ENTRY_STRUCTS[key] = Struct(">" + codes)
    return entry
