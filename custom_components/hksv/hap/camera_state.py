"""The camera's HomeKit state: Home-app modes, snapshot rules and what is persisted.

Pure data and functions (no HAP-python, no Home Assistant) so the rules of
docs/hksv-protocol.md §2.4, §6.1 and §6.2 are tested on their own.
"""

from __future__ import annotations

import base64
from dataclasses import asdict, dataclass, replace
from enum import IntEnum, StrEnum
from typing import Any, Final

from .definitions import HapStatus

STATE_VERSION: Final = 1


class HomeAppMode(StrEnum):
    """The four camera states the Home app offers (§6.2)."""

    OFF = "off"
    DETECT_ACTIVITY = "detect_activity"
    STREAM = "stream"
    STREAM_AND_RECORD = "stream_and_record"


class SnapshotReason(IntEnum):
    """Why a controller asks for a snapshot (HAP-NodeJS ResourceRequestReason)."""

    PERIODIC = 0
    EVENT = 1


@dataclass(frozen=True, slots=True)
class CameraState:
    """Every characteristic value that must survive a restart, plus the selection."""

    recording_active: bool = False
    recording_audio_active: bool = False
    event_snapshots_active: bool = True
    periodic_snapshots_active: bool = True
    homekit_camera_active: bool = True
    rtp_active: bool = True
    selected_configuration: bytes | None = None
    offer_fingerprint: str | None = None

    @property
    def mode(self) -> HomeAppMode:
        """Return the Home-app state these values make (§6.2's table)."""
        if not self.homekit_camera_active:
            return HomeAppMode.OFF
        if not self.rtp_active:
            return HomeAppMode.DETECT_ACTIVITY
        if not self.recording_active:
            return HomeAppMode.STREAM
        return HomeAppMode.STREAM_AND_RECORD

    @property
    def recording_possible(self) -> bool:
        """Return True if a hub may open a recording now (the prebuffer should run)."""
        return (
            self.recording_active
            and self.homekit_camera_active
            and self.selected_configuration is not None
        )

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict for storage."""
        data = asdict(self)
        if self.selected_configuration is not None:
            data["selected_configuration"] = base64.b64encode(self.selected_configuration).decode()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CameraState:
        """Restore stored values, the selection with the fingerprint of the offer it chose from.

        A selection made from another offer is kept: the accessory checks it against the
        current offer (an older version's offer, or changed options, may still allow it).
        """
        defaults = cls()
        selected: bytes | None = None
        raw = data.get("selected_configuration")
        stored_fingerprint = data.get("offer_fingerprint")
        if isinstance(raw, str):
            try:
                selected = base64.b64decode(raw, validate=True)
            except ValueError:  # binascii.Error, or non-ASCII text
                selected = None

        def flag(name: str) -> bool:
            value = data.get(name)
            return value if isinstance(value, bool) else bool(getattr(defaults, name))

        return cls(
            recording_active=flag("recording_active"),
            recording_audio_active=flag("recording_audio_active"),
            event_snapshots_active=flag("event_snapshots_active"),
            periodic_snapshots_active=flag("periodic_snapshots_active"),
            homekit_camera_active=flag("homekit_camera_active"),
            rtp_active=flag("rtp_active"),
            selected_configuration=selected,
            offer_fingerprint=(
                stored_fingerprint
                if selected is not None and isinstance(stored_fingerprint, str)
                else None
            ),
        )

    def with_selection(self, value: bytes | None, fingerprint: str | None) -> CameraState:
        """Return a copy with a new selection (or none) tied to the offer's fingerprint."""
        return replace(
            self,
            selected_configuration=value,
            offer_fingerprint=fingerprint if value is not None else None,
        )


_KNOWN_REASONS: Final = frozenset(SnapshotReason)

# What removing the last pairing restores (HAP-NodeJS factory reset, §2.4).
FACTORY_STATE: Final = CameraState()


def snapshot_refusal(state: CameraState, reason: int | None) -> HapStatus | None:
    """Return the HAP status refusing a snapshot request, or None to serve it (§6.1)."""
    if not state.rtp_active:
        return HapStatus.NOT_ALLOWED_IN_CURRENT_STATE
    if not state.homekit_camera_active:
        # HAP-NodeJS checks this only once recording is configured; a camera the user
        # turned off must not hand out pictures either way.
        return HapStatus.NOT_ALLOWED_IN_CURRENT_STATE
    if reason is not None and reason not in _KNOWN_REASONS:
        # A reason HomeKit does not define cannot say which switch applies: treat it as
        # missing, refused whenever either kind of snapshot is off.
        reason = None
    if not state.event_snapshots_active:
        if reason is None:
            return HapStatus.INSUFFICIENT_PRIVILEGES
        if reason == SnapshotReason.EVENT:
            return HapStatus.NOT_ALLOWED_IN_CURRENT_STATE
    if not state.periodic_snapshots_active:
        if reason is None:
            return HapStatus.INSUFFICIENT_PRIVILEGES
        if reason == SnapshotReason.PERIODIC:
            return HapStatus.NOT_ALLOWED_IN_CURRENT_STATE
    return None
