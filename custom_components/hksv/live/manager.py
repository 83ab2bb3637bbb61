"""Live view of one camera toward HomeKit: the HAP requests on its stream slots.

Follows HAP-NodeJS's RTPStreamManagement (docs/live-view.md §1.4): a SetupEndpoints write binds
the slot to the writing HAP connection, allocates the UDP ports and stores the response the
controller reads back; a busy slot answers BUSY; Selected START starts sending, END (or the
HAP connection closing, a silent viewer, the camera turned off, unload) ends it and the slot
returns to "available". Setters stay O(1) apart from binding two UDP sockets; anything async
runs in tasks that ``async_stop`` waits for. The sessions themselves are ``slot_sessions.py``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Final

from ..hap.definitions import HapStatus, HapStatusError
from ..hap.rtp_stream import (
    SETUP_ENDPOINTS_IDLE,
    IPVersion,
    SessionCommand,
    SetupEndpointsResponse,
    SetupStatus,
    decode_selection,
    decode_setup_endpoints,
    selection_idle,
)
from ..hap.tlv8 import TLVError
from .endpoint_setup import bind_setup, usable_srtp
from .reconfigure import reconfigure_copied_viewer
from .slot_sessions import SlotSessions
from .slots import EndReason
from .transport import normalize_local_address
from .viewer_reports import active_records, last_ended, viewer_summaries
from .viewers import video_summary

if TYPE_CHECKING:
    from ..hap.driver import ClientAddress, HapClient

_LOGGER = logging.getLogger(__name__)

# A SetupEndpoints that no START follows frees its slot after this long.
SETUP_TIMEOUT: Final = 30.0


class LiveStreamManager(SlotSessions):
    """Answer the HAP requests on one camera's stream slots (the LiveStreamDelegate)."""

    def set_allowed(self, allowed: bool) -> None:
        """Follow RTP Active and HomeKitCameraActive: off ends every session."""
        self._allowed = allowed
        if not allowed:
            for slot in self._slots:
                if not slot.idle:
                    self._end(slot, EndReason.CAMERA_OFF)
        for slot in self._slots:
            self._publish(slot)

    # -- LiveStreamDelegate -----------------------------------------------------------------

    def read_setup_endpoints(self, slot: int, client: ClientAddress | None = None) -> bytes:
        """Return the stored SetupEndpoints response to the connection that set it up.

        Any other connection reads the idle value: the response echoes the SRTP keys.
        """
        stored = self._slots[slot]
        if stored.client is not None and client != stored.client:
            if stored.refusal is not None and stored.refusal[0] == client:
                return stored.refusal[1]
            return SETUP_ENDPOINTS_IDLE
        return stored.setup_response

    def read_selected_stream(self, slot: int) -> bytes:
        """Return the last Selected write, or a SUSPEND command while idle."""
        return self._slots[slot].selected

    def setup_endpoints(self, slot_index: int, value: bytes, client: HapClient) -> None:
        """Answer a SetupEndpoints write (docs/live-view.md §1.4 step 1)."""
        if not self._allowed:
            raise HapStatusError(HapStatus.NOT_ALLOWED_IN_CURRENT_STATE, "streaming is off")
        try:
            request = decode_setup_endpoints(value)
        except TLVError as err:
            raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, str(err)) from err
        slot = self._slots[slot_index]
        if not slot.idle:
            self.busy_answers += 1
            busy = SetupEndpointsResponse(session_id=request.session_id, status=SetupStatus.BUSY)
            if slot.client is None or slot.client == client.address:
                slot.setup_response = busy.encode()
            else:
                slot.refusal = (client.address, busy.encode())
            return
        error = SetupEndpointsResponse(
            session_id=request.session_id, status=SetupStatus.ERROR
        ).encode()
        ipv6 = request.address.ip_version == IPVersion.IPV6
        local = self.options.address or client.local_address
        local = normalize_local_address(local, ipv6) if local else None
        if local is None or not usable_srtp(request):
            _LOGGER.warning(
                "%s: live view setup refused (address %s, IPv6 %s, suites %s/%s)",
                self._log_name,
                client.local_address,
                ipv6,
                request.video_srtp.suite,
                request.audio_srtp.suite,
            )
            slot.setup_response = error
            return
        setup = bind_setup(request, client.address, local, ipv6, self._log_name)
        if setup is None:
            slot.setup_response = error
            return
        slot.client = client.address
        slot.setup = setup
        # Echo the controller's keys: we send with what we answer (docs/live-view.md §1.5).
        slot.setup_response = setup.response()
        slot.selected = selection_idle(request.session_id)
        loop = asyncio.get_running_loop()
        slot.timer = loop.call_later(SETUP_TIMEOUT, self._setup_expired, slot)
        self._publish(slot)
        self._on_change()

    def select_stream(self, slot_index: int, value: bytes, client: HapClient) -> None:
        """Answer a Selected write: start, end, suspend, resume or reconfigure."""
        if not self._allowed:
            raise HapStatusError(HapStatus.NOT_ALLOWED_IN_CURRENT_STATE, "streaming is off")
        try:
            selection = decode_selection(value)
        except TLVError as err:
            raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, str(err)) from err
        slot = self._slots[slot_index]
        if slot.client is not None and client.address != slot.client:
            raise HapStatusError(
                HapStatus.INSUFFICIENT_PRIVILEGES, "the stream belongs to another connection"
            )
        control = selection.session_control
        session_id = slot.setup.session_id if slot.setup is not None else None
        current = slot.viewer.record["session_id"] if slot.viewer is not None else None
        if control.session_id.hex() not in (current, session_id.hex() if session_id else None):
            raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "unknown session")
        command = control.command
        if command is SessionCommand.END:
            self._end(slot, EndReason.END)
            return
        if command is SessionCommand.START:
            if slot.setup is None:
                raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "already started")
            try:
                self._start(slot, selection, client)
            except Exception as err:
                # A refused START frees the slot at once (sockets included) and says why.
                self._refuse_start(slot, selection, err)
                if isinstance(err, HapStatusError):
                    raise
                raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, str(err)) from err
        elif slot.session is None:
            raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "not started")
        elif command is SessionCommand.SUSPEND:
            # HAP-NodeJS refuses these; no peer has seen iOS send them. Pause both media.
            slot.session.suspend()
            if slot.viewer is not None and slot.viewer.audio is not None:
                slot.viewer.audio.pause(True)
        elif command is SessionCommand.RESUME:
            slot.session.resume()
            if slot.viewer is not None and slot.viewer.audio is not None:
                slot.viewer.audio.pause(False)
        elif command is SessionCommand.RECONFIGURE and slot.viewer is not None:
            # A transcoder takes the new bitrate (HAP-NodeJS passes it on; iOS lowers it for a
            # weak link); a copied viewer that now asks for much less moves to a transcoder.
            slot.viewer.record["reconfigured"] = video_summary(selection)
            transcoded = slot.viewer.transcoded
            rtp = selection.video.rtp if selection.video is not None else None
            if transcoded is not None and rtp is not None and rtp.max_bitrate:
                transcoded.reconfigure(rtp.max_bitrate)
            else:
                moved = reconfigure_copied_viewer(slot.viewer, selection, self._feed)
                if moved is not None:
                    _LOGGER.info("%s: live view moved to a transcoder (%s)", self._log_name, moved)
        slot.selected = value
        self._on_change()

    def connection_lost(self, client: ClientAddress) -> None:
        """End every setup and session bound to a closed HAP connection."""
        for slot in self._slots:
            if slot.client == client:
                self._end(slot, EndReason.HAP_CLOSED)

    def viewer_summaries(self) -> list[dict[str, Any]]:
        """Return who watches each busy slot, copy or transcode, and why."""
        return viewer_summaries(self._slots)

    def last_ended(self) -> dict[str, Any] | None:
        """Return how the last session ended, and why (for the Live viewers sensor)."""
        return last_ended(self.history)

    def diagnostics(self) -> dict[str, Any]:
        """Return slots, running sessions and the last ended ones."""
        return {
            "slots": len(self._slots),
            "viewers": self.viewers,
            "allowed": self._allowed,
            "sessions_started": self.sessions_started,
            "busy_answers": self.busy_answers,
            **self._media.diagnostics(),
            "feed": {
                "holding_stream": self._feed.holding,
                "parts": self._feed.parts,
            },
            "direct": self._direct.diagnostics() if self._direct is not None else None,
            "active": active_records(self._slots),
            "ended": list(self.history),
        }
