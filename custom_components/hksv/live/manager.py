"""Live view sessions of one camera: stream slots, SetupEndpoints/Selected policies, life cycle.

Follows HAP-NodeJS's RTPStreamManagement (docs/live-view.md §1.4): a SetupEndpoints write binds
the slot to the writing HAP connection, allocates the UDP ports and stores the response the
controller reads back; a busy slot answers BUSY; Selected START starts sending, END (or the
HAP connection closing, a silent viewer, the camera turned off, unload) ends it and the slot
returns to "available". Setters stay O(1) apart from binding two UDP sockets; anything async
runs in tasks that ``async_stop`` waits for.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

from ..hap.definitions import HapStatus, HapStatusError
from ..hap.rtp_stream import (
    SETUP_ENDPOINTS_IDLE,
    EndpointAddress,
    IPVersion,
    SelectedRTPStreamConfiguration,
    SessionCommand,
    SetupEndpointsRequest,
    SetupEndpointsResponse,
    SetupStatus,
    SrtpSuite,
    StreamingState,
    decode_selection,
    decode_setup_endpoints,
    selection_idle,
)
from ..hap.tlv8 import TLVError
from .direct import DirectFeed, async_use_direct
from .h264_rtp import payload_budget
from .policy import LiveMode, SourceVideoInfo, ViewerRequest
from .reconfigure import reconfigure_copied_viewer
from .session import DEFAULT_IDLE_TIMEOUT, EndReason, LiveSession, VideoConfig
from .shared import AudioSender, OpusFeed
from .srtp import SrtpContext
from .transport import (
    MediaEndpoint,
    SessionTransport,
    bind_socket,
    normalize_local_address,
    peer_for,
    unscoped,
)
from .viewers import (
    LiveOptions,
    SharedMedia,
    Viewer,
    audio_sender_for,
    selected_profile,
    video_summary,
)

if TYPE_CHECKING:
    import socket

    from ..hap.driver import ClientAddress, HapClient
    from ..media.fmp4 import InitSegment
    from ..source.gop import Gop
    from .source import LiveFeed


_LOGGER = logging.getLogger(__name__)

# A SetupEndpoints that no START follows frees its slot after this long.
SETUP_TIMEOUT: Final = 30.0
HISTORY: Final = 10
_KEY_LENGTH: Final = 16
_SALT_LENGTH: Final = 14
_H264: Final = 0


class StreamingStatusPublisher(Protocol):
    """What the manager needs from the accessory."""

    def set_streaming_status(self, slot: int, status: StreamingState) -> None:
        """Publish one slot's StreamingStatus."""


@dataclass(slots=True)
class _Setup:
    """A SetupEndpoints that succeeded: sockets, keys and SSRCs, waiting for START."""

    session_id: bytes
    client: ClientAddress
    request: SetupEndpointsRequest
    local_address: str
    video_socket: socket.socket
    audio_socket: socket.socket
    video_ssrc: int
    audio_ssrc: int
    created: float = field(default_factory=time.monotonic)

    def close(self) -> None:
        """Close sockets not handed to a session."""
        self.video_socket.close()
        self.audio_socket.close()


@dataclass(slots=True)
class _Slot:
    """One CameraRTPStreamManagement service."""

    index: int
    setup_response: bytes = SETUP_ENDPOINTS_IDLE
    selected: bytes = field(default_factory=selection_idle)
    setup: _Setup | None = None
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


class LiveStreamManager:
    """Own the stream slots of one camera and the sessions running in them."""

    def __init__(
        self,
        *,
        slots: int,
        feed: LiveFeed,
        publisher: StreamingStatusPublisher,
        source_profile: Callable[[], tuple[float | None, float | None]],
        options: LiveOptions,
        on_change: Callable[[], None],
        log_name: str,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        audio_muted: Callable[[], bool] = lambda: False,
        direct: DirectFeed | None = None,
    ) -> None:
        """Prepare the slots; every slot starts unavailable until ``set_allowed``."""
        self._slots = [_Slot(i) for i in range(slots)]
        self._feed = self.feed = feed
        feed.on_listener_failed = self._feed_listener_failed
        self._publisher = publisher
        self._source_profile = source_profile
        self.options = options
        self._on_change = on_change
        self._log_name = log_name
        self.idle_timeout = idle_timeout
        self._allowed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._media = SharedMedia(
            feed,
            self._spawn,
            log_name,
            on_video_failed=self._video_failed,
            on_audio_failed=self._audio_failed,
        )
        self._audio_muted = audio_muted
        self._direct = direct  # the opt-in direct path (live/direct.py), None when off
        self.history: deque[dict[str, Any]] = deque(maxlen=HISTORY)
        self.sessions_started = 0
        self.busy_answers = 0

    # -- state ----------------------------------------------------------------------------

    @property
    def viewers(self) -> int:
        """Return how many sessions are streaming."""
        return sum(1 for slot in self._slots if slot.session is not None)

    def set_allowed(self, allowed: bool) -> None:
        """Follow RTP Active and HomeKitCameraActive: off ends every session."""
        self._allowed = allowed
        if not allowed:
            for slot in self._slots:
                if not slot.idle:
                    self._end(slot, EndReason.CAMERA_OFF)
        for slot in self._slots:
            self._publish(slot)

    def _publish(self, slot: _Slot) -> None:
        """Publish a slot's StreamingStatus."""
        if not self._allowed:
            status = StreamingState.UNAVAILABLE
        elif slot.idle:
            status = StreamingState.AVAILABLE
        else:
            status = StreamingState.IN_USE
        self._publisher.set_streaming_status(slot.index, status)

    def source_info(self, init: InitSegment) -> SourceVideoInfo:
        """Return what the camera sends, from an init and the recent GOPs."""
        video = init.video
        fps, bitrate = self._source_profile()
        if video is None:
            return SourceVideoInfo("none", 0, 0, None, fps, bitrate)
        return SourceVideoInfo(
            video.codec, video.width, video.height, video.level_idc, fps, bitrate
        )

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
        if local is None or not _usable_srtp(request):
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
        try:
            video_socket = bind_socket(local, ipv6)
        except OSError as err:
            _LOGGER.warning("%s: cannot open a live view socket: %s", self._log_name, err)
            slot.setup_response = error
            return
        try:
            audio_socket = bind_socket(local, ipv6)
        except OSError as err:
            video_socket.close()
            _LOGGER.warning("%s: cannot open a live view socket: %s", self._log_name, err)
            slot.setup_response = error
            return
        video_ssrc, audio_ssrc = _ssrc(), _ssrc()
        slot.client = client.address
        slot.setup = _Setup(
            request.session_id,
            client.address,
            request,
            local,
            video_socket,
            audio_socket,
            video_ssrc,
            audio_ssrc,
        )
        # Echo the controller's keys: we send with what we answer (docs/live-view.md §1.5).
        slot.setup_response = SetupEndpointsResponse(
            session_id=request.session_id,
            status=SetupStatus.SUCCESS,
            address=EndpointAddress(
                request.address.ip_version,
                unscoped(local),
                video_socket.getsockname()[1],
                audio_socket.getsockname()[1],
            ),
            video_srtp=request.video_srtp,
            audio_srtp=request.audio_srtp,
            video_ssrc=video_ssrc,
            audio_ssrc=audio_ssrc,
        ).encode()
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

    # -- sessions -------------------------------------------------------------------------

    def _start(
        self, slot: _Slot, selection: SelectedRTPStreamConfiguration, client: HapClient
    ) -> None:
        """Start sending to the viewer of ``slot``."""
        setup = slot.setup
        if TYPE_CHECKING:
            assert setup is not None
        video = selection.video
        if (
            video is None
            or video.codec_type not in (None, _H264)
            or video.attributes is None
            or video.rtp is None
            or video.rtp.payload_type is None
        ):
            raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "incomplete video selection")
        rtp = video.rtp
        ipv6 = setup.request.address.ip_version == IPVersion.IPV6
        config = VideoConfig(
            payload_type=rtp.payload_type or 99,
            ssrc=setup.video_ssrc,
            max_payload=payload_budget(rtp.max_mtu, ipv6),
            rtcp_interval=rtp.rtcp_interval or 0.5,
            width=video.attributes.width,
            height=video.attributes.height,
            fps=video.attributes.frame_rate,
            max_bitrate_kbps=rtp.max_bitrate or 0,
        )
        audio = selection.audio
        packet_time = (
            audio.codec_parameters.packet_time
            if audio is not None and audio.codec_parameters is not None
            else None
        )
        request = ViewerRequest(
            config.width,
            config.height,
            config.fps,
            config.max_bitrate_kbps,
            packet_time,
            setup.request.address.address,
        )
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        transport = _transport(setup, self._log_name)
        session = LiveSession(
            video=config,
            transport=transport,
            idle_timeout=self.idle_timeout,
            on_idle=lambda: self._end_session(session, EndReason.RTCP_TIMEOUT),
            on_error=lambda error: self._video_failed(session, error),
            log_name=f"{self._log_name} slot {slot.index}",
        )
        record: dict[str, Any] = {
            "slot": slot.index,
            "session_id": setup.session_id.hex(),
            "viewer": f"{setup.request.address.address}:{setup.request.address.video_port}",
            "hap_connection": f"{setup.client[0]}:{setup.client[1]}",
            "requested": video_summary(selection),
            "started_at": time.time(),
            "mode": None,
            "reason": "waiting for the camera",
        }
        viewer = Viewer(
            self._media,
            self.options,
            self.source_info,
            session,
            request,
            selected_profile(selection),
            record,
        )
        viewer.audio = audio_sender_for(
            selection,
            endpoint=transport.audio,
            ssrc=setup.audio_ssrc,
            muted=self._audio_muted,
            record=record,
            log_name=self._log_name,
        )
        if viewer.audio is not None:
            sender = viewer.audio
            sender.on_error = lambda error: self._audio_failed(sender, error)
        if self._direct is not None:
            direct = self._direct
            viewer.on_copy = lambda: self._spawn(
                async_use_direct(viewer, direct), f"{self._log_name} live direct"
            )
        slot.session, slot.viewer, slot.setup = session, viewer, None
        self.sessions_started += 1
        self._spawn(self._async_run(slot, viewer), f"{self._log_name} live start")

    async def _async_run(self, slot: _Slot, viewer: Viewer) -> None:
        """Open the sockets, join the feed and start the session.

        The viewer can end (END, HAP connection closed, camera off) at every await: after
        each one nothing more is attached to a session that is no longer the slot's.
        """
        session = viewer.session
        try:
            await session.transport.async_open()
            if slot.session is not session:
                session.transport.close()
                return  # ended while the sockets opened
            was_running = self._feed.stream_running
            pending: Gop | None = await self._feed.async_add(viewer)
            session.timeline.stream_joined(was_running=was_running)
        except Exception as err:  # noqa: BLE001 - camera integrations raise anything
            _LOGGER.warning("%s: live view could not start: %s", self._log_name, err)
            viewer.record["error"] = f"could not start: {err}"
            self._end_session(session, EndReason.ERROR)
            return
        if slot.session is not session:
            self._feed.remove(viewer)
            return  # ended while the camera stream started
        if viewer.audio is not None:
            self._media.attach_audio(viewer.audio)
        if pending is not None:
            viewer.decide(pending.init, pending, None)
            if slot.session is not session:
                return  # its transcoder could not start
        session.start(pending if viewer.mode is LiveMode.COPY else None)
        if viewer.audio is not None:
            viewer.audio.start()
        _LOGGER.info(
            "%s: live view started for %s (slot %d, %s)",
            self._log_name,
            viewer.record["viewer"],
            slot.index,
            viewer.record["reason"],
        )

    def _feed_listener_failed(self, listener: object, err: Exception) -> None:
        """End every session fed by a consumer the feed dropped because it raised."""
        for slot in self._slots:
            viewer = slot.viewer
            if viewer is None:
                continue
            if (
                listener is viewer
                or listener is viewer.transcoded
                or (isinstance(listener, OpusFeed) and viewer.audio in listener.senders)
            ):
                viewer.record["error"] = f"{type(listener).__name__} failed: {err!r}"
                self._end(slot, EndReason.ERROR)

    def _end_session(self, session: LiveSession, reason: EndReason) -> None:
        """End whichever slot runs ``session``."""
        for slot in self._slots:
            if slot.session is session:
                self._end(slot, reason)

    def _setup_expired(self, slot: _Slot) -> None:
        """Free a slot whose setup was never started."""
        slot.timer = None
        if slot.setup is not None:
            self._end(slot, EndReason.NOT_STARTED)

    def _end(self, slot: _Slot, reason: EndReason) -> None:
        """Tear down a slot's setup or session and make it available again."""
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        if slot.setup is not None:
            slot.setup.close()
            slot.setup = None
        session, viewer = slot.session, slot.viewer
        slot.session = slot.viewer = None
        slot.client = slot.refusal = None
        if session is not None and viewer is not None:
            self._feed.remove(viewer)
            self._media.leave(viewer)
            if self._direct is not None:
                self._direct.remove(session)
            record = viewer.record
            record["end_reason"] = reason.value
            record["ended_at"] = time.time()
            record["stats"] = session.diagnostics()
            if viewer.audio is not None:
                record["audio_stats"] = viewer.audio.stats()
            self.history.append(record)
            _LOGGER.info(
                "%s: live view for %s ended (%s)", self._log_name, record["viewer"], reason
            )
            self._spawn(session.async_stop(), f"{self._log_name} live stop")
        slot.setup_response = SETUP_ENDPOINTS_IDLE
        slot.selected = selection_idle()
        self._publish(slot)
        self._on_change()

    def _refuse_start(
        self, slot: _Slot, selection: SelectedRTPStreamConfiguration, error: Exception
    ) -> None:
        """Free a slot whose START was refused and keep why in the history."""
        setup = slot.setup
        if setup is not None:
            self.history.append(
                {
                    "slot": slot.index,
                    "session_id": setup.session_id.hex(),
                    "viewer": f"{setup.request.address.address}:{setup.request.address.video_port}",
                    "requested": video_summary(selection),
                    "end_reason": EndReason.START_REFUSED.value,
                    "error": str(error),
                    "ended_at": time.time(),
                }
            )
        _LOGGER.info("%s: live view START refused: %s", self._log_name, error)
        self._end(slot, EndReason.START_REFUSED)

    def _video_failed(self, session: LiveSession, error: str) -> None:
        """End a session whose video stopped (its media task or its transcoder failed)."""
        for slot in self._slots:
            if slot.session is session and slot.viewer is not None:
                _LOGGER.warning(
                    "%s: live view for %s failed: %s",
                    self._log_name,
                    slot.viewer.record["viewer"],
                    error,
                )
                slot.viewer.record["error"] = error
                self._end(slot, EndReason.ERROR)

    def _audio_failed(self, sender: AudioSender, error: str) -> None:
        """Note that a viewer's audio stopped; its video goes on."""
        for slot in self._slots:
            viewer = slot.viewer
            if viewer is not None and viewer.audio is sender:
                viewer.record["audio"] = f"failed: {error}"
                self._on_change()

    def connection_lost(self, client: ClientAddress) -> None:
        """End every setup and session bound to a closed HAP connection."""
        for slot in self._slots:
            if slot.client == client:
                self._end(slot, EndReason.HAP_CLOSED)

    def _spawn(self, coro: Any, name: str) -> None:
        """Run ``coro`` as a task that ``async_stop`` waits for."""
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def async_stop(self) -> None:
        """End every session and release the camera stream (unload, HA stop)."""
        self._allowed = False
        for slot in self._slots:
            if not slot.idle:
                self._end(slot, EndReason.STOPPED)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)
        await self._feed.async_stop()
        if self._direct is not None:
            await self._direct.async_stop()

    def viewer_summaries(self) -> list[dict[str, Any]]:
        """Return who watches each busy slot, copy or transcode, and why."""
        return [
            {
                "slot": slot.index,
                "viewer": slot.viewer.record["viewer"],
                "mode": slot.viewer.record["mode"],
                "reason": slot.viewer.record["reason"],
                "audio": slot.viewer.record.get("audio"),
            }
            for slot in self._slots
            if slot.viewer is not None
        ]

    def last_ended(self) -> dict[str, Any] | None:
        """Return how the last session ended, and why (for the Live viewers sensor)."""
        if not self.history:
            return None
        record = self.history[-1]
        return {
            key: record[key]
            for key in ("viewer", "mode", "end_reason", "error", "audio")
            if record.get(key) is not None
        }

    def diagnostics(self) -> dict[str, Any]:
        """Return slots, running sessions and the last ended ones."""
        active = [
            {
                **slot.viewer.record,
                "stats": slot.session.diagnostics(),
                "audio_stats": slot.viewer.audio.stats() if slot.viewer.audio else None,
            }
            for slot in self._slots
            if slot.viewer is not None and slot.session is not None
        ]
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
            "active": active,
            "ended": list(self.history),
        }


def _usable_srtp(request: SetupEndpointsRequest) -> bool:
    """Return True if both media ask for AES_CM_128_HMAC_SHA1_80 with proper key sizes."""
    return all(
        params.suite == SrtpSuite.AES_CM_128_HMAC_SHA1_80
        and len(params.master_key) == _KEY_LENGTH
        and len(params.master_salt) == _SALT_LENGTH
        for params in (request.video_srtp, request.audio_srtp)
    )


def _ssrc() -> int:
    """Return a random non-zero SSRC."""
    return secrets.randbelow(0xFFFFFFFF) + 1


def _transport(setup: _Setup, log_name: str) -> SessionTransport:
    """Wrap a setup's sockets in SRTP endpoints aimed at the viewer."""
    request = setup.request
    holder: list[SessionTransport] = []

    def touch() -> None:
        holder[0].touch()

    endpoints = []
    for sock, params, port, ssrc in (
        (setup.video_socket, request.video_srtp, request.address.video_port, setup.video_ssrc),
        (setup.audio_socket, request.audio_srtp, request.address.audio_port, setup.audio_ssrc),
    ):
        endpoints.append(
            MediaEndpoint(
                sock,
                peer=peer_for(request.address.address, port, setup.local_address),
                send_context=SrtpContext(params.master_key, params.master_salt),
                receive_context=SrtpContext(params.master_key, params.master_salt),
                our_ssrc=ssrc,
                on_valid_rtcp=touch,
                log_name=log_name,
            )
        )
    transport = SessionTransport(endpoints[0], endpoints[1])
    holder.append(transport)
    return transport
