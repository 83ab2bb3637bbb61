"""Hypothesis strategies for hostile TLV8 writes: mutations of a valid value, and non-values."""

from __future__ import annotations

import base64
from typing import Any

from hypothesis import strategies as st


@st.composite
def mutated(draw: st.DrawFn, seed: bytes) -> bytes:
    """Return ``seed`` with up to four bytes flipped, cut, inserted, dropped or duplicated."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, 4))):  # 0: the valid seed itself
        op = draw(st.sampled_from(("flip", "set", "cut", "insert", "drop", "repeat")))
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.sampled_from((0x00, 0x01, 0x7F, 0x80, 0xFE, 0xFF)))
        elif op == "cut":
            del data[pos:]
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "drop" and data:
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "repeat":
            data += data[pos : pos + draw(st.integers(1, 16))]
    return bytes(data)


def tlv_bytes(seed: bytes) -> st.SearchStrategy[bytes]:
    """Return byte strings near ``seed`` and arbitrary ones."""
    return st.one_of(mutated(seed), st.binary(max_size=300))


def written_values(seed: bytes) -> st.SearchStrategy[Any]:
    """Return what a buggy or hostile controller might put in a TLV8 write's "value".

    Mostly base64 of mutated seeds (the interesting cases: nearly valid), then any bytes,
    then values that are not base64 text at all.
    """
    near = mutated(seed).map(_b64)
    not_base64 = st.one_of(
        st.text(max_size=40),  # not base64, or non-ASCII
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=False),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    )
    return st.one_of(near, near, near, st.binary(max_size=300).map(_b64), not_base64)


def _b64(data: bytes) -> str:
    """Return base64 text."""
    return base64.b64encode(data).decode()
