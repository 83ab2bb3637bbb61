"""Every parser of controller input raises only its own error type, whatever it is given."""

from __future__ import annotations

import base64
import contextlib
from dataclasses import fields, replace
import inspect
from typing import Any

from hypothesis import given, settings, strategies as st
import pytest

from custom_components.hksv.hap import data_stream_setup, recording_config, rtp_stream, tlv8
from custom_components.hksv.hap.data_stream_setup import SetupDataStreamRequest, answer_setup
from custom_components.hksv.hap.definitions import HapStatusError
from custom_components.hksv.hap.recording_config import (
    SelectionError,
    SourceVideo,
    VideoAttributes,
    build_offer,
    parse_selection,
)
from custom_components.hksv.hap.tlv8 import U8, Bytes, Nested, TLVError, TLVStruct, decode_list

from .mutations import tlv_bytes, written_values
from .test_recording_config import HUB_WRITE
from .test_rtp_stream import ENDPOINTS_RESPONSE, IOS_START

SETUP_REQUEST = SetupDataStreamRequest(
    command=0, transport_type=0, controller_key_salt=bytes(range(32))
).encode()
OFFER = build_offer(SourceVideo(), max_height=1080, prebuffer_ms=4000, doorbell=True)
_HUB = parse_selection(HUB_WRITE)
# The real hub write, at a resolution this offer has.
SELECTION = replace(
    _HUB,
    video=replace(_HUB.video, attributes=[VideoAttributes(width=1920, height=1080, frame_rate=30)]),
).encode()


def _structs(*modules: Any) -> list[type[TLVStruct]]:
    """Return every TLV structure a module declares."""
    return [
        obj
        for module in modules
        for _, obj in inspect.getmembers(module, inspect.isclass)
        if issubclass(obj, TLVStruct) and obj is not TLVStruct and obj.__module__ == module.__name__
    ]


STRUCTS = _structs(recording_config, data_stream_setup, rtp_stream)


@pytest.mark.parametrize("struct", STRUCTS, ids=lambda s: s.__name__)
@settings(max_examples=40)
@given(
    data=st.one_of(
        tlv_bytes(SELECTION),
        tlv_bytes(SETUP_REQUEST),
        tlv_bytes(IOS_START),
        tlv_bytes(ENDPOINTS_RESPONSE),
    )
)
def test_tlv_structures_raise_only_tlv_error(struct: type[TLVStruct], data: bytes) -> None:
    """Decoding any bytes as any declared structure gives a value or a TLVError."""
    try:
        value = struct.decode(data)
    except TLVError:
        return
    assert {f.name for f in fields(value)}  # type: ignore[arg-type]


@given(data=st.binary(max_size=200), tlv_type=st.integers(0, 255))
def test_bare_lists_raise_only_tlv_error(data: bytes, tlv_type: int) -> None:
    """decode_list of any bytes gives items or a TLVError."""
    for kind in (U8, Bytes(2), Nested(SetupDataStreamRequest)):
        with contextlib.suppress(TLVError):
            decode_list(data, kind, tlv_type)


@settings(max_examples=200)
@given(data=tlv_bytes(SELECTION))
def test_selection_raises_only_selection_error(data: bytes) -> None:
    """A hub's selection is parsed and checked against the offer, or refused as SelectionError."""
    with contextlib.suppress(SelectionError):
        OFFER.validate(parse_selection(data))


def _prepare(salt: bytes) -> tuple[int, bytes]:
    """Answer a session request like the HDS server would."""
    assert len(salt) == data_stream_setup.SALT_LENGTH
    return 12345, bytes(32)


@settings(max_examples=200)
@given(value=written_values(SETUP_REQUEST))
def test_data_stream_setup_raises_only_hap_status_error(value: Any) -> None:
    """Any written value gives an answer or a HapStatusError, never a bare ValueError."""
    try:
        response, read_back = answer_setup(value, _prepare)
    except HapStatusError:
        return
    assert base64.b64decode(response) and base64.b64decode(read_back)


@pytest.mark.parametrize("text", ["é", "AAAA\u0660", "\ud7ff==", "AQEAAgEAAyA\u00e9"])
def test_non_ascii_setup_value_is_a_hap_status(text: str) -> None:
    """Non-ASCII text (which base64 rejects with a plain ValueError) is a HAP refusal."""
    with pytest.raises(HapStatusError):
        answer_setup(text, _prepare)


def test_the_seeds_are_valid() -> None:
    """The mutation seeds parse, so mutations start from real writes."""
    OFFER.validate(parse_selection(SELECTION))
    assert tlv8.iter_items(SETUP_REQUEST)
    assert answer_setup(base64.b64encode(SETUP_REQUEST).decode(), _prepare)
