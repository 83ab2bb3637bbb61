"""The stream slots of one camera: what each holds from SetupEndpoints to the session's end.

One slot is one CameraRTPStreamManagement service. It belongs to the HAP connection that wrote
SetupEndpoints (only it reads the keys back or starts), holds that setup until START, then the
running session and its viewer; its end frees it for the next viewer (docs/live-view.md §1.4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from ..hap.rtp_stream import SETUP_ENDPOINTS_IDLE, StreamingState, selection_idle

if TYPE_CHECKING:
    import asyncio

    from ..hap.driver import ClientAddress
    from .endpoint_setup import PendingSetup
    from .session import LiveSession
    from .viewers import Viewer


class EndReason(StrEnum):
    """Why a session ended."""

    END = "end"  # the controller's Selected END
    HAP_CLOSED = "hap_connection_closed"
    RTCP_TIMEOUT = "rtcp_timeout"
    CAMERA_OFF = "camera_off"
    NEW_SETUP = "replaced_by_new_setup"
    NOT_STARTED = "not_started"
    START_REFUSED = "start_refused"  # the START could not be honoured (see its error)
    STOPPED = "stopped"  # unload or Home Assistant stop
    ERROR = "error"


class StreamingStatusPublisher(Protocol):
    """What the manager needs from the accessory."""

    def set_streaming_status(self, slot: int, status: StreamingState) -> None:
        """Publish one slot's StreamingStatus."""


@dataclass(slots=True)
class StreamSlot:
    """One CameraRTPStreamManagement service."""

    index: int
    setup_response: bytes = SETUP_ENDPOINTS_IDLE
    selected: bytes = field(default_factory=selection_idle)
    setup: PendingSetup | None = None
    session: LiveSession | None = None
    viewer: Viewer | None = None
    timer: asyncio.TimerHandle | None = None
    # The HAP connection that did SetupEndpoints: only it may read the keys back or start.
    client: ClientAddress | None = None
    # A BUSY answer for another connection, which reads it instead of the owner's response.
    refusal: tuple[ClientAddress, bytes] | None = None

    @property
    def idle(self) -> bool:
        """Return True if nobody set up this slot."""
        return self.setup is None and self.session is None

    def streaming_state(self, allowed: bool) -> StreamingState:
        """Return the StreamingStatus to publish for this slot."""
        if not allowed:
            return StreamingState.UNAVAILABLE
        if self.idle:
            return StreamingState.AVAILABLE
        return StreamingState.IN_USE
