"""The HKSV camera accessory: its services, the camera-state machine and persistence.

One standalone accessory (AID 1) per camera. Setters run on the event loop and stay O(1):
validate, store, notify, and hand anything slow to the owner through ``CameraOwner``. The
services are built by concern: ``recording_services.py`` (recording management and the data
stream), ``rtp_services.py`` (live view's stream slots and Microphone), ``snapshots.py``; every
writable characteristic has a policy (``characteristic_policy.py``) the driver applies.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
import logging
from typing import TYPE_CHECKING, Any, Protocol, cast

from pyhap.accessory import Accessory
from pyhap.const import CATEGORY_CAMERA, CATEGORY_VIDEO_DOOR_BELL, STANDALONE_AID
from pyhap.hap_handler import HAPResponse

from ..hds import DataSendCloseReason, HDSError, RecordingPacket
from . import definitions as d
from .camera_state import FACTORY_STATE, CameraState
from .characteristic_policy import Policy, b64, uint8_bool
from .definitions import FixedIIDManager, HapStatus, HapStatusError, new_service
from .driver import HapClient
from .recording_config import RecordingOffer, SelectedCameraRecordingConfiguration, SelectionError
from .recording_services import (
    RecordingServices,
    decode_selection,
    restored_selection,
    setup_data_stream,
)
from .rtp_services import LiveStreamDelegate, RtpStreamServices
from .rtp_stream import StreamingState
from .snapshots import SnapshotUnavailable, answer_snapshot

if TYPE_CHECKING:
    from pyhap.characteristic import Characteristic

    from ..hds import DataStreamServer
    from .driver import HksvDriver

_LOGGER = logging.getLogger(__name__)

__all__ = [
    "AccessoryInfo",
    "CameraOwner",
    "HksvCamera",
    "LiveStreamDelegate",  # defined in rtp_services.py; kept importable from here
    "SnapshotUnavailable",  # defined in snapshots.py; bridge.py imports it from here
]


@dataclass(frozen=True, slots=True)
class AccessoryInfo:
    """What the AccessoryInformation service shows, and which optional services exist."""

    name: str
    manufacturer: str
    model: str
    serial_number: str
    firmware_revision: str
    doorbell: bool
    stream_slots: int = 1  # CameraRTPStreamManagement services: concurrent live views
    microphone: bool = False  # a Microphone service, when live audio is offered


class CameraOwner(Protocol):
    """What the accessory needs from whoever runs it (the bridge)."""

    def state_changed(self, state: CameraState, previous: CameraState) -> None:
        """Persist ``state`` and react to recording becoming possible or not."""

    async def async_snapshot(self, width: int, height: int) -> bytes:
        """Return a JPEG of the camera at about this size, or raise SnapshotUnavailable."""

    def recording_stream_request(
        self, stream_id: int, selection: SelectedCameraRecordingConfiguration, audio: bool
    ) -> AsyncIterator[RecordingPacket]:
        """Return the recording: init, then fragments."""

    def recording_stream_acknowledged(self, stream_id: int) -> None:
        """Tell the owner the hub acknowledged the end of a stream."""

    def recording_stream_closed(self, stream_id: int, reason: DataSendCloseReason | None) -> None:
        """Tell the owner how a recording stream ended."""

    def recording_stream_refused(self, stream_id: int, reason: DataSendCloseReason) -> None:
        """Tell the owner a hub's open was refused (e.g. nothing selected)."""


class HksvCamera(Accessory):
    """A HomeKit Secure Video camera accessory."""

    def __init__(
        self,
        driver: HksvDriver,
        info: AccessoryInfo,
        state: CameraState,
        offer: RecordingOffer,
        owner: CameraOwner,
    ) -> None:
        """Build every service with fixed IIDs; runs in an executor (the loader reads files)."""
        super().__init__(driver, info.name, aid=STANDALONE_AID, iid_manager=FixedIIDManager())
        self.category = CATEGORY_VIDEO_DOOR_BELL if info.doorbell else CATEGORY_CAMERA
        self._owner = owner
        self._state = state
        self._offer = offer
        self._selection: SelectedCameraRecordingConfiguration | None = None
        self.data_stream: DataStreamServer | None = None
        self.live: LiveStreamDelegate | None = None
        self._policies: dict[Characteristic, Policy] = {}
        self.set_info_service(
            firmware_revision=info.firmware_revision,
            manufacturer=info.manufacturer,
            model=info.model,
            serial_number=info.serial_number,
        )
        # HAP-python writes "01.01.00"; hubs expect the dotted "1.1.0" (docs/peers.md §3 #3).
        protocol = self.get_service("HAPProtocolInformation")
        if protocol is not None:
            protocol.configure_char("Version", value=d.PROTOCOL_VERSION)
        self._build_services(info)
        self._apply_state_to_characteristics(notify=False)
        if state.selected_configuration is not None:
            self._selection = self._restore_selection(state.selected_configuration)

    # -- construction ------------------------------------------------------------------

    def _build_services(self, info: AccessoryInfo) -> None:
        """Create the HKSV services (docs/hksv-protocol.md §1, docs/live-view.md §1.1)."""
        doorbell = info.doorbell
        self._rtp = RtpStreamServices(
            cast("FixedIIDManager", self.iid_manager),
            info.stream_slots,
            microphone=info.microphone,
            live=lambda: self.live,
            streaming_on=lambda: self._state.rtp_active and self._state.homekit_camera_active,
        )
        operating = new_service(
            d.SERVICE_OPERATING_MODE,
            "CameraOperatingMode",
            d.EVENT_SNAPSHOTS_ACTIVE,
            d.HOMEKIT_CAMERA_ACTIVE,
            d.PERIODIC_SNAPSHOTS_ACTIVE,
        )
        self._recording = RecordingServices.create()
        recording, data_stream = self._recording.recording, self._recording.data_stream
        motion = new_service(
            d.SERVICE_MOTION_SENSOR, "MotionSensor", d.MOTION_DETECTED, d.STATUS_ACTIVE
        )
        services = [*self._rtp.services, operating, recording, data_stream, motion]
        if self._rtp.microphone is not None:
            services.append(self._rtp.microphone)
        if doorbell:
            services.append(
                new_service(d.SERVICE_DOORBELL, "Doorbell", d.PROGRAMMABLE_SWITCH_EVENT)
            )
        self.add_service(*services)
        recording.add_linked_service(data_stream)
        recording.add_linked_service(motion)
        if doorbell:
            # HAP-NodeJS makes the doorbell primary so the Home app shows a doorbell.
            self.set_primary_service(services[-1])

        chars = {(s.display_name, c.display_name): c for s in services for c in s.characteristics}

        def char(service: str, name: str) -> Characteristic:
            return chars[(service, name)]

        self._rtp_active = self._rtp.active
        self._event_snapshots = char("CameraOperatingMode", "EventSnapshotsActive")
        self._camera_active = char("CameraOperatingMode", "HomeKitCameraActive")
        self._periodic_snapshots = char("CameraOperatingMode", "PeriodicSnapshotsActive")
        self._recording_active = self._recording.active
        self._recording_audio = self._recording.audio_active
        self._selected = self._recording.selected
        self._setup_data_stream = self._recording.setup_data_stream
        self._motion_detected = char("MotionSensor", "MotionDetected")
        self._status_active = char("MotionSensor", "StatusActive")
        self._doorbell_event = char("Doorbell", "ProgrammableSwitchEvent") if doorbell else None

        flag_writers: tuple[tuple[Characteristic, str], ...] = (
            (self._rtp_active, "rtp_active"),
            (self._event_snapshots, "event_snapshots_active"),
            (self._camera_active, "homekit_camera_active"),
            (self._periodic_snapshots, "periodic_snapshots_active"),
            (self._recording_active, "recording_active"),
            (self._recording_audio, "recording_audio_active"),
        )
        for flag_char, field_name in flag_writers:
            self._policies[flag_char] = Policy(
                admin_write=flag_char is not self._recording_audio,
                read=flag_char.get_value,
                write=self._flag_writer(field_name),
            )
        self._policies[self._selected] = Policy(True, self._read_selection, self._write_selection)
        self._policies[self._setup_data_stream] = Policy(
            False, self._setup_data_stream.get_value, self._write_setup_data_stream
        )
        self._policies.update(self._rtp.policies(self._flag_writer("rtp_active")))

    def policy_for(self, char: Characteristic) -> Policy | None:
        """Return how HksvDriver reads and writes ``char``."""
        return self._policies.get(char)

    # -- state ---------------------------------------------------------------------------

    @property
    def state(self) -> CameraState:
        """Return the current camera state."""
        return self._state

    @property
    def offer(self) -> RecordingOffer:
        """Return the current recording offer."""
        return self._offer

    @property
    def selection(self) -> SelectedCameraRecordingConfiguration | None:
        """Return the hub's selected recording configuration, if any."""
        return self._selection

    def _set_state(self, state: CameraState) -> None:
        """Store a new state, update characteristics and tell the owner."""
        previous = self._state
        if state == previous:
            return
        self._state = state
        self._apply_state_to_characteristics(notify=True)
        turned_off = previous.homekit_camera_active and not state.homekit_camera_active
        if turned_off and self.data_stream is not None:
            self.data_stream.close_recording_streams(DataSendCloseReason.NOT_ALLOWED)
        self._owner.state_changed(state, previous)

    def _apply_state_to_characteristics(self, *, notify: bool) -> None:
        """Mirror the state into the characteristics (StatusActive follows camera active)."""
        state = self._state
        self._rtp.mirror_active(state.rtp_active, notify=notify)
        for char, value in (
            (self._rtp_active, state.rtp_active),
            (self._event_snapshots, state.event_snapshots_active),
            (self._camera_active, state.homekit_camera_active),
            (self._periodic_snapshots, state.periodic_snapshots_active),
            (self._recording_active, state.recording_active),
            (self._recording_audio, state.recording_audio_active),
        ):
            char.set_value(int(value), should_notify=notify)
        self._status_active.set_value(state.homekit_camera_active, should_notify=notify)
        self._recording.publish(self._offer, state.selected_configuration, notify=notify)

    def _flag_writer(self, field_name: str) -> Callable[[Any, HapClient], None]:
        """Return a write handler for one 0/1 state characteristic."""

        def write(value: Any, client: HapClient) -> None:
            changes: dict[str, Any] = {field_name: uint8_bool(value)}
            self._set_state(replace(self._state, **changes))

        return write

    def set_camera_active(self, active: bool) -> None:
        """Turn the HomeKit camera on or off from Home Assistant (mirrors StatusActive)."""
        self._set_state(replace(self._state, homekit_camera_active=active))

    def factory_reset(self) -> None:
        """Return to the state of a never-paired camera (last pairing removed, §2.4)."""
        self._selection = None
        self._set_state(FACTORY_STATE)

    def update_offer(self, offer: RecordingOffer) -> None:
        """Publish a new offer; keep the hub's selection while the new offer still allows it.

        A selection the new offer allows goes on recording (the prebuffer keeps running)
        until the hub selects again; one it does not allow is dropped, and opens are refused
        until the hub selects from the new offer.
        """
        if offer.fingerprint == self._offer.fingerprint:
            return
        self._offer = offer
        raw = self._state.selected_configuration
        if raw is None or self._selection is None:
            _LOGGER.info("%s: recording offer changed", self.display_name)
            self._apply_state_to_characteristics(notify=True)
            return
        try:
            offer.validate(self._selection)
        except SelectionError as err:
            _LOGGER.warning(
                "%s: recording offer changed and the hub's selection no longer fits it (%s); "
                "recording waits until the hub selects again",
                self.display_name,
                err,
            )
            self._selection = None
            self._set_state(self._state.with_selection(None, None))  # also republishes
            return
        _LOGGER.info(
            "%s: recording offer changed; the hub's selection still fits it and is kept",
            self.display_name,
        )
        self._set_state(self._state.with_selection(raw, offer.fingerprint))  # also republishes

    # -- recording configuration ----------------------------------------------------------

    def _read_selection(self) -> str:
        """Return the stored selection byte for byte; fail before the hub selected (§2.4)."""
        if self._state.selected_configuration is None:
            raise HapStatusError(HapStatus.SERVICE_COMMUNICATION_FAILURE, "nothing selected")
        return b64(self._state.selected_configuration)

    def _write_selection(self, value: Any, client: HapClient) -> None:
        """Validate a selection against the offer; refuse it with -70410, storing nothing."""
        raw, selection = decode_selection(value, self._offer, self.display_name)
        self._selection = selection
        self._set_state(self._state.with_selection(raw, self._offer.fingerprint))

    def _restore_selection(self, raw: bytes) -> SelectedCameraRecordingConfiguration | None:
        """Keep a persisted selection, tied to this offer, while the offer allows it."""
        selection = restored_selection(raw, self._offer, self.display_name)
        if selection is None:
            self._state = self._state.with_selection(None, None)
            self._selected.set_value("", should_notify=False)
            return None
        self._state = self._state.with_selection(raw, self._offer.fingerprint)
        return selection

    # -- data stream ----------------------------------------------------------------------

    def _write_setup_data_stream(self, value: Any, client: HapClient) -> str:
        """Prepare an HDS session for the writing connection and answer with port and salt."""
        response, read_back = setup_data_stream(self.data_stream, value, client, self.display_name)
        if read_back is not None:
            self._setup_data_stream.value = read_back
        return response

    # -- live view ------------------------------------------------------------------------

    @property
    def stream_slots(self) -> int:
        """Return the number of CameraRTPStreamManagement services."""
        return self._rtp.count

    @property
    def microphone_muted(self) -> bool:
        """Return True if the controller muted the Microphone (live audio is then not sent)."""
        return self._rtp.microphone_muted

    def set_streaming_status(self, slot: int, status: StreamingState) -> None:
        """Publish one slot's StreamingStatus, notifying subscribers when it changes."""
        self._rtp.set_streaming_status(slot, status)

    # RecordingDelegate for the HDS server (hds.datasend).

    @property
    def recording_active(self) -> bool:
        """Return the recording Active characteristic."""
        return self._state.recording_active

    @property
    def camera_active(self) -> bool:
        """Return HomeKitCameraActive."""
        return self._state.homekit_camera_active

    @property
    def has_selected_configuration(self) -> bool:
        """Return True once the hub selected a configuration."""
        return self._selection is not None

    def handle_recording_stream_request(self, stream_id: int) -> AsyncIterator[RecordingPacket]:
        """Start a recording with the current selection and RecordingAudioActive."""
        if self._selection is None:
            raise HDSError("no selected configuration")
        return self._owner.recording_stream_request(
            stream_id, self._selection, self._state.recording_audio_active
        )

    def acknowledge_stream(self, stream_id: int) -> None:
        """Note the hub's ack of the end of a stream."""
        self._owner.recording_stream_acknowledged(stream_id)

    def close_recording_stream(self, stream_id: int, reason: DataSendCloseReason | None) -> None:
        """Tell the owner the stream ended."""
        self._owner.recording_stream_closed(stream_id, reason)

    def recording_stream_refused(self, stream_id: int, reason: DataSendCloseReason) -> None:
        """Tell the owner an open was refused."""
        self._owner.recording_stream_refused(stream_id, reason)

    # -- Home Assistant events ------------------------------------------------------------

    def set_motion(self, detected: bool) -> None:
        """Report motion to HomeKit (the HKSV trigger)."""
        self._motion_detected.set_value(detected)

    @property
    def motion_detected(self) -> bool:
        """Return what HomeKit currently sees as motion."""
        return bool(self._motion_detected.value)

    def ring(self) -> None:
        """Send a doorbell single press."""
        if self._doorbell_event is not None:
            self._doorbell_event.set_value(0)

    # -- snapshots ------------------------------------------------------------------------

    async def async_handle_resource(
        self, request: dict[str, Any], response: HAPResponse, client: HapClient
    ) -> bytes:
        """Serve a snapshot, or set a 207 HAP status on ``response`` (snapshots.py)."""
        return await answer_snapshot(
            request, response, self._state, self._owner.async_snapshot, self.display_name
        )

    def setup_message(self) -> None:
        """Print nothing; Home Assistant shows the code (HAP-python prints to stdout)."""
