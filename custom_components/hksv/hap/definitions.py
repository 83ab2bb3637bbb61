"""HKSV services and characteristics: UUIDs, formats, permissions and stable IIDs.

HAP-python ships none of the HKSV definitions (docs/home-assistant.md §3.1). Types and
permissions follow HAP-NodeJS (docs/hksv-protocol.md §1). IIDs come from a fixed table rather
than a counter, so adding a doorbell later, or reordering code, never renumbers what a hub
already knows (user settings in the Home app are keyed by IID).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, Final
from uuid import UUID

from pyhap.characteristic import Characteristic
from pyhap.iid_manager import IIDManager
from pyhap.service import Service

BASE_UUID_SUFFIX: Final = "-0000-1000-8000-0026BB765291"


def hap_uuid(short: str) -> UUID:
    """Expand a short HAP type such as ``"21A"`` to its full UUID."""
    return UUID(short.rjust(8, "0") + BASE_UUID_SUFFIX)


class HapStatus(IntEnum):
    """HAP status codes (HAP spec Table 6-11)."""

    SUCCESS = 0
    INSUFFICIENT_PRIVILEGES = -70401
    SERVICE_COMMUNICATION_FAILURE = -70402
    RESOURCE_BUSY = -70403
    READ_ONLY_CHARACTERISTIC = -70404
    WRITE_ONLY_CHARACTERISTIC = -70405
    NOTIFICATION_NOT_SUPPORTED = -70406
    OUT_OF_RESOURCE = -70407
    OPERATION_TIMED_OUT = -70408
    RESOURCE_DOES_NOT_EXIST = -70409
    INVALID_VALUE_IN_REQUEST = -70410
    INSUFFICIENT_AUTHORIZATION = -70411
    NOT_ALLOWED_IN_CURRENT_STATE = -70412


class HapStatusError(Exception):
    """Raised by a read or write handler to answer with a specific HAP status."""

    def __init__(self, status: HapStatus, message: str = "") -> None:
        """Create the error."""
        super().__init__(message or status.name)
        self.status = status


PR: Final = "pr"
PW: Final = "pw"
EV: Final = "ev"
TW: Final = "tw"  # timed write: the write must follow a /prepare with the same pid
WR: Final = "wr"  # write response


@dataclass(frozen=True, slots=True)
class CharSpec:
    """A characteristic type as hksv publishes it."""

    name: str
    short_uuid: str
    format: str
    perms: tuple[str, ...]
    admin_write: bool = False
    props: dict[str, Any] = field(default_factory=dict)

    @property
    def uuid(self) -> UUID:
        """Return the full UUID."""
        return hap_uuid(self.short_uuid)

    def create(self) -> Characteristic:
        """Return a new pyhap Characteristic for this spec."""
        properties: dict[str, Any] = {"Format": self.format, "Permissions": list(self.perms)}
        properties.update(self.props)
        return Characteristic(self.name, self.uuid, properties)


_BOOL_VALUES: Final = {"minValue": 0, "maxValue": 1, "minStep": 1}

# AccessoryInformation and ProtocolInformation come from HAP-python's loader.
FIRMWARE_REVISION: Final = "0.1.0"
PROTOCOL_VERSION: Final = "1.1.0"

# CameraRTPStreamManagement (§1.4)
RTP_ACTIVE: Final = CharSpec("Active", "B0", "uint8", (PR, PW, EV), True, _BOOL_VALUES)
STREAMING_STATUS: Final = CharSpec("StreamingStatus", "120", "tlv8", (PR, EV))
SUPPORTED_VIDEO_STREAM: Final = CharSpec("SupportedVideoStreamConfiguration", "114", "tlv8", (PR,))
SUPPORTED_AUDIO_STREAM: Final = CharSpec("SupportedAudioStreamConfiguration", "115", "tlv8", (PR,))
SUPPORTED_RTP: Final = CharSpec("SupportedRTPConfiguration", "116", "tlv8", (PR,))
SELECTED_RTP_STREAM: Final = CharSpec("SelectedRTPStreamConfiguration", "117", "tlv8", (PR, PW))
SETUP_ENDPOINTS: Final = CharSpec("SetupEndpoints", "118", "tlv8", (PR, PW))

# Microphone (live view audio): Mute only.
MUTE: Final = CharSpec("Mute", "11A", "bool", (PR, PW, EV))

# CameraOperatingMode (§1.1); HAP-NodeJS overrides the iOS bool+tw to uint8 without tw.
EVENT_SNAPSHOTS_ACTIVE: Final = CharSpec(
    "EventSnapshotsActive", "223", "uint8", (PR, PW, EV), True, _BOOL_VALUES
)
HOMEKIT_CAMERA_ACTIVE: Final = CharSpec(
    "HomeKitCameraActive", "21B", "uint8", (PR, PW, EV), True, _BOOL_VALUES
)
PERIODIC_SNAPSHOTS_ACTIVE: Final = CharSpec(
    "PeriodicSnapshotsActive", "225", "uint8", (PR, PW, EV), True, _BOOL_VALUES
)

# CameraEventRecordingManagement (§1.2)
RECORDING_ACTIVE: Final = CharSpec("Active", "B0", "uint8", (PR, PW, EV), True, _BOOL_VALUES)
SUPPORTED_CAMERA_RECORDING: Final = CharSpec(
    "SupportedCameraRecordingConfiguration", "205", "tlv8", (PR, EV)
)
SUPPORTED_VIDEO_RECORDING: Final = CharSpec(
    "SupportedVideoRecordingConfiguration", "206", "tlv8", (PR, EV)
)
SUPPORTED_AUDIO_RECORDING: Final = CharSpec(
    "SupportedAudioRecordingConfiguration", "207", "tlv8", (PR, EV)
)
SELECTED_CAMERA_RECORDING: Final = CharSpec(
    "SelectedCameraRecordingConfiguration", "209", "tlv8", (PR, PW, EV), True
)
RECORDING_AUDIO_ACTIVE: Final = CharSpec(
    "RecordingAudioActive", "226", "uint8", (PR, PW, EV, TW), False, _BOOL_VALUES
)

# DataStreamTransportManagement (§1.3)
SETUP_DATA_STREAM_TRANSPORT: Final = CharSpec(
    "SetupDataStreamTransport", "131", "tlv8", (PR, PW, WR)
)
SUPPORTED_DATA_STREAM_TRANSPORT: Final = CharSpec(
    "SupportedDataStreamTransportConfiguration", "130", "tlv8", (PR,)
)
DATA_STREAM_VERSION: Final = CharSpec("Version", "37", "string", (PR,), props={"maxLen": 64})

# MotionSensor (§1.5) and Doorbell (§1.6)
MOTION_DETECTED: Final = CharSpec("MotionDetected", "22", "bool", (PR, EV))
STATUS_ACTIVE: Final = CharSpec("StatusActive", "75", "bool", (PR, EV))
PROGRAMMABLE_SWITCH_EVENT: Final = CharSpec(
    "ProgrammableSwitchEvent", "73", "uint8", (PR, EV), props={"minValue": 0, "maxValue": 2}
)

SERVICE_ACCESSORY_INFORMATION: Final = "3E"
SERVICE_PROTOCOL_INFORMATION: Final = "A2"
SERVICE_RTP_STREAM_MANAGEMENT: Final = "110"
SERVICE_OPERATING_MODE: Final = "21A"
SERVICE_RECORDING_MANAGEMENT: Final = "204"
SERVICE_DATA_STREAM_MANAGEMENT: Final = "129"
SERVICE_MOTION_SENSOR: Final = "85"
SERVICE_DOORBELL: Final = "121"
SERVICE_MICROPHONE: Final = "112"
# Up to five CameraRTPStreamManagement services (one per concurrent live view, Apple's 2026
# guide asks for five); the first keeps IIDs 16-23, the others get blocks from RTP_SLOT_IID_BASE.
MAX_RTP_SLOTS: Final = 5
RTP_SLOT_IID_BASE: Final = 100
RTP_SLOT_IID_STEP: Final = 10
RTP_SLOT_CHARS: Final = ("B0", "120", "114", "115", "116", "117", "118")

# (service, characteristic or None for the service itself) -> IID. Never renumber an entry.
IID_TABLE: Final[dict[tuple[str, str | None], int]] = {
    (SERVICE_ACCESSORY_INFORMATION, None): 1,
    (SERVICE_ACCESSORY_INFORMATION, "14"): 2,  # Identify
    (SERVICE_ACCESSORY_INFORMATION, "20"): 3,  # Manufacturer
    (SERVICE_ACCESSORY_INFORMATION, "21"): 4,  # Model
    (SERVICE_ACCESSORY_INFORMATION, "23"): 5,  # Name
    (SERVICE_ACCESSORY_INFORMATION, "30"): 6,  # SerialNumber
    (SERVICE_ACCESSORY_INFORMATION, "52"): 7,  # FirmwareRevision
    (SERVICE_PROTOCOL_INFORMATION, None): 10,
    (SERVICE_PROTOCOL_INFORMATION, "37"): 11,
    (SERVICE_RTP_STREAM_MANAGEMENT, None): 16,
    (SERVICE_RTP_STREAM_MANAGEMENT, "B0"): 17,
    (SERVICE_RTP_STREAM_MANAGEMENT, "120"): 18,
    (SERVICE_RTP_STREAM_MANAGEMENT, "114"): 19,
    (SERVICE_RTP_STREAM_MANAGEMENT, "115"): 20,
    (SERVICE_RTP_STREAM_MANAGEMENT, "116"): 21,
    (SERVICE_RTP_STREAM_MANAGEMENT, "117"): 22,
    (SERVICE_RTP_STREAM_MANAGEMENT, "118"): 23,
    (SERVICE_OPERATING_MODE, None): 40,
    (SERVICE_OPERATING_MODE, "223"): 41,
    (SERVICE_OPERATING_MODE, "21B"): 42,
    (SERVICE_OPERATING_MODE, "225"): 43,
    (SERVICE_RECORDING_MANAGEMENT, None): 50,
    (SERVICE_RECORDING_MANAGEMENT, "B0"): 51,
    (SERVICE_RECORDING_MANAGEMENT, "205"): 52,
    (SERVICE_RECORDING_MANAGEMENT, "206"): 53,
    (SERVICE_RECORDING_MANAGEMENT, "207"): 54,
    (SERVICE_RECORDING_MANAGEMENT, "209"): 55,
    (SERVICE_RECORDING_MANAGEMENT, "226"): 56,
    (SERVICE_DATA_STREAM_MANAGEMENT, None): 60,
    (SERVICE_DATA_STREAM_MANAGEMENT, "131"): 61,
    (SERVICE_DATA_STREAM_MANAGEMENT, "130"): 62,
    (SERVICE_DATA_STREAM_MANAGEMENT, "37"): 63,
    (SERVICE_MOTION_SENSOR, None): 70,
    (SERVICE_MOTION_SENSOR, "22"): 71,
    (SERVICE_MOTION_SENSOR, "75"): 72,
    (SERVICE_DOORBELL, None): 80,
    (SERVICE_DOORBELL, "73"): 81,
    (SERVICE_MICROPHONE, None): 90,
    (SERVICE_MICROPHONE, "11A"): 91,
}


def rtp_slot_iid(slot: int, char_type: str | None) -> int:
    """Return the fixed IID of stream slot ``slot`` (0-based) or one of its characteristics."""
    if slot == 0:
        return IID_TABLE[(SERVICE_RTP_STREAM_MANAGEMENT, char_type)]
    if not 0 < slot < MAX_RTP_SLOTS:
        raise ValueError(f"no stream slot {slot}")
    offset = 0 if char_type is None else 1 + RTP_SLOT_CHARS.index(char_type)
    return RTP_SLOT_IID_BASE + (slot - 1) * RTP_SLOT_IID_STEP + offset


def short_type(type_id: UUID) -> str:
    """Return the short HAP form (``"21A"``) of an Apple-defined UUID."""
    text = str(type_id).upper()
    if not text.endswith(BASE_UUID_SUFFIX):
        return text
    return text[:8].lstrip("0") or "0"


class FixedIIDManager(IIDManager):
    """Assign IIDs from IID_TABLE so they never move between releases or configurations."""

    def __init__(self) -> None:
        """Start with no stream slots registered."""
        super().__init__()
        self._rtp_slots: dict[int, int] = {}

    def register_rtp_slot(self, service: Service, slot: int) -> None:
        """Mark ``service`` as stream slot ``slot`` (before it is added to the accessory)."""
        self._rtp_slots[id(service)] = slot

    def get_iid_for_obj(self, obj: Service | Characteristic) -> int:
        """Return the table IID for ``obj``."""
        if isinstance(obj, Service):
            service = obj
            key: tuple[str, str | None] = (short_type(obj.type_id), None)
        else:
            if obj.service is None:
                raise ValueError(f"characteristic {obj.display_name} has no service")
            service = obj.service
            key = (short_type(obj.service.type_id), short_type(obj.type_id))
        slot = self._rtp_slots.get(id(service))
        if slot is not None:
            return rtp_slot_iid(slot, key[1])
        try:
            return IID_TABLE[key]
        except KeyError as err:
            raise ValueError(f"no fixed IID for {key}; add it to IID_TABLE") from err


def new_service(short_uuid: str, name: str, *specs: CharSpec) -> Service:
    """Return a service holding new characteristics for ``specs``."""
    service = Service(hap_uuid(short_uuid), name)
    service.add_characteristic(*(spec.create() for spec in specs))
    return service
