"""One live viewer: start at a keyframe, queue access units as they come, send them, report.

Start (docs/live-view.md §2.7): when the GOP in progress began less than ``catchup_seconds``
ago its frames go out at once, so the viewer has a picture right away; otherwise the session
waits for the next keyframe. Each access unit is sent as soon as it is queued, within a byte
budget (``video_sender.py``, docs/live-view.md §2.8). The queue is bounded in media time and
drops whole access units, skipping to the next keyframe. A worker restart (new epoch) resumes
at the next keyframe; a move to another source follows ``source_switch.py``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from .h264_rtp import avcc_nal_length_size, avcc_parameter_sets, patch_sps_level
from .source_switch import SourceSwitch, SwitchStep
from .start_timing import StartTimeline
from .video_sender import ByteBudget, VideoSender

if TYPE_CHECKING:
    from ..media.fmp4 import InitSegment, Sample
    from ..source.gop import Gop
    from ..source.part import MediaPart
    from .transport import SessionTransport

_LOGGER = logging.getLogger(__name__)

RTP_CLOCK: Final = 90_000
# Start from the GOP in progress when its keyframe is at most this old (else the next one).
DEFAULT_CATCHUP_SECONDS: Final = 1.0
# Never hold more than this much media for one viewer; beyond it skip to the next keyframe.
MAX_QUEUE_SECONDS: Final = 3.0
MIN_RTCP_INTERVAL: Final = 0.5
DEFAULT_IDLE_TIMEOUT: Final = 30.0  # Scrypted, homebridge-camera-ffmpeg and go2rtc use 30 s
# Where an access unit comes from: HA's parts (copied), a shared transcoder, or the camera's
# own stream read directly (docs/live-view.md §2.11).
SOURCE_PARTS: Final = "parts"
SOURCE_TRANSCODER: Final = "transcoder"
SOURCE_DIRECT: Final = "direct"


@dataclass(frozen=True, slots=True)
class VideoConfig:
    """The negotiated video parameters of a session."""

    payload_type: int
    ssrc: int
    max_payload: int
    rtcp_interval: float
    width: int
    height: int
    fps: int
    max_bitrate_kbps: int


@dataclass(slots=True)
class AccessUnit:
    """One video access unit ready to packetize."""

    data: memoryview | bytes  # AVCC
    dts: int  # 90 kHz
    pts: int  # 90 kHz
    keyframe: bool
    epoch: int
    arrived: float  # when its part reached hksv (time.monotonic())
    params: ParameterSets
    catchup: bool = False
    source: str = SOURCE_PARTS


@dataclass(frozen=True, slots=True)
class ParameterSets:
    """SPS/PPS and the NAL length size of one init."""

    sps: list[bytes]
    pps: list[bytes]
    nal_length_size: int


@dataclass(slots=True)
class SessionStats:
    """Counters for diagnostics."""

    started: float = field(default_factory=time.monotonic)
    first_packet_ms: float | None = None
    first_keyframe_ms: float | None = None
    frames_sent: int = 0
    keyframes_sent: int = 0
    frames_dropped: int = 0
    catchup_frames: int = 0
    paced_ms: float = 0.0  # total time access units waited for the byte budget
    epochs: int = 0
    sender_reports: int = 0


class LiveSession:
    """Send one viewer the camera's H.264 (copied or from a transcoder) as paced SRTP."""

    def __init__(
        self,
        *,
        video: VideoConfig,
        transport: SessionTransport,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
        catchup_seconds: float = DEFAULT_CATCHUP_SECONDS,
        on_idle: Callable[[], None],
        on_error: Callable[[str], None] = lambda error: None,
        log_name: str,
    ) -> None:
        """Prepare; nothing is sent before ``start``.

        ``on_error`` is called (on the loop) when a media task fails, so the session ends
        with a reason instead of looking alive with nothing sent.
        """
        self.video = video
        self.transport = transport
        self.idle_timeout = idle_timeout
        self.catchup_seconds = catchup_seconds
        self._on_idle = on_idle
        self._on_error = on_error
        self._log_name = log_name
        self._sender = VideoSender(
            ssrc=video.ssrc,
            payload_type=video.payload_type,
            max_payload=video.max_payload,
            clock_rate=RTP_CLOCK,
        )
        self._queue: deque[AccessUnit] = deque()
        self._queued = asyncio.Event()
        self._need_keyframe = True
        self._epoch: int | None = None
        self._params: dict[bytes, ParameterSets] = {}
        self._budget = ByteBudget()
        self._switch = SourceSwitch()  # a move between copy and a transcoder
        self._last_pushed_pts: int | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.suspended = False
        self.closed = False
        self.stats = SessionStats()
        self.timeline = StartTimeline()  # created at the Selected START write
        self.patch_level = False  # relabel a level > 4.0 SPS as 4.0 (policy decided it fits)

    # -- life cycle -----------------------------------------------------------------------

    def start(self, pending: Gop | None) -> None:
        """Start sending: from ``pending`` when recent, else at the next keyframe."""
        self.stats.started = time.monotonic()
        if (
            pending is not None
            and pending.video
            and (pending.duration_seconds <= self.catchup_seconds)
        ):
            self.timeline.replayed_gop(pending.duration_seconds)
            self._catch_up(pending)
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._send_loop(), name=f"{self._log_name} live video"),
            loop.create_task(self._report_loop(), name=f"{self._log_name} live rtcp"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Report a media task that died of an exception."""
        if task.cancelled() or self.closed:
            return
        error = task.exception()
        if error is not None:
            self._on_error(f"{task.get_name()}: {type(error).__name__}: {error}")

    async def async_stop(self) -> None:
        """Stop sending and close the sockets (idempotent)."""
        if self.closed:
            return
        self.closed = True
        tasks, self._tasks = self._tasks, []
        current = asyncio.current_task()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*(t for t in tasks if t is not current), return_exceptions=True)
        self._queue.clear()
        self.transport.close()

    def suspend(self) -> None:
        """Stop sending video (RTCP goes on)."""
        self.suspended = True
        self._queue.clear()

    def resume(self) -> None:
        """Send again from the next keyframe."""
        self.suspended = False
        self._need_keyframe = True

    def switch_source(
        self,
        *,
        source: str,
        request_keyframe: Callable[[], None],
        on_switched: Callable[[], None],
        same_timeline: bool = True,
    ) -> None:
        """Move to the other source at a keyframe newer than what the current one queued.

        The current source plays on until the new one delivers its first keyframe; then
        ``on_switched`` stops the old one, and the session goes on at the first keyframe of
        the new source newer than the last queued frame (asking for one with
        ``request_keyframe``), so the picture never steps back. SSRC and sequence numbers go
        on, and the RTP clock continues forward (docs/live-view.md §2.10). Sources on another
        timeline (``same_timeline`` False) start at their first keyframe.
        """
        self._switch.begin(
            source=source,
            request_keyframe=request_keyframe,
            on_switched=on_switched,
            same_timeline=same_timeline,
        )

    def cancel_switch(self) -> None:
        """Forget a switch whose new source never delivered a keyframe."""
        self._switch.cancel()

    # -- input ----------------------------------------------------------------------------

    def on_part(self, part: MediaPart) -> None:
        """Queue the video of a copied part (FeedListener)."""
        params = self._parameter_sets(part.init)
        if params is None:
            return
        self.push_samples(part.epoch, part.init, part.video, part.arrived, params)

    def push_samples(
        self,
        epoch: int,
        init: InitSegment,
        samples: list[Sample],
        arrived: float,
        params: ParameterSets | None = None,
        *,
        catchup: bool = False,
    ) -> None:
        """Queue AVCC samples of the init's video track."""
        if params is None:
            params = self._parameter_sets(init)
            if params is None:
                return
        video = init.video
        if video is None or self.closed or self.suspended:
            return
        scale = video.timescale
        for sample in samples:
            dts = sample.decode_time * RTP_CLOCK // scale
            pts = (sample.decode_time + sample.composition_offset) * RTP_CLOCK // scale
            self.push(
                AccessUnit(sample.data, dts, pts, sample.is_sync, epoch, arrived, params, catchup)
            )

    def push(self, unit: AccessUnit) -> None:
        """Queue one access unit, dropping what a viewer cannot use."""
        if self.closed or self.suspended:
            return
        step = self._switch.step(unit, self._last_pushed_pts)
        if step is SwitchStep.DROP:
            return
        if step is SwitchStep.TAKE_NEW_SOURCE:
            self._epoch = None  # start the new source like a new epoch, at this keyframe
        self._last_pushed_pts = unit.pts
        if not unit.catchup:
            self.timeline.part_received()
        if unit.epoch != self._epoch:
            if self._epoch is not None:
                self.stats.epochs += 1
            self._epoch = unit.epoch
            self._need_keyframe = True
        if self._need_keyframe:
            if not unit.keyframe:
                self.stats.frames_dropped += 1
                return
            self._need_keyframe = False
        queue = self._queue
        queue.append(unit)
        if unit.dts - queue[0].dts > MAX_QUEUE_SECONDS * RTP_CLOCK:
            self._drop_to_keyframe()
        self._queued.set()

    def _drop_to_keyframe(self) -> None:
        """Drop whole AUs up to the newest queued keyframe (or all, and wait for one)."""
        queue = self._queue
        keep = max((i for i, u in enumerate(queue) if u.keyframe), default=None)
        dropped = len(queue) if keep is None or keep == 0 else keep
        if keep is None or keep == 0:
            queue.clear()
            self._need_keyframe = True
        else:
            for _ in range(keep):
                queue.popleft()
        self.stats.frames_dropped += dropped
        _LOGGER.debug("%s: viewer queue too long; dropped %d frames", self._log_name, dropped)

    def _catch_up(self, pending: Gop) -> None:
        """Queue the GOP in progress to go out at once (within the byte budget)."""
        params = self._parameter_sets(pending.init)
        video = pending.init.video
        if params is None or video is None:
            return
        now = time.monotonic()
        before = len(self._queue)
        self.push_samples(pending.epoch, pending.init, pending.video, now, params, catchup=True)
        self.stats.catchup_frames = len(self._queue) - before

    def _parameter_sets(self, init: InitSegment) -> ParameterSets | None:
        """Return SPS/PPS of an init's avcC (cached; None for non-H.264)."""
        video = init.video
        if video is None or video.avcc is None:
            return None
        params = self._params.get(video.avcc)
        if params is None:
            try:
                sps, pps = avcc_parameter_sets(video.avcc)
                size = avcc_nal_length_size(video.avcc)
            except ValueError as err:
                _LOGGER.warning("%s: unusable avcC: %s", self._log_name, err)
                return None
            if self.patch_level:
                sps = [patch_sps_level(s) or s for s in sps]
            params = self._params[video.avcc] = ParameterSets(sps, pps, size)
            if len(self._params) > 4:
                self._params.pop(next(iter(self._params)))
        return params

    # -- output ---------------------------------------------------------------------------

    async def _send_loop(self) -> None:
        """Send queued AUs as soon as the byte budget allows."""
        queue = self._queue
        while True:
            if not queue:
                self._queued.clear()
                await self._queued.wait()
                continue
            now = time.monotonic()
            wait = self._budget.wait(now)
            if wait > 0:
                self.stats.paced_ms += wait * 1000
                await asyncio.sleep(wait)
                continue
            unit = queue.popleft()
            self._budget.spend(len(unit.data))
            self._send(unit, now)
            await asyncio.sleep(0)  # let other viewers and HA run between access units

    def _send(self, unit: AccessUnit, now: float) -> None:
        """Send one AU and count it."""
        packets = self._sender.send(unit, now, self.transport.video, patch_level=self.patch_level)
        self.timeline.sent(keyframe=unit.keyframe, now=now, source=unit.source)
        stats = self.stats
        elapsed_ms = (now - stats.started) * 1000
        if stats.first_packet_ms is None and packets:
            stats.first_packet_ms = elapsed_ms
        if unit.keyframe:
            stats.keyframes_sent += 1
            if stats.first_keyframe_ms is None:
                stats.first_keyframe_ms = elapsed_ms
        stats.frames_sent += 1

    async def _report_loop(self) -> None:
        """Send a sender report every RTCP interval and watch the viewer's reports."""
        interval = max(MIN_RTCP_INTERVAL, self.video.rtcp_interval)
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self.transport.last_valid_rtcp > self.idle_timeout:
                _LOGGER.info("%s: no RTCP from the viewer; ending live view", self._log_name)
                self._on_idle()
                return
            if self._sender.send_report(self.transport.video):
                self.stats.sender_reports += 1

    def diagnostics(self) -> dict[str, Any]:
        """Return counters for diagnostics."""
        stats = self.stats
        return {
            "start_to_first_packet_ms": _round(stats.first_packet_ms),
            "start_to_first_keyframe_ms": _round(stats.first_keyframe_ms),
            "frames_sent": stats.frames_sent,
            "keyframes_sent": stats.keyframes_sent,
            "frames_dropped": stats.frames_dropped,
            "catchup_frames": stats.catchup_frames,
            "paced_ms": round(stats.paced_ms, 1),
            "stream_restarts": stats.epochs,
            "sender_reports": stats.sender_reports,
            "rtp_packets": self._sender.packetizer.packets_sent,
            "rtp_octets": self._sender.packetizer.octets_sent,
            "datagrams": self.transport.video.packets_sent,
            "largest_datagram": self.transport.video.largest_datagram,
            "rtcp_received": self.transport.video.rtcp_received
            + self.transport.audio.rtcp_received,
            "rtcp_rejected": self.transport.video.rejected + self.transport.audio.rejected,
            "video_reception": self.transport.video.reception.as_dict(),
            "start": self.timeline.as_dict(),
        }


def _round(value: float | None) -> float | None:
    """Round milliseconds for display."""
    return None if value is None else round(value, 1)
