"""The sessions in one camera's live-view stream slots: start, run, end, and why they ended.

A START (``LiveStreamManager.select_stream``) hands its slot's setup to a session and its viewer
and runs the start in a task: open the sockets, join the feed, attach the Opus encoder, decide
copy or transcode. The viewer can end at each await. Every way a session ends (END, the HAP
connection closing, RTCP silence, the camera turned off, a failed medium, unload) goes through
``_end``, which frees the slot and keeps the viewer's record in the history.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
import logging
from typing import TYPE_CHECKING, Any, Final

from ..hap.rtp_stream import SETUP_ENDPOINTS_IDLE, selection_idle
from .direct import DirectFeed, async_use_direct
from .endpoint_setup import session_transport
from .opus_feed import OpusFeed
from .policy import LiveMode, SourceVideoInfo, choose_live_mode
from .session import DEFAULT_IDLE_TIMEOUT, LiveSession
from .slots import EndReason, StreamSlot
from .viewer_reports import ended_record, refused_record
from .viewer_start import negotiated_video, start_record, viewer_request
from .viewers import LiveOptions, SharedMedia, Viewer, audio_sender_for, selected_profile

if TYPE_CHECKING:
    from ..hap.driver import HapClient
    from ..hap.rtp_stream import SelectedRTPStreamConfiguration
    from ..media.fmp4 import InitSegment
    from ..source.gop import Gop
    from .audio_sender import AudioSender
    from .slots import StreamingStatusPublisher
    from .source import LiveFeed

_LOGGER = logging.getLogger(__name__)

HISTORY: Final = 10


class SlotSessions:
    """Own the stream slots of one camera and start, run and end the sessions in them.

    ``LiveStreamManager`` answers the HAP requests on top of this.
    """

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
        self._slots = [StreamSlot(i) for i in range(slots)]
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

    def _publish(self, slot: StreamSlot) -> None:
        """Publish a slot's StreamingStatus."""
        self._publisher.set_streaming_status(slot.index, slot.streaming_state(self._allowed))

    def source_info(self, init: InitSegment) -> SourceVideoInfo:
        """Return what the camera sends, from an init and the recent GOPs."""
        video = init.video
        fps, bitrate = self._source_profile()
        if video is None:
            return SourceVideoInfo("none", 0, 0, None, fps, bitrate)
        return SourceVideoInfo(
            video.codec, video.width, video.height, video.level_idc, fps, bitrate
        )

    # -- sessions -------------------------------------------------------------------------

    def _start(
        self, slot: StreamSlot, selection: SelectedRTPStreamConfiguration, client: HapClient
    ) -> None:
        """Start sending to the viewer of ``slot``."""
        setup = slot.setup
        if TYPE_CHECKING:
            assert setup is not None
        config = negotiated_video(setup, selection)
        request = viewer_request(setup, selection, config)
        if slot.timer is not None:
            slot.timer.cancel()
            slot.timer = None
        transport = session_transport(setup, self._log_name)
        session = LiveSession(
            video=config,
            transport=transport,
            idle_timeout=self.idle_timeout,
            on_idle=lambda: self._end_session(session, EndReason.RTCP_TIMEOUT),
            on_error=lambda error: self._video_failed(session, error),
            log_name=f"{self._log_name} slot {slot.index}",
        )
        record = start_record(slot.index, setup, selection)
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

    async def _async_run(self, slot: StreamSlot, viewer: Viewer) -> None:
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
            if self._direct is not None and not was_running:
                self._spawn(
                    self._async_copy_direct_at_once(slot, viewer, self._direct),
                    f"{self._log_name} live direct start",
                )
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

    def _setup_expired(self, slot: StreamSlot) -> None:
        """Free a slot whose setup was never started."""
        slot.timer = None
        if slot.setup is not None:
            self._end(slot, EndReason.NOT_STARTED)

    def _end(self, slot: StreamSlot, reason: EndReason) -> None:
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
            record = ended_record(viewer, session, reason)
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
        self, slot: StreamSlot, selection: SelectedRTPStreamConfiguration, error: Exception
    ) -> None:
        """Free a slot whose START was refused and keep why in the history."""
        setup = slot.setup
        if setup is not None:
            self.history.append(refused_record(slot.index, setup, selection, error))
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

    async def _async_copy_direct_at_once(
        self, slot: StreamSlot, viewer: Viewer, direct: DirectFeed
    ) -> None:
        """Cold start on the direct path: decide from the camera's own stream.

        HA's first part comes a probe and a part after the camera's first keyframe; the direct
        demuxer knows the format as soon as it has connected. A viewer the camera's format lets
        copy is decided now, so its picture starts at the direct path's first keyframe; any
        other (transcode, a failed connection, HA's part first) is decided as usual.
        """
        video = await direct.async_format()
        if viewer.mode is not None or slot.session is not viewer.session:
            if viewer.mode is not LiveMode.COPY:
                direct.release()  # a copied viewer takes the direct path as usual
            return
        if video is None or not video.width or not video.height:
            direct.release()  # unknown size: HA's first part decides
            return
        fps, bitrate = self._source_profile()
        source = SourceVideoInfo("avc1", video.width, video.height, video.level_idc, fps, bitrate)
        options = viewer.options
        mode, _ = choose_live_mode(source, viewer.request, options.mode, options.max_bitrate_kbps)
        if mode is not LiveMode.COPY:
            direct.release()
            return
        viewer.decide_for(source, None, None)

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
            # Forget what was waited for here, not only in the done callbacks: a task that
            # ended in this loop turn is done before its callback has run, and gather over
            # done tasks returns without yielding, so the callback would never run and this
            # loop would spin on the event loop forever (the hang seen in CI teardowns).
            waited = list(self._tasks)
            await asyncio.gather(*waited, return_exceptions=True)
            self._tasks.difference_update(waited)
        await self._feed.async_stop()
        if self._direct is not None:
            await self._direct.async_stop()
