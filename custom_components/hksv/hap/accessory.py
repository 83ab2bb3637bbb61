"""The HKSV camera accessory: services, the camera-state machine, snapshots and persistence.

One standalone accessory (AID 1) per camera. Setters run on the event loop and stay O(1):
validate, store, notify, and hand anything slow to the owner through ``CameraOwner``.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from functools import partial
import json
import logging
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from pyhap.accessory import Accessory
from pyhap.const import CATEGORY_CAMERA, CATEGORY_VIDEO_DOOR_BELL, STANDALONE_AID
from pyhap.hap_handler import HAPResponse

from ..hds import DataSendCloseReason, HDSError, RecordingPacket
from . import definitions as d
from .camera_state import FACTORY_STATE, CameraState, snapshot_refusal
from .data_stream_setup import SUPPORTED_TRANSPORTS, answer_setup, busy_response
from .definitions import FixedIIDManager, HapStatus, HapStatusError, new_service
from .driver import ClientAddress, HapClient
from .recording_config import (
    RecordingOffer,
    SelectedCameraRecordingConfiguration,
    SelectionError,
    parse_selection,
)
from .rtp_stream import (
    STREAMING_UNAVAILABLE,
    SUPPORTED_AUDIO_STREAM,
    SUPPORTED_RTP,
    SUPPORTED_VIDEO_STREAM,
    StreamingState,
    StreamingStatus,
)

if TYPE_CHECKING:
    from pyhap.characteristic import Characteristic

    from ..hds import DataStreamServer
    from .driver import HksvDriver

_LOGGER = logging.getLogger(__name__)

# HAP-NodeJS gives up on a snapshot after 25 s; hubs ask again every ~10 s, so a shorter wait
# frees the connection sooner without losing anything.
SNAPSHOT_TIMEOUT: Final = 10.0
MAX_SNAPSHOT_EDGE: Final = 4096
DATA_STREAM_VERSION: Final = "1.0"


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


class SnapshotUnavailable(Exception):
    """The camera could not provide a picture."""


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


class LiveStreamDelegate(Protocol):
    """Who answers the live-view characteristics of each stream slot (live.manager)."""

    def setup_endpoints(self, slot: int, value: bytes, client: HapClient) -> None:
        """Handle a SetupEndpoints write; raise HapStatusError to refuse it."""

    def read_setup_endpoints(self, slot: int, client: ClientAddress | None = None) -> bytes:
        """Return the SetupEndpoints response to read back (only its own to each connection)."""

    def select_stream(self, slot: int, value: bytes, client: HapClient) -> None:
        """Handle a SelectedRTPStreamConfiguration write; raise HapStatusError to refuse it."""

    def read_selected_stream(self, slot: int) -> bytes:
        """Return the selected configuration to read back."""


@dataclass(slots=True)
class _Policy:
    """Read/write behaviour of one characteristic, for HksvDriver."""

    admin_write: bool
    read: Callable[[], Any]
    write: Callable[[Any, HapClient], Any]
    read_as: Callable[[ClientAddress | None], Any] | None = None  # per-connection reads


def _uint8_bool(value: Any) -> bool:
    """Return a 0/1 characteristic write as bool, refusing anything else."""
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, f"{value!r} is not 0 or 1")


def _b64(data: bytes) -> str:
    """Return base64 text."""
    return base64.b64encode(data).decode()


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
        self._policies: dict[Characteristic, _Policy] = {}
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
        slots = max(1, min(info.stream_slots, d.MAX_RTP_SLOTS))
        rtp_services = []
        for slot in range(slots):
            service = new_service(
                d.SERVICE_RTP_STREAM_MANAGEMENT,
                "CameraRTPStreamManagement",
                d.STREAMING_STATUS,
                d.SUPPORTED_VIDEO_STREAM,
                d.SUPPORTED_AUDIO_STREAM,
                d.SUPPORTED_RTP,
                d.SELECTED_RTP_STREAM,
                d.SETUP_ENDPOINTS,
                d.RTP_ACTIVE,
            )
            cast("FixedIIDManager", self.iid_manager).register_rtp_slot(service, slot)
            rtp_services.append(service)
        operating = new_service(
            d.SERVICE_OPERATING_MODE,
            "CameraOperatingMode",
            d.EVENT_SNAPSHOTS_ACTIVE,
            d.HOMEKIT_CAMERA_ACTIVE,
            d.PERIODIC_SNAPSHOTS_ACTIVE,
        )
        recording = new_service(
            d.SERVICE_RECORDING_MANAGEMENT,
            "CameraEventRecordingManagement",
            d.RECORDING_ACTIVE,
            d.SUPPORTED_CAMERA_RECORDING,
            d.SUPPORTED_VIDEO_RECORDING,
            d.SUPPORTED_AUDIO_RECORDING,
            d.SELECTED_CAMERA_RECORDING,
            d.RECORDING_AUDIO_ACTIVE,
        )
        data_stream = new_service(
            d.SERVICE_DATA_STREAM_MANAGEMENT,
            "DataStreamTransportManagement",
            d.SETUP_DATA_STREAM_TRANSPORT,
            d.SUPPORTED_DATA_STREAM_TRANSPORT,
            d.DATA_STREAM_VERSION,
        )
        motion = new_service(
            d.SERVICE_MOTION_SENSOR, "MotionSensor", d.MOTION_DETECTED, d.STATUS_ACTIVE
        )
        services = [*rtp_services, operating, recording, data_stream, motion]
        microphone = None
        if info.microphone:
            microphone = new_service(d.SERVICE_MICROPHONE, "Microphone", d.MUTE)
            services.append(microphone)
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

        chars = {
            (s.display_name, c.display_name): c
            for s in reversed(services)  # the first stream slot wins the name lookup
            for c in s.characteristics
        }

        def char(service: str, name: str) -> Characteristic:
            return chars[(service, name)]

        self._rtp_active = char("CameraRTPStreamManagement", "Active")
        self._rtp_slots = [
            {c.display_name: c for c in service.characteristics} for service in rtp_services
        ]
        self._mute = microphone.characteristics[0] if microphone is not None else None
        self._event_snapshots = char("CameraOperatingMode", "EventSnapshotsActive")
        self._camera_active = char("CameraOperatingMode", "HomeKitCameraActive")
        self._periodic_snapshots = char("CameraOperatingMode", "PeriodicSnapshotsActive")
        self._recording_active = char("CameraEventRecordingManagement", "Active")
        self._supported_camera = char(
            "CameraEventRecordingManagement", "SupportedCameraRecordingConfiguration"
        )
        self._supported_video = char(
            "CameraEventRecordingManagement", "SupportedVideoRecordingConfiguration"
        )
        self._supported_audio = char(
            "CameraEventRecordingManagement", "SupportedAudioRecordingConfiguration"
        )
        self._selected = char(
            "CameraEventRecordingManagement", "SelectedCameraRecordingConfiguration"
        )
        self._recording_audio = char("CameraEventRecordingManagement", "RecordingAudioActive")
        self._setup_data_stream = char("DataStreamTransportManagement", "SetupDataStreamTransport")
        self._motion_detected = char("MotionSensor", "MotionDetected")
        self._status_active = char("MotionSensor", "StatusActive")
        self._doorbell_event = char("Doorbell", "ProgrammableSwitchEvent") if doorbell else None

        for slot_chars in self._rtp_slots:
            slot_chars["StreamingStatus"].set_value(
                _b64(STREAMING_UNAVAILABLE), should_notify=False
            )
            for name, value in (
                ("SupportedVideoStreamConfiguration", SUPPORTED_VIDEO_STREAM),
                ("SupportedAudioStreamConfiguration", SUPPORTED_AUDIO_STREAM),
                ("SupportedRTPConfiguration", SUPPORTED_RTP),
            ):
                slot_chars[name].set_value(_b64(value), should_notify=False)
        if self._mute is not None:
            self._mute.set_value(False, should_notify=False)
        char(
            "DataStreamTransportManagement", "SupportedDataStreamTransportConfiguration"
        ).set_value(_b64(SUPPORTED_TRANSPORTS.encode()), should_notify=False)
        char("DataStreamTransportManagement", "Version").set_value(
            DATA_STREAM_VERSION, should_notify=False
        )

        flag_writers: tuple[tuple[Characteristic, str], ...] = (
            (self._rtp_active, "rtp_active"),
            (self._event_snapshots, "event_snapshots_active"),
            (self._camera_active, "homekit_camera_active"),
            (self._periodic_snapshots, "periodic_snapshots_active"),
            (self._recording_active, "recording_active"),
            (self._recording_audio, "recording_audio_active"),
        )
        for flag_char, field_name in flag_writers:
            self._policies[flag_char] = _Policy(
                admin_write=flag_char is not self._recording_audio,
                read=flag_char.get_value,
                write=self._flag_writer(field_name),
            )
        self._policies[self._selected] = _Policy(True, self._read_selection, self._write_selection)
        self._policies[self._setup_data_stream] = _Policy(
            False, self._setup_data_stream.get_value, self._write_setup_data_stream
        )
        for slot, slot_chars in enumerate(self._rtp_slots):
            # Every slot's Active mirrors the one persisted flag (the Home app sets them all).
            if slot:
                self._policies[slot_chars["Active"]] = _Policy(
                    True, self._rtp_active.get_value, self._flag_writer("rtp_active")
                )
            self._policies[slot_chars["SetupEndpoints"]] = _Policy(
                False,
                partial(self._read_live, slot, setup=True),
                partial(self._write_live, slot, setup=True),
                partial(self._read_setup_endpoints, slot),
            )
            self._policies[slot_chars["SelectedRTPStreamConfiguration"]] = _Policy(
                False,
                partial(self._read_live, slot, setup=False),
                partial(self._write_live, slot, setup=False),
            )

    def policy_for(self, char: Characteristic) -> _Policy | None:
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
        for slot_chars in self._rtp_slots[1:]:
            slot_chars["Active"].set_value(int(state.rtp_active), should_notify=notify)
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
        selected = state.selected_configuration
        self._selected.set_value(_b64(selected) if selected else "", should_notify=notify)
        camera, video, audio = self._offer.encoded
        self._supported_camera.set_value(_b64(camera), should_notify=notify)
        self._supported_video.set_value(_b64(video), should_notify=notify)
        self._supported_audio.set_value(_b64(audio), should_notify=notify)

    def _flag_writer(self, field_name: str) -> Callable[[Any, HapClient], None]:
        """Return a write handler for one 0/1 state characteristic."""

        def write(value: Any, client: HapClient) -> None:
            changes: dict[str, Any] = {field_name: _uint8_bool(value)}
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
        return _b64(self._state.selected_configuration)

    def _write_selection(self, value: Any, client: HapClient) -> None:
        """Validate a selection against the offer; refuse it with -70410, storing nothing."""
        if not isinstance(value, str):
            raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "not base64 text")
        try:
            raw = base64.b64decode(value, validate=True)
            selection = parse_selection(raw)
            self._offer.validate(selection)
        except (ValueError, SelectionError) as err:
            _LOGGER.warning(
                "%s: hub selected an unsupported recording configuration: %s",
                self.display_name,
                err,
            )
            raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, str(err)) from err
        self._selection = selection
        self._set_state(self._state.with_selection(raw, self._offer.fingerprint))

    def _restore_selection(self, raw: bytes) -> SelectedCameraRecordingConfiguration | None:
        """Decode a persisted selection; keep it, tied to this offer, while the offer allows it.

        The stored fingerprint is not compared: a selection made from an older version's
        offer (which followed the measured frame rate) still records if it fits this one.
        """
        try:
            selection = parse_selection(raw)
            self._offer.validate(selection)
        except SelectionError as err:
            _LOGGER.info(
                "%s: the stored recording selection does not fit the offer (%s); "
                "waiting for the hub to select again",
                self.display_name,
                err,
            )
            self._state = self._state.with_selection(None, None)
            self._selected.set_value("", should_notify=False)
            return None
        self._state = self._state.with_selection(raw, self._offer.fingerprint)
        return selection

    # -- data stream ----------------------------------------------------------------------

    def _write_setup_data_stream(self, value: Any, client: HapClient) -> str:
        """Prepare an HDS session for the writing connection and answer with port and salt."""
        server = self.data_stream
        if server is None or client.shared_key is None:
            raise HapStatusError(HapStatus.SERVICE_COMMUNICATION_FAILURE, "data stream not ready")

        def prepare(controller_salt: bytes) -> tuple[int, bytes]:
            salt = server.prepare_session(
                client.address,
                client.shared_key or b"",
                controller_salt,
                peer_host=client.address[0],
            )
            return server.port, salt

        try:
            response, read_back = answer_setup(value, prepare)
        except HDSError as err:
            _LOGGER.warning("%s: data stream setup refused: %s", self.display_name, err)
            return busy_response()
        self._setup_data_stream.value = read_back
        return response

    # -- live view ------------------------------------------------------------------------

    @property
    def stream_slots(self) -> int:
        """Return the number of CameraRTPStreamManagement services."""
        return len(self._rtp_slots)

    @property
    def microphone_muted(self) -> bool:
        """Return True if the controller muted the Microphone (live audio is then not sent)."""
        return self._mute is not None and bool(self._mute.get_value())

    def set_streaming_status(self, slot: int, status: StreamingState) -> None:
        """Publish one slot's StreamingStatus, notifying subscribers when it changes."""
        char = self._rtp_slots[slot]["StreamingStatus"]
        value = _b64(StreamingStatus(status=status).encode())
        if char.get_value() != value:
            char.set_value(value)

    def _read_live(self, slot: int, *, setup: bool) -> str:
        """Return a slot's SetupEndpoints or Selected value from the live-view manager."""
        live = self.live
        if live is None:
            raise HapStatusError(HapStatus.NOT_ALLOWED_IN_CURRENT_STATE, "live view is not running")
        return _b64(live.read_setup_endpoints(slot) if setup else live.read_selected_stream(slot))

    def _read_setup_endpoints(self, slot: int, client: ClientAddress | None) -> str:
        """Return a slot's SetupEndpoints response as the connection ``client`` may see it."""
        live = self.live
        if live is None:
            raise HapStatusError(HapStatus.NOT_ALLOWED_IN_CURRENT_STATE, "live view is not running")
        return _b64(live.read_setup_endpoints(slot, client))

    def _write_live(self, slot: int, value: Any, client: HapClient, *, setup: bool) -> None:
        """Hand a slot's SetupEndpoints or Selected write to the live-view manager."""
        live = self.live
        if live is None or not self._state.rtp_active or not self._state.homekit_camera_active:
            raise HapStatusError(HapStatus.NOT_ALLOWED_IN_CURRENT_STATE, "streaming is off")
        if not isinstance(value, str):
            raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "not base64 text")
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError as err:
            raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "not base64 text") from err
        if setup:
            live.setup_endpoints(slot, raw, client)
        else:
            live.select_stream(slot, raw, client)

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
        """Serve a snapshot, or set a 207 HAP status on ``response`` (§6.1)."""
        reason = request.get("reason")
        if reason is not None and (not isinstance(reason, int) or isinstance(reason, bool)):
            return _refuse(response, HapStatus.INVALID_VALUE_IN_REQUEST)
        width = request.get("image-width")
        height = request.get("image-height")
        if not all(
            isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_SNAPSHOT_EDGE
            for v in (width, height)
        ):
            return _refuse(response, HapStatus.INVALID_VALUE_IN_REQUEST)
        refusal = snapshot_refusal(self._state, reason)
        if refusal is not None:
            return _refuse(response, refusal)
        try:
            async with asyncio.timeout(SNAPSHOT_TIMEOUT):
                image = await self._owner.async_snapshot(int(width), int(height))  # type: ignore[arg-type]
        except TimeoutError:
            _LOGGER.warning("%s: snapshot timed out", self.display_name)
            return _refuse(response, HapStatus.OPERATION_TIMED_OUT)
        except SnapshotUnavailable as err:
            _LOGGER.warning("%s: snapshot failed: %s", self.display_name, err)
            return _refuse(response, HapStatus.SERVICE_COMMUNICATION_FAILURE)
        if not image:
            return _refuse(response, HapStatus.SERVICE_COMMUNICATION_FAILURE)
        return image

    def setup_message(self) -> None:
        """Print nothing; Home Assistant shows the code (HAP-python prints to stdout)."""


def _refuse(response: HAPResponse, status: HapStatus) -> bytes:
    """Turn a pending image response into HTTP 207 with a HAP status."""
    response.status_code = 207
    response.reason = "Multi-Status"
    response.headers = [("Content-Type", "application/hap+json")]
    return json.dumps({"status": int(status)}).encode()
