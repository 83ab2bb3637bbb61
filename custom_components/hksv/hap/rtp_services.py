"""Live view's HAP side: the CameraRTPStreamManagement slots and the Microphone.

One service per concurrent live view (docs/live-view.md §1.1), all IIDs fixed by
``definitions.IID_TABLE``. The slots' SetupEndpoints and Selected writes are handed to the
live-view manager (``LiveStreamDelegate``); the slots' Active flags mirror the one persisted
``rtp_active`` (the Home app sets them all).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

from . import definitions as d
from .characteristic_policy import Policy, b64
from .definitions import FixedIIDManager, HapStatus, HapStatusError, new_service
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
    from pyhap.service import Service

    from .driver import ClientAddress, HapClient


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


class RtpStreamServices:
    """The stream slots and the optional Microphone of one camera accessory."""

    def __init__(
        self,
        iid_manager: FixedIIDManager,
        slots: int,
        *,
        microphone: bool,
        live: Callable[[], LiveStreamDelegate | None],
        streaming_on: Callable[[], bool],
    ) -> None:
        """Create the services with their fixed values; ``live`` and ``streaming_on`` are read
        at each write, since the live-view manager is attached after the accessory exists."""
        self._live = live
        self._streaming_on = streaming_on
        self.services: list[Service] = []
        for slot in range(max(1, min(slots, d.MAX_RTP_SLOTS))):
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
            iid_manager.register_rtp_slot(service, slot)
            self.services.append(service)
        self.microphone = (
            new_service(d.SERVICE_MICROPHONE, "Microphone", d.MUTE) if microphone else None
        )
        self._slots = [{c.display_name: c for c in s.characteristics} for s in self.services]
        self._mute = self.microphone.characteristics[0] if self.microphone is not None else None
        for slot_chars in self._slots:
            slot_chars["StreamingStatus"].set_value(b64(STREAMING_UNAVAILABLE), should_notify=False)
            for name, value in (
                ("SupportedVideoStreamConfiguration", SUPPORTED_VIDEO_STREAM),
                ("SupportedAudioStreamConfiguration", SUPPORTED_AUDIO_STREAM),
                ("SupportedRTPConfiguration", SUPPORTED_RTP),
            ):
                slot_chars[name].set_value(b64(value), should_notify=False)
        if self._mute is not None:
            self._mute.set_value(False, should_notify=False)

    @property
    def active(self) -> Characteristic:
        """Return the first slot's Active, the one that stands for the persisted flag."""
        return self._slots[0]["Active"]

    @property
    def count(self) -> int:
        """Return the number of stream slots."""
        return len(self._slots)

    @property
    def microphone_muted(self) -> bool:
        """Return True if the controller muted the Microphone."""
        return self._mute is not None and bool(self._mute.get_value())

    def mirror_active(self, active: bool, *, notify: bool) -> None:
        """Show the persisted rtp_active on every slot after the first."""
        for slot_chars in self._slots[1:]:
            slot_chars["Active"].set_value(int(active), should_notify=notify)

    def policies(
        self, write_active: Callable[[Any, HapClient], None]
    ) -> dict[Characteristic, Policy]:
        """Return the policies of the slots' characteristics (the first Active excepted)."""
        policies: dict[Characteristic, Policy] = {}
        for slot, slot_chars in enumerate(self._slots):
            if slot:
                policies[slot_chars["Active"]] = Policy(True, self.active.get_value, write_active)
            policies[slot_chars["SetupEndpoints"]] = Policy(
                False,
                partial(self._read_live, slot, setup=True),
                partial(self._write_live, slot, setup=True),
                partial(self._read_setup_endpoints, slot),
            )
            policies[slot_chars["SelectedRTPStreamConfiguration"]] = Policy(
                False,
                partial(self._read_live, slot, setup=False),
                partial(self._write_live, slot, setup=False),
            )
        return policies

    def set_streaming_status(self, slot: int, status: StreamingState) -> None:
        """Publish one slot's StreamingStatus, notifying subscribers when it changes."""
        char = self._slots[slot]["StreamingStatus"]
        value = b64(StreamingStatus(status=status).encode())
        if char.get_value() != value:
            char.set_value(value)

    def _running_live(self) -> LiveStreamDelegate:
        """Return the live-view manager, or refuse while there is none."""
        live = self._live()
        if live is None:
            raise HapStatusError(HapStatus.NOT_ALLOWED_IN_CURRENT_STATE, "live view is not running")
        return live

    def _read_live(self, slot: int, *, setup: bool) -> str:
        """Return a slot's SetupEndpoints or Selected value from the live-view manager."""
        live = self._running_live()
        return b64(live.read_setup_endpoints(slot) if setup else live.read_selected_stream(slot))

    def _read_setup_endpoints(self, slot: int, client: ClientAddress | None) -> str:
        """Return a slot's SetupEndpoints response as the connection ``client`` may see it."""
        return b64(self._running_live().read_setup_endpoints(slot, client))

    def _write_live(self, slot: int, value: Any, client: HapClient, *, setup: bool) -> None:
        """Hand a slot's SetupEndpoints or Selected write to the live-view manager."""
        live = self._live()
        if live is None or not self._streaming_on():
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
