"""Fuzz the fMP4 layer: arbitrary and mutated bytes raise Fmp4Error or nothing, and never hang."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import suppress
import struct
from typing import Any

from hypothesis import HealthCheck, given, settings, strategies as st
import pytest

from custom_components.hksv.media.fmp4 import (
    Fmp4Error,
    InitSegment,
    find_box,
    iter_boxes,
    parse_fragments,
    parse_init,
)
from custom_components.hksv.recording.shaper import FragmentShaper
from tests.media import ClipSpec
from tests.recording.boxes import box, full_box, u32, u64
from tests.recording.conftest import SegmentFactory
from tests.recording.ha_parts import RawPartAssembler

# A generous deadline per example turns a hang or a quadratic blow-up into a failure.
FUZZ = settings(
    max_examples=300,
    deadline=2000,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
INTERESTING = (0, 1, 2, 7, 8, 9, 16, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)
TYPES = (b"moof", b"traf", b"tfhd", b"tfdt", b"trun", b"mfhd", b"mdat", b"moov", b"trak")


def only_fmp4_errors(func: Callable[..., Any], *args: Any) -> None:
    """Call ``func``; let Fmp4Error pass and anything else fail the test."""
    with suppress(Fmp4Error):
        func(*args)


def walk_all(data: bytes) -> None:
    """Walk every box, recursing into anything whose payload parses as boxes."""
    stack = [(0, len(data), True)]
    steps = 0
    while stack:
        start, end, top = stack.pop()
        for found in iter_boxes(data, start, None if top else end):
            steps += 1
            assert found.end > found.start
            assert found.payload_start <= found.end
            try:
                list(iter_boxes(data, found.payload_start, found.end))
            except Fmp4Error:
                continue
            stack.append((found.payload_start, found.end, False))
    assert steps <= len(data)  # every box is at least 8 bytes: no loops


def feed_all(init: bytes, parts: list[bytes]) -> None:
    """Feed parts to one assembler (epochs changing now and then) and shape the GOPs."""
    assembler = RawPartAssembler()
    shaper = FragmentShaper(4000, True)
    for index, data in enumerate(parts):
        for gop in assembler.feed(init, data, index // 3):
            shaper.push(gop)
    last = assembler.flush()
    if last is not None:
        shaper.push(last)
    shaper.flush()


@st.composite
def mutations(draw: st.DrawFn, size: int, hot: int) -> list[tuple[str, int, int]]:
    """Draw edits, mostly inside the first ``hot`` bytes (the boxes, not the media)."""
    position = st.one_of(st.integers(0, max(hot - 1, 0)), st.integers(0, max(size - 1, 0)))
    edit = st.tuples(
        st.sampled_from(["byte", "word", "truncate", "insert", "delete"]),
        position,
        st.one_of(st.sampled_from(INTERESTING), st.integers(0, 0xFFFFFFFF)),
    )
    return draw(st.lists(edit, min_size=1, max_size=6))


def mutate(data: bytes, edits: list[tuple[str, int, int]]) -> bytes:
    """Apply edits to a copy of ``data``."""
    out = bytearray(data)
    for kind, wanted, value in edits:
        at = min(wanted, len(out))
        if kind == "byte" and at < len(out):
            out[at] = value & 0xFF
        elif kind == "word":
            out[at : at + 4] = struct.pack(">I", value)
        elif kind == "truncate":
            del out[at:]
        elif kind == "insert":
            out[at:at] = bytes([value & 0xFF]) * (value % 9)
        else:
            del out[at : at + 1 + value % 8]
    return bytes(out)


@st.composite
def fragment_trees(draw: st.DrawFn) -> bytes:
    """Draw moof+mdat structures with random versions, flags, counts and offsets."""
    trafs = []
    for _ in range(draw(st.integers(0, 3))):
        tfhd_flags = draw(st.integers(0, 0xFFFFFF)) & 0x03003B  # every defined tfhd flag
        tfhd_fields = draw(st.binary(max_size=28))
        trun_flags = draw(st.integers(0, 0xFFF))
        count = draw(st.one_of(st.integers(0, 40), st.sampled_from(INTERESTING)))
        entries = draw(st.binary(max_size=200))
        children = [
            full_box(b"tfhd", 0, tfhd_flags, u32(draw(st.integers(0, 3))), tfhd_fields),
            full_box(b"tfdt", draw(st.integers(0, 2)), 0, u64(draw(st.integers(0, 2**64 - 1)))),
            full_box(b"trun", draw(st.integers(0, 1)), trun_flags, u32(count), entries),
        ]
        trafs.append(box(b"traf", *draw(st.permutations(children))))
    moof = box(b"moof", full_box(b"mfhd", 0, 0, u32(1)), *trafs)
    # Without an mdat, a short box can be the very last bytes of the buffer.
    return moof + (box(b"mdat", draw(st.binary(max_size=300))) if draw(st.booleans()) else b"")


@given(data=st.binary(max_size=2048))
@FUZZ
def test_arbitrary_bytes(data: bytes, spec_init: InitSegment) -> None:
    """Random bytes: every entry point raises Fmp4Error or returns."""
    only_fmp4_errors(walk_all, data)
    only_fmp4_errors(find_box, data, b"moov")
    only_fmp4_errors(parse_init, data)
    only_fmp4_errors(parse_fragments, data, spec_init)
    only_fmp4_errors(feed_all, spec_init.data, [data])
    only_fmp4_errors(feed_all, data, [data])


@given(data=st.lists(st.sampled_from(TYPES), max_size=6).map(lambda types: b"".join(
    u32(8 + 4 * i) + t + bytes(4 * i) for i, t in enumerate(types)
)) | st.binary(max_size=64).map(lambda b: u32(0) + b"moof" + b))  # fmt: skip
@FUZZ
def test_box_shaped_bytes(data: bytes, spec_init: InitSegment) -> None:
    """Well-framed boxes with junk inside, and size-0 boxes."""
    only_fmp4_errors(walk_all, data)
    only_fmp4_errors(parse_fragments, data, spec_init)


@given(data=fragment_trees())
@FUZZ
def test_structured_fragments(data: bytes, spec_init: InitSegment) -> None:
    """moof/traf/tfhd/tfdt/trun with random flags, versions and counts."""
    only_fmp4_errors(parse_fragments, data, spec_init)
    only_fmp4_errors(feed_all, spec_init.data, [data, data])


@pytest.fixture(scope="module")
def ha_parts(ha_segments: SegmentFactory) -> tuple[bytes, list[bytes]]:
    """Return an HA init and a few of its LL parts (mid-GOP ones included)."""
    segments = ha_segments(ClipSpec(seconds=14, gop_seconds=2.0), True)
    return segments[0].init, [p.data for p in segments[0].parts[:4]]


@given(edits=st.data())
@FUZZ
def test_mutated_spec_fragments(
    edits: st.DataObject, spec_init: InitSegment, spec_fragments: dict[int, bytes]
) -> None:
    """The real camera's fragments (8 runs per track), bytes mutated."""
    original = spec_fragments[2]
    data = mutate(original, edits.draw(mutations(len(original), 1952)))
    only_fmp4_errors(parse_fragments, data, spec_init)
    only_fmp4_errors(feed_all, spec_init.data, [data, spec_fragments[3]])


@given(edits=st.data())
@FUZZ
def test_mutated_ha_parts(edits: st.DataObject, ha_parts: tuple[bytes, list[bytes]]) -> None:
    """HA's own LL parts and init, mutated, fed through the assembler and shaper."""
    init, parts = ha_parts
    index = edits.draw(st.integers(0, len(parts) - 1))
    target = parts[index]
    mutated = mutate(target, edits.draw(mutations(len(target), 600)))
    only_fmp4_errors(feed_all, init, [*parts[:index], mutated, *parts[index + 1 :]])
    bad_init = mutate(init, edits.draw(mutations(len(init), len(init))))
    only_fmp4_errors(parse_init, bad_init)
    only_fmp4_errors(feed_all, bad_init, parts)
