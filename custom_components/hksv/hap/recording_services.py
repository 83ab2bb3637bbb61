"""The recording side of the accessory: its two services, the hub's selection, HDS setup.

CameraEventRecordingManagement carries the offer and the hub's selection
(docs/hksv-protocol.md §2.1–§2.4); DataStreamTransportManagement answers a hub that asks for a
HomeKit Data Stream (§2.6). The accessory keeps the state; this module builds the services and
checks what a hub writes before anything is stored.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
import logging
from typing import TYPE_CHECKING, Any, Final

from ..hds import HDSError
from . import definitions as d
from .characteristic_policy import b64
from .data_stream_setup import SUPPORTED_TRANSPORTS, answer_setup, busy_response
from .definitions import HapStatus, HapStatusError, new_service
from .recording_config import (
    RecordingOffer,
    SelectedCameraRecordingConfiguration,
    SelectionError,
    parse_selection,
)

if TYPE_CHECKING:
    from pyhap.characteristic import Characteristic
    from pyhap.service import Service

    from ..hds import DataStreamServer
    from .driver import HapClient

_LOGGER = logging.getLogger(__name__)

DATA_STREAM_VERSION: Final = "1.0"


@dataclass(frozen=True, slots=True)
class RecordingServices:
    """CameraEventRecordingManagement and DataStreamTransportManagement, and their values."""

    recording: Service
    data_stream: Service
    active: Characteristic
    audio_active: Characteristic
    selected: Characteristic
    setup_data_stream: Characteristic
    supported: tuple[Characteristic, Characteristic, Characteristic]  # camera, video, audio

    @classmethod
    def create(cls) -> RecordingServices:
        """Create both services, with the data stream's fixed values set."""
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
        rec = {c.display_name: c for c in recording.characteristics}
        hds = {c.display_name: c for c in data_stream.characteristics}
        hds["SupportedDataStreamTransportConfiguration"].set_value(
            b64(SUPPORTED_TRANSPORTS.encode()), should_notify=False
        )
        hds["Version"].set_value(DATA_STREAM_VERSION, should_notify=False)
        return cls(
            recording=recording,
            data_stream=data_stream,
            active=rec["Active"],
            audio_active=rec["RecordingAudioActive"],
            selected=rec["SelectedCameraRecordingConfiguration"],
            setup_data_stream=hds["SetupDataStreamTransport"],
            supported=(
                rec["SupportedCameraRecordingConfiguration"],
                rec["SupportedVideoRecordingConfiguration"],
                rec["SupportedAudioRecordingConfiguration"],
            ),
        )

    def publish(self, offer: RecordingOffer, selected: bytes | None, *, notify: bool) -> None:
        """Show the offer and the stored selection (empty before the hub selected)."""
        self.selected.set_value(b64(selected) if selected else "", should_notify=notify)
        for char, encoded in zip(self.supported, offer.encoded, strict=True):
            char.set_value(b64(encoded), should_notify=notify)


def decode_selection(
    value: Any, offer: RecordingOffer, name: str
) -> tuple[bytes, SelectedCameraRecordingConfiguration]:
    """Return a hub's selection write checked against ``offer``; refuse it with -70410."""
    if not isinstance(value, str):
        raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "not base64 text")
    try:
        raw = base64.b64decode(value, validate=True)
        selection = parse_selection(raw)
        offer.validate(selection)
    except (ValueError, SelectionError) as err:
        _LOGGER.warning("%s: hub selected an unsupported recording configuration: %s", name, err)
        raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, str(err)) from err
    return raw, selection


def restored_selection(
    raw: bytes, offer: RecordingOffer, name: str
) -> SelectedCameraRecordingConfiguration | None:
    """Decode a persisted selection; None when ``offer`` no longer allows it.

    The stored fingerprint is not compared: a selection made from an older version's offer
    (which followed the measured frame rate) still records if it fits this one.
    """
    try:
        selection = parse_selection(raw)
        offer.validate(selection)
    except SelectionError as err:
        _LOGGER.info(
            "%s: the stored recording selection does not fit the offer (%s); "
            "waiting for the hub to select again",
            name,
            err,
        )
        return None
    return selection


def setup_data_stream(
    server: DataStreamServer | None, value: Any, client: HapClient, name: str
) -> tuple[str, str | None]:
    """Prepare an HDS session for the writing connection; return (response, read-back).

    The read-back is None when the server refused (the hub is told BUSY).
    """
    if server is None or client.shared_key is None:
        raise HapStatusError(HapStatus.SERVICE_COMMUNICATION_FAILURE, "data stream not ready")

    def prepare(controller_salt: bytes) -> tuple[int, bytes]:
        salt = server.prepare_session(
            client.address, client.shared_key or b"", controller_salt, peer_host=client.address[0]
        )
        return server.port, salt

    try:
        return answer_setup(value, prepare)
    except HDSError as err:
        _LOGGER.warning("%s: data stream setup refused: %s", name, err)
        return busy_response(), None
