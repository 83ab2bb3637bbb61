"""Sensors: the Home-app camera mode and the last recording."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Self

from homeassistant.components.sensor import (
    SensorDeviceClass,
    SensorEntity,
    SensorEntityDescription,
    SensorStateClass,
)
from homeassistant.const import EntityCategory, Platform, UnitOfInformation
from homeassistant.core import HomeAssistant
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entity_platform import AddConfigEntryEntitiesCallback
from homeassistant.helpers.restore_state import ExtraStoredData, RestoreEntity
from homeassistant.util import dt as dt_util

from .archive.retention import CameraUsage
from .bridge import CameraBridge, HksvConfigEntry
from .const import DOMAIN
from .entity import HksvEntity
from .hap.camera_state import HomeAppMode
from .recording.summary import RecordingOutcome

PARALLEL_UPDATES = 0
REMOVED_SETUP_CODE_KEY = "setup_code"


@dataclass(frozen=True, kw_only=True)
class HksvSensorEntityDescription(SensorEntityDescription):
    """Describes an HKSV sensor."""

    value_fn: Callable[[CameraBridge], str | int | float | datetime | None]
    attributes_fn: Callable[[CameraBridge], dict[str, Any] | None] = lambda _: None
    available_fn: Callable[[CameraBridge], bool] = lambda _: True


def _mode(bridge: CameraBridge) -> str | None:
    """Return the Home-app mode."""
    return bridge.accessory.state.mode.value if bridge.accessory else None


def _last_recording(bridge: CameraBridge) -> str | None:
    """Return how the last recording ended."""
    summary = bridge.recorder.last_recording if bridge.recorder else None
    return summary.outcome.value if summary and summary.outcome else None


def _last_recording_attributes(bridge: CameraBridge) -> dict[str, Any] | None:
    """Return the last recording's details."""
    summary = bridge.recorder.last_recording if bridge.recorder else None
    return summary.as_attributes() if summary else None


def _live_viewers(bridge: CameraBridge) -> int | None:
    """Return how many are watching live."""
    return bridge.live.viewers if bridge.live else None


def _live_attributes(bridge: CameraBridge) -> dict[str, Any] | None:
    """Return who is watching and how (full numbers are in the diagnostics)."""
    if bridge.live is None:
        return None
    return {"sessions": bridge.live.viewer_summaries(), "last_ended": bridge.live.last_ended()}


def _archive_usage(bridge: CameraBridge) -> CameraUsage | None:
    """Return the camera's part of the local archive (archive/)."""
    archive = bridge.archive
    return archive.archive.usage(archive.folder) if archive is not None else None


def _archive_megabytes(bridge: CameraBridge) -> float | None:
    usage = _archive_usage(bridge)
    return round(usage.bytes / 1024**2, 1) if usage is not None else None


def _archive_clips(bridge: CameraBridge) -> int | None:
    usage = _archive_usage(bridge)
    return usage.clips if usage is not None else None


def _archive_oldest(bridge: CameraBridge) -> datetime | None:
    usage = _archive_usage(bridge)
    if usage is None or usage.oldest is None:
        return None
    return usage.oldest.replace(tzinfo=dt_util.get_default_time_zone())


def _archive_attributes(bridge: CameraBridge) -> dict[str, Any] | None:
    """Return when the archive was last cleaned up and its last error."""
    archive = bridge.archive
    if archive is None:
        return None
    stats = archive.archive.stats
    return {
        "last_cleanup": stats.last_cleanup.isoformat() if stats.last_cleanup else None,
        "last_error": archive.last_error,
        "archive_total_megabytes": round(stats.total_bytes / 1024**2, 1),
    }


SENSORS: tuple[HksvSensorEntityDescription, ...] = (
    HksvSensorEntityDescription(
        key="archive_size",
        translation_key="archive_size",
        device_class=SensorDeviceClass.DATA_SIZE,
        native_unit_of_measurement=UnitOfInformation.MEBIBYTES,
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_archive_megabytes,
        attributes_fn=_archive_attributes,
    ),
    HksvSensorEntityDescription(
        key="archive_clips",
        translation_key="archive_clips",
        state_class=SensorStateClass.MEASUREMENT,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_archive_clips,
    ),
    HksvSensorEntityDescription(
        key="archive_oldest",
        translation_key="archive_oldest",
        device_class=SensorDeviceClass.TIMESTAMP,
        entity_category=EntityCategory.DIAGNOSTIC,
        value_fn=_archive_oldest,
    ),
    HksvSensorEntityDescription(
        key="home_app_mode",
        translation_key="home_app_mode",
        device_class=SensorDeviceClass.ENUM,
        options=[mode.value for mode in HomeAppMode],
        value_fn=_mode,
    ),
    HksvSensorEntityDescription(
        key="last_recording",
        translation_key="last_recording",
        device_class=SensorDeviceClass.ENUM,
        options=[outcome.value for outcome in RecordingOutcome],
        value_fn=_last_recording,
        attributes_fn=_last_recording_attributes,
        available_fn=lambda bridge: bridge.camera_available,
    ),
    HksvSensorEntityDescription(
        key="live_viewers",
        translation_key="live_viewers",
        state_class=SensorStateClass.MEASUREMENT,
        value_fn=_live_viewers,
        attributes_fn=_live_attributes,
        available_fn=lambda bridge: bridge.camera_available,
    ),
)


async def async_setup_entry(
    hass: HomeAssistant,
    entry: HksvConfigEntry,
    async_add_entities: AddConfigEntryEntitiesCallback,
) -> None:
    """Add the sensors."""
    # Older versions had a setup-code sensor, which put the code in the recorder's history.
    registry = er.async_get(hass)
    if old := registry.async_get_entity_id(
        Platform.SENSOR, DOMAIN, f"{entry.entry_id}_{REMOVED_SETUP_CODE_KEY}"
    ):
        registry.async_remove(old)
    async_add_entities(
        (LastRecordingSensor if description.key == "last_recording" else HksvSensor)(
            entry.runtime_data, description
        )
        for description in SENSORS
    )


class HksvSensor(HksvEntity, SensorEntity):
    """A sensor of an HKSV camera."""

    entity_description: HksvSensorEntityDescription

    @property
    def available(self) -> bool:
        """Return availability."""
        return self.entity_description.available_fn(self.bridge)

    @property
    def native_value(self) -> str | int | float | datetime | None:
        """Return the state."""
        return self.entity_description.value_fn(self.bridge)

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Return details."""
        return self.entity_description.attributes_fn(self.bridge)


@dataclass(frozen=True, slots=True)
class LastRecordingData(ExtraStoredData):
    """The last clip's outcome and details, kept across restarts.

    Stored apart from the entity state: while the camera is unavailable the state is
    ``unavailable`` without attributes, and a restart then would forget the clip.
    """

    outcome: str
    attributes: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        """Return the stored form."""
        return {"outcome": self.outcome, "attributes": self.attributes}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self | None:
        """Return the data, or None when it is not a known outcome with a dict of details."""
        outcome, attributes = data.get("outcome"), data.get("attributes")
        if outcome not in set(RecordingOutcome) or not isinstance(attributes, dict):
            return None
        return cls(outcome=str(outcome), attributes=attributes)


class LastRecordingSensor(HksvSensor, RestoreEntity):
    """How the last recording ended; after a restart, the clip from before it."""

    _restored: LastRecordingData | None = None

    async def async_added_to_hass(self) -> None:
        """Restore the last clip (shown until the next recording ends)."""
        await super().async_added_to_hass()
        if (stored := await self.async_get_last_extra_data()) is not None:
            self._restored = LastRecordingData.from_dict(stored.as_dict())

    @property
    def native_value(self) -> str | int | float | datetime | None:
        """Return the last outcome, the restored one until a recording ends."""
        value = super().native_value
        if value is None and self._restored is not None:
            return self._restored.outcome
        return value

    @property
    def extra_state_attributes(self) -> dict[str, Any] | None:
        """Return the last recording's details, the restored ones until a recording ends."""
        attributes = super().extra_state_attributes
        if attributes is None and self._restored is not None:
            return self._restored.attributes
        return attributes

    @property
    def extra_restore_state_data(self) -> LastRecordingData | None:
        """Return what to keep for the next start."""
        outcome = self.native_value
        attributes = self.extra_state_attributes
        if not isinstance(outcome, str) or attributes is None:
            return None
        return LastRecordingData(outcome=outcome, attributes=attributes)
