"""TLV8 codec: lists, separators, long values, and total, bounded decoding."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from hypothesis import given, strategies as st
import pytest

from custom_components.hksv.hap.tlv8 import (
    U8,
    U16,
    Bytes,
    Nested,
    TLVError,
    TLVStruct,
    encode_item,
    iter_items,
    tlv,
    tlv_list,
)


@dataclass(frozen=True, slots=True)
class Inner(TLVStruct):
    """A nested structure."""

    number: int = tlv(1, U16)


@dataclass(frozen=True, slots=True)
class Outer(TLVStruct):
    """A structure with every kind of field."""

    code: int = tlv(1, U8)
    blob: bytes | None = tlv(2, Bytes(), default=None)
    items: list[Inner] = tlv_list(3, Nested(Inner))
    flags: list[int] = tlv_list(4, U8)


@pytest.mark.parametrize("length", [0, 1, 254, 255, 256, 509, 510, 511, 765, 1000])
def test_long_values_round_trip(length: int) -> None:
    """Values of any length, including exact multiples of 255, survive (HAP-python's do not)."""
    value = bytes(i % 251 for i in range(length))
    encoded = encode_item(7, value)
    expected_size = 2 + length if length <= 255 else length + 2 * -(-length // 255)
    assert len(encoded) == expected_size
    assert list(iter_items(encoded)) == [(7, value)]


def test_list_separators() -> None:
    """Lists of the same type are separated by 00 00 and decode back to lists."""
    value = Outer(code=1, items=[Inner(number=1), Inner(number=2)], flags=[0, 1, 2])
    encoded = value.encode()
    assert encoded.hex() == ("010101030401020100000003040102020004010000000401010000040102")
    assert Outer.decode(encoded) == value


def test_unknown_types_are_skipped() -> None:
    """A newer controller may add fields; they are ignored."""
    assert Outer.decode(bytes.fromhex("0101050903aabbcc")) == Outer(code=5)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("01", "truncated TLV header"),
        ("0105aa", "beyond the input"),
        ("", "missing code"),
        ("01020000", "expected 1 bytes"),
        ("0101000101 01", "appears twice"),
        ("01ff" + "00" * 255 + "0105aa", "runs past the input"),
    ],
)
def test_malformed_input(data: str, message: str) -> None:
    """Malformed TLVs raise TLVError saying what is wrong."""
    with pytest.raises(TLVError, match=message):
        Outer.decode(bytes.fromhex(data.replace(" ", "")))


@given(st.binary(max_size=600))
def test_arbitrary_bytes_only_raise_tlv_error(data: bytes) -> None:
    """Decoding never raises anything but TLVError."""
    with contextlib.suppress(TLVError):
        Outer.decode(data)


@given(st.lists(st.tuples(st.integers(1, 254), st.binary(max_size=700)), max_size=8))
def test_item_round_trip(items: list[tuple[int, bytes]]) -> None:
    """Encoded items decode to the same items when neighbours differ in type."""
    deduped: list[tuple[int, bytes]] = []
    for item in items:
        if not deduped or deduped[-1][0] != item[0]:
            deduped.append(item)
    data = b"".join(encode_item(t, v) for t, v in deduped)
    assert list(iter_items(data)) == deduped
