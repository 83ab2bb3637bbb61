"""Fragments out: one moof + mdat from samples, copying each payload exactly once.

Offsets cite ISO/IEC 14496-12:2015 (ISOBMFF).
"""

from __future__ import annotations

from collections.abc import Sequence
from struct import Struct, error as StructError
from typing import Final

from .boxes import BOX_HEADER, FULLBOX_HEADER, S32, U32, U64, Fmp4Error
from .sample import (
    TFHD_DEFAULT_BASE_IS_MOOF,
    TRUN_CTS_OFFSET,
    TRUN_DATA_OFFSET,
    TRUN_DURATION,
    TRUN_FLAGS,
    TRUN_SIZE,
    Sample,
    trun_entry_struct,
)

_MFHD_SIZE: Final = BOX_HEADER + FULLBOX_HEADER + 4
_TFHD_SIZE: Final = BOX_HEADER + FULLBOX_HEADER + 4
_TFDT_SIZE: Final = BOX_HEADER + FULLBOX_HEADER + 8
_TRUN_HEADER: Final = BOX_HEADER + FULLBOX_HEADER + 8  # sample_count + data_offset
_BOX_HEAD: Final = Struct(">I4s")
_FULL_HEAD: Final = Struct(">I4sI")
_U32_PAIR: Final = Struct(">II")


def build_fragment(
    sequence_number: int, tracks: Sequence[tuple[int, int, Sequence[Sample]]]
) -> bytes:
    """Return one moof + mdat holding ``(track_id, base_decode_time, samples)`` per track."""
    runs = [(tid, base, samples) for tid, base, samples in tracks if samples]
    layouts = [_run_layout(samples) for _, _, samples in runs]
    moof_size = (
        BOX_HEADER
        + _MFHD_SIZE
        + sum(
            BOX_HEADER + _TFHD_SIZE + _TFDT_SIZE + _TRUN_HEADER + len(samples) * entry.size
            for (_, _, samples), (_, _, entry) in zip(runs, layouts, strict=True)
        )
    )
    payload = sum(len(sample.data) for _, _, samples in runs for sample in samples)
    if payload + BOX_HEADER > 0xFFFFFFFF:
        raise Fmp4Error("fragment too large for a 32-bit mdat")
    moof = bytearray(moof_size)
    try:
        _BOX_HEAD.pack_into(moof, 0, moof_size, b"moof")
        _BOX_HEAD.pack_into(moof, BOX_HEADER, _MFHD_SIZE, b"mfhd")
        _U32_PAIR.pack_into(moof, BOX_HEADER * 2, 0, sequence_number)
        pos = BOX_HEADER + _MFHD_SIZE
        data_offset = moof_size + BOX_HEADER  # default-base-is-moof: relative to the moof
        for (track_id, base, samples), layout in zip(runs, layouts, strict=True):
            pos, data_offset = _write_traf(
                moof,
                pos,
                track_id=track_id,
                base_decode_time=base,
                samples=samples,
                layout=layout,
                data_offset=data_offset,
            )
    except StructError as err:
        raise Fmp4Error(f"value out of range for the fragment: {err}") from err
    mdat_head = _BOX_HEAD.pack(BOX_HEADER + payload, b"mdat")
    # The one copy of the media: join reads each sample view straight into the result.
    return b"".join([moof, mdat_head, *(s.data for _, _, samples in runs for s in samples)])


def _run_layout(samples: Sequence[Sample]) -> tuple[int, int, Struct]:
    """Return (trun version, trun flags, entry Struct) for a run of ``samples``."""
    flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS
    version = 0
    # Composition offsets only when some sample needs one; v1 makes them signed (§8.8.8.2).
    if any(sample.composition_offset for sample in samples):
        flags |= TRUN_CTS_OFFSET
        version = int(any(sample.composition_offset < 0 for sample in samples))
    return version, flags, trun_entry_struct(flags, version)


def _write_traf(
    moof: bytearray,
    pos: int,
    *,
    track_id: int,
    base_decode_time: int,
    samples: Sequence[Sample],
    layout: tuple[int, int, Struct],
    data_offset: int,
) -> tuple[int, int]:
    """Write one traf at ``pos``; return the next write position and data offset."""
    version, flags, entry = layout
    trun_size = _TRUN_HEADER + len(samples) * entry.size
    traf_size = BOX_HEADER + _TFHD_SIZE + _TFDT_SIZE + trun_size
    _BOX_HEAD.pack_into(moof, pos, traf_size, b"traf")
    pos += BOX_HEADER
    _FULL_HEAD.pack_into(moof, pos, _TFHD_SIZE, b"tfhd", TFHD_DEFAULT_BASE_IS_MOOF)
    U32.pack_into(moof, pos + BOX_HEADER + FULLBOX_HEADER, track_id)
    pos += _TFHD_SIZE
    _FULL_HEAD.pack_into(moof, pos, _TFDT_SIZE, b"tfdt", 1 << 24)
    U64.pack_into(moof, pos + BOX_HEADER + FULLBOX_HEADER, base_decode_time)
    pos += _TFDT_SIZE
    _FULL_HEAD.pack_into(moof, pos, trun_size, b"trun", (version << 24) | flags)
    U32.pack_into(moof, pos + BOX_HEADER + FULLBOX_HEADER, len(samples))
    S32.pack_into(moof, pos + BOX_HEADER + FULLBOX_HEADER + 4, data_offset)
    pos += _TRUN_HEADER
    with_cts = bool(flags & TRUN_CTS_OFFSET)
    for sample in samples:
        size = len(sample.data)
        if with_cts:
            entry.pack_into(
                moof, pos, sample.duration, size, sample.flags, sample.composition_offset
            )
        else:
            entry.pack_into(moof, pos, sample.duration, size, sample.flags)
        pos += entry.size
        data_offset += size
    return pos, data_offset
