"""Fragments in: every sample of every moof, as views into the caller's buffer.

Offsets cite ISO/IEC 14496-12:2015 (ISOBMFF). Sample payloads stay memoryviews into the part
they came from; nothing is copied here.
"""

from __future__ import annotations

from itertools import repeat
from typing import Final, NamedTuple

from .boxes import (
    S32,
    U64,
    Box,
    Buffer,
    Fmp4Error,
    child_box,
    full_box,
    iter_boxes,
    need,
    u32_at,
)
from .init import InitSegment, TrackDefaults
from .sample import (
    TFHD_BASE_DATA_OFFSET,
    TFHD_DEFAULT_BASE_IS_MOOF,
    TFHD_DEFAULT_DURATION,
    TFHD_DEFAULT_FLAGS,
    TFHD_DEFAULT_SIZE,
    TFHD_SAMPLE_DESCRIPTION_INDEX,
    TRUN_CTS_OFFSET,
    TRUN_DATA_OFFSET,
    TRUN_DURATION,
    TRUN_FIRST_SAMPLE_FLAGS,
    TRUN_FLAGS,
    TRUN_SIZE,
    Sample,
    trun_entry_struct,
)

# §8.8.5 mfhd, after version/flags: sequence_number(4).
MFHD_SEQUENCE: Final = 0
# A sane ceiling: HA parts hold tens of samples, a 10 s 60 fps GOP 600.
MAX_SAMPLES_PER_RUN: Final = 1 << 17


class _Traf(NamedTuple):
    """The tfhd fields that apply to every run of a track fragment."""

    track_id: int
    base: int
    duration: int
    size: int
    flags: int


def parse_fragments(data: Buffer, init: InitSegment) -> dict[int, list[Sample]]:
    """Return every sample of every moof in ``data``, per track id, in decode order."""
    view = data if isinstance(data, memoryview) else memoryview(data)
    tracks: dict[int, list[Sample]] = {}
    clock: dict[int, int] = {}  # next decode time per track when a traf has no tfdt
    for moof in iter_boxes(view):
        if moof.type != b"moof":
            continue
        next_base = moof.start
        for traf in iter_boxes(view, moof.payload_start, moof.end):
            if traf.type == b"traf":
                next_base = _parse_traf(
                    view, moof, traf, implicit_base=next_base, init=init, tracks=tracks, clock=clock
                )
    return tracks


def read_mfhd_sequence(buf: Buffer, moof: Box) -> int:
    """Return the sequence_number of a moof's mfhd (§8.8.5)."""
    mfhd = child_box(buf, moof, b"mfhd")
    if mfhd is None:
        raise Fmp4Error(f"moof at {moof.start} has no mfhd")
    _, _, pos = full_box(buf, mfhd)
    return u32_at(buf, mfhd, pos + MFHD_SEQUENCE)


def read_tfdt(buf: Buffer, tfdt: Box) -> int:
    """Return baseMediaDecodeTime (§8.8.12), 32- or 64-bit by version."""
    version, _, pos = full_box(buf, tfdt)
    if version == 1:
        need(tfdt, pos, 8)
        return int(U64.unpack_from(buf, pos)[0])
    return u32_at(buf, tfdt, pos)


def _read_tfhd(buf: Buffer, tfhd: Box, moof: Box, implicit_base: int, init: InitSegment) -> _Traf:
    """Return the track fragment defaults of a tfhd (§8.8.7), falling back to trex."""
    _, flags, pos = full_box(buf, tfhd)
    track_id = u32_at(buf, tfhd, pos)
    pos += 4
    trex = init.defaults.get(track_id, TrackDefaults())
    base = implicit_base
    if flags & TFHD_BASE_DATA_OFFSET:
        need(tfhd, pos, 8)
        # An explicit base is a file offset; a part's buffer stands in for the file.
        base = int(U64.unpack_from(buf, pos)[0])
        pos += 8
    elif flags & TFHD_DEFAULT_BASE_IS_MOOF:
        base = moof.start
    if flags & TFHD_SAMPLE_DESCRIPTION_INDEX:
        pos += 4
    duration, size, sample_flags = trex.duration, trex.size, trex.flags
    if flags & TFHD_DEFAULT_DURATION:
        duration = u32_at(buf, tfhd, pos)
        pos += 4
    if flags & TFHD_DEFAULT_SIZE:
        size = u32_at(buf, tfhd, pos)
        pos += 4
    if flags & TFHD_DEFAULT_FLAGS:
        sample_flags = u32_at(buf, tfhd, pos)
    return _Traf(track_id, base, duration, size, sample_flags)


def _parse_traf(
    view: memoryview,
    moof: Box,
    traf: Box,
    *,
    implicit_base: int,
    init: InitSegment,
    tracks: dict[int, list[Sample]],
    clock: dict[int, int],
) -> int:
    """Append a traf's samples to ``tracks``; return where its data ended (§8.8.7.1)."""
    tfhd = child_box(view, traf, b"tfhd")
    if tfhd is None:
        raise Fmp4Error(f"traf at {traf.start} has no tfhd")
    header = _read_tfhd(view, tfhd, moof, implicit_base, init)
    tfdt = child_box(view, traf, b"tfdt")
    decode_time = read_tfdt(view, tfdt) if tfdt else clock.get(header.track_id, 0)
    samples = tracks.setdefault(header.track_id, [])
    data_end = header.base
    for trun in iter_boxes(view, traf.payload_start, traf.end):
        if trun.type == b"trun":
            data_end, decode_time = _parse_trun(
                view, trun, header, data_pos=data_end, decode_time=decode_time, samples=samples
            )
    clock[header.track_id] = decode_time
    return data_end


def _parse_trun(
    view: memoryview,
    trun: Box,
    traf: _Traf,
    *,
    data_pos: int,
    decode_time: int,
    samples: list[Sample],
) -> tuple[int, int]:
    """Append one run's samples; return (end of its data, next decode time) (§8.8.8)."""
    version, flags, pos = full_box(view, trun)
    count = u32_at(view, trun, pos)
    pos += 4
    if flags & TRUN_DATA_OFFSET:
        need(trun, pos, 4)
        data_pos = traf.base + S32.unpack_from(view, pos)[0]
        pos += 4
    first_flags = None
    if flags & TRUN_FIRST_SAMPLE_FLAGS:
        first_flags = u32_at(view, trun, pos)
        pos += 4
    entry = trun_entry_struct(flags, version)
    if count > MAX_SAMPLES_PER_RUN or count * entry.size > trun.end - pos:
        raise Fmp4Error(f"trun at {trun.start} declares {count} samples it cannot hold")
    # Without per-sample fields the count is unbounded by the box: bound it by the data.
    if not entry.size and count > (len(view) - max(data_pos, 0)) // max(traf.size, 1):
        raise Fmp4Error(f"trun at {trun.start} declares {count} samples beyond the data")
    if count == 0:
        return data_pos, decode_time
    rows = entry.iter_unpack(view[pos : pos + count * entry.size]) if entry.size else ()
    columns = iter(zip(*rows, strict=True))
    durations = next(columns) if flags & TRUN_DURATION else repeat(traf.duration, count)
    sizes = next(columns) if flags & TRUN_SIZE else repeat(traf.size, count)
    all_flags = list(next(columns) if flags & TRUN_FLAGS else repeat(traf.flags, count))
    offsets = next(columns) if flags & TRUN_CTS_OFFSET else repeat(0, count)
    if first_flags is not None:
        all_flags[0] = first_flags
    limit = len(view)
    append = samples.append
    for duration, size, sample_flags, cts in zip(durations, sizes, all_flags, offsets, strict=True):
        end = data_pos + size
        if data_pos < 0 or end > limit:
            raise Fmp4Error(f"sample data at {data_pos}+{size} outside the {limit}-byte buffer")
        append(Sample(decode_time, duration, size, sample_flags, cts, view[data_pos:end]))
        data_pos = end
        decode_time += duration
    return data_pos, decode_time
