"""Camera states of the Home app, snapshot rules and persistence (no HAP, no HA)."""

from __future__ import annotations

from dataclasses import replace

from hypothesis import given, strategies as st
import pytest

from custom_components.hksv.hap.camera_state import (
    FACTORY_STATE,
    CameraState,
    HomeAppMode,
    SnapshotReason,
    snapshot_refusal,
)
from custom_components.hksv.hap.definitions import HapStatus

OFF = CameraState(rtp_active=False, homekit_camera_active=False, recording_active=False)
DETECT = CameraState(rtp_active=False, homekit_camera_active=True, recording_active=False)
STREAM = CameraState(rtp_active=True, homekit_camera_active=True, recording_active=False)
RECORD = CameraState(
    rtp_active=True, homekit_camera_active=True, recording_active=True, selected_configuration=b"x"
)


@pytest.mark.parametrize(
    ("state", "mode"),
    [
        (OFF, HomeAppMode.OFF),
        (DETECT, HomeAppMode.DETECT_ACTIVITY),
        (STREAM, HomeAppMode.STREAM),
        (RECORD, HomeAppMode.STREAM_AND_RECORD),
    ],
)
def test_home_app_modes(state: CameraState, mode: HomeAppMode) -> None:
    """The characteristic values map to the Home app's four states (§6.2)."""
    assert state.mode is mode


def test_recording_possible_needs_all_three() -> None:
    """Recording needs Active, HomeKitCameraActive and a selection."""
    assert RECORD.recording_possible
    assert not replace(RECORD, recording_active=False).recording_possible
    assert not replace(RECORD, homekit_camera_active=False).recording_possible
    assert not replace(RECORD, selected_configuration=None).recording_possible


@pytest.mark.parametrize(
    ("state", "reason", "expected"),
    [
        (STREAM, None, None),
        (STREAM, SnapshotReason.PERIODIC, None),
        (STREAM, SnapshotReason.EVENT, None),
        (DETECT, None, HapStatus.NOT_ALLOWED_IN_CURRENT_STATE),
        (OFF, SnapshotReason.EVENT, HapStatus.NOT_ALLOWED_IN_CURRENT_STATE),
        (replace(RECORD, homekit_camera_active=False), 0, HapStatus.NOT_ALLOWED_IN_CURRENT_STATE),
        (replace(STREAM, event_snapshots_active=False), None, HapStatus.INSUFFICIENT_PRIVILEGES),
        (replace(STREAM, event_snapshots_active=False), 1, HapStatus.NOT_ALLOWED_IN_CURRENT_STATE),
        (replace(STREAM, event_snapshots_active=False), 0, None),
        (replace(STREAM, periodic_snapshots_active=False), None, HapStatus.INSUFFICIENT_PRIVILEGES),
        (
            replace(STREAM, periodic_snapshots_active=False),
            0,
            HapStatus.NOT_ALLOWED_IN_CURRENT_STATE,
        ),
        (replace(STREAM, periodic_snapshots_active=False), 1, None),
    ],
)
def test_snapshot_rules(state: CameraState, reason: int | None, expected: HapStatus | None) -> None:
    """Snapshot refusals follow HAP-NodeJS's order (§6.1)."""
    assert snapshot_refusal(state, reason) == expected


def test_round_trip_and_fingerprint() -> None:
    """Stored state comes back, the selection with the fingerprint of the offer it chose from.

    Whether a selection still fits the current offer is the accessory's check
    (tests/test_offer.py), not a fingerprint comparison.
    """
    state = replace(RECORD, recording_audio_active=True, offer_fingerprint="abc")
    stored = state.to_dict()
    assert CameraState.from_dict(stored) == state
    no_fingerprint = CameraState.from_dict({**stored, "offer_fingerprint": 7})
    assert no_fingerprint.selected_configuration == RECORD.selected_configuration
    assert no_fingerprint.offer_fingerprint is None


@pytest.mark.parametrize(
    "stored",
    [{}, {"recording_active": "yes", "selected_configuration": "!!!", "offer_fingerprint": "abc"}],
)
def test_corrupt_storage_falls_back_to_defaults(stored: dict[str, object]) -> None:
    """Garbage in storage gives factory values, never an exception."""
    assert CameraState.from_dict(stored) == FACTORY_STATE


@given(
    reason=st.integers().filter(lambda r: r not in (SnapshotReason.PERIODIC, SnapshotReason.EVENT)),
    event_on=st.booleans(),
    periodic_on=st.booleans(),
)
def test_unknown_reasons_are_refused_when_either_kind_is_off(
    reason: int, event_on: bool, periodic_on: bool
) -> None:
    """A reason HomeKit does not define cannot slip past a snapshot switch that is off."""
    state = replace(STREAM, event_snapshots_active=event_on, periodic_snapshots_active=periodic_on)
    refusal = snapshot_refusal(state, reason)
    if event_on and periodic_on:
        assert refusal is None
    else:
        assert refusal == snapshot_refusal(state, None) == HapStatus.INSUFFICIENT_PRIVILEGES


@pytest.mark.parametrize("garbage", ["é", "\u0660\u0661", "AA==\x00"])
def test_non_ascii_stored_selection_is_dropped(garbage: str) -> None:
    """Stored text base64 cannot decode (even non-ASCII) loses the selection, nothing else."""
    stored = {**RECORD.to_dict(), "selected_configuration": garbage, "offer_fingerprint": "abc"}
    restored = CameraState.from_dict(stored)
    assert restored.selected_configuration is None
    assert restored.recording_active
