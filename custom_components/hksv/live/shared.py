"""Media made once per camera and shared by viewers: transcoded video per target, Opus audio.

A ``TranscodedFeed`` runs one ``LiveVideoTranscoder`` for every viewer that wants the same
picture (size, rate, bitrate): it takes the camera's parts from the feed and hands the encoded
access units to each of its sessions, which pace and packetize them like copied ones. An
``OpusFeed`` runs one ``OpusLiveEncoder`` per (sample rate, packet time) and hands each Opus
packet to every audio sender. Both stop with their last viewer.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Coroutine
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any, Final

from .audio import AudioError, OpusLiveEncoder, OpusPacketizer, aac_audio_specific_config
from .rtcp import sender_report
from .session import RTP_CLOCK, SOURCE_TRANSCODER, AccessUnit, ParameterSets
from .transcode import EncodedSample, LiveTranscodeError, LiveVideoTarget, LiveVideoTranscoder

if TYPE_CHECKING:
    from ..media.budget import Reservation
    from ..media.fmp4 import InitSegment, Sample
    from ..source.gop import Gop
    from ..source.part import MediaPart
    from .session import LiveSession
    from .transport import MediaEndpoint

_LOGGER = logging.getLogger(__name__)

# The transcoder's output carries SPS/PPS in-band on every IDR.
_IN_BAND: Final = ParameterSets([], [], 4)
MAX_AUDIO_QUEUE: Final = 100  # packets: 2 s at 20 ms
AAC_FRAME_SAMPLES: Final = 1024  # per AAC-LC access unit


def codec_extradata(init: InitSegment) -> tuple[str, bytes] | None:
    """Return the video decoder name and its extradata (avcC or hvcC payload) of an init."""
    video = init.video
    if video is None:
        return None
    if video.avcc is not None:
        return "h264", video.avcc
    data = init.data
    at = data.find(b"hvcC")
    if at < 4:
        return None
    size = int.from_bytes(data[at - 4 : at])
    if size < 8 or at - 4 + size > len(data):
        return None
    return "hevc", bytes(data[at + 4 : at - 4 + size])


class TranscodedFeed:
    """One live transcoder and the sessions watching its output."""

    def __init__(
        self,
        target: LiveVideoTarget,
        *,
        catchup_seconds: float,
        log_name: str,
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
        on_failed: Callable[[TranscodedFeed], None],
        reservation: Reservation | None = None,
    ) -> None:
        """Prepare; the transcoder starts with the first part (it needs the init).

        ``on_failed`` is called once when the transcoder cannot run (its sessions get no
        video); ``spawn`` runs the close of a transcoder replaced by a new epoch or init;
        ``reservation`` is this feed's share of the transcode budget, released on close.
        """
        self.target = target
        self._spawn = spawn
        self._on_failed = on_failed
        self._reservation = reservation
        self.catchup_seconds = catchup_seconds
        self._log_name = log_name
        self.sessions: list[LiveSession] = []
        self._transcoder: LiveVideoTranscoder | None = None
        self._source: tuple[int, bytes] | None = None  # (epoch, init fingerprint)
        self._epoch = 0
        self._loop = asyncio.get_running_loop()
        self.restarts = 0
        self.failed: str | None = None

    def add(self, session: LiveSession, pending: Gop | None) -> None:
        """Serve ``session`` too; a new viewer gets an IDR soon."""
        self.sessions.append(session)
        if self._transcoder is not None:
            self._transcoder.force_keyframe()
        elif (
            pending is not None
            and pending.duration_seconds <= self.catchup_seconds
            and self._ensure(pending.epoch, pending.init)
        ):
            self._put(pending.init, pending.video)

    def force_keyframe(self) -> None:
        """Make the transcoder's next frame an IDR (a viewer moving over waits for one)."""
        if self._transcoder is not None:
            self._transcoder.force_keyframe()

    def remove(self, session: LiveSession) -> None:
        """Stop serving ``session``."""
        if session in self.sessions:
            self.sessions.remove(session)

    def reconfigure(self, bitrate_kbps: int) -> None:
        """Encode at a new bitrate (every viewer of this target gets it)."""
        if self._transcoder is not None:
            self._transcoder.reconfigure(bitrate_kbps)

    def on_part(self, part: MediaPart) -> None:
        """Feed the camera's video to the transcoder (FeedListener)."""
        if self.failed is not None or not self.sessions:
            return
        transcoder = self._transcoder
        if transcoder is not None and transcoder.error is not None:
            self._fail(f"live transcoder stopped: {transcoder.error}")
            return
        if self._ensure(part.epoch, part.init):
            self._put(part.init, part.video)

    def _fail(self, reason: str) -> None:
        """Give up: keep the reason and tell the owner (it ends this feed's sessions)."""
        self.failed = reason
        self._on_failed(self)

    def _ensure(self, epoch: int, init: InitSegment) -> bool:
        """Start a transcoder for this epoch and init (a restarted worker gets a new one).

        Return False if none can run (the feed has failed).
        """
        key = (epoch, init.fingerprint)
        if self._source == key and self._transcoder is not None:
            return True
        extradata = codec_extradata(init)
        if self._transcoder is not None:
            # Its thread stops now, not when the last viewer leaves.
            replaced, self._transcoder = self._transcoder, None
            self.restarts += 1
            self._spawn(replaced.async_close(), f"{self._log_name} live transcoder stop")
        self._source = key
        if extradata is None:
            self._fail(f"cannot decode {init.video.codec if init.video else 'no video'}")
            return False
        self._epoch += 1
        epoch_out = self._epoch

        def on_sample(sample: EncodedSample) -> None:
            self._loop.call_soon_threadsafe(self._deliver, sample, epoch_out)

        try:
            self._transcoder = LiveVideoTranscoder(
                codec=extradata[0],
                extradata=extradata[1],
                target=self.target,
                on_sample=on_sample,
                name=self._log_name,
            )
        except LiveTranscodeError as err:
            _LOGGER.warning("%s: live transcoder unavailable: %s", self._log_name, err)
            self._fail(str(err))
            return False
        return True

    def _put(self, init: InitSegment, samples: list[Sample]) -> None:
        """Queue samples (90 kHz timestamps) for the transcoder."""
        transcoder = self._transcoder
        video = init.video
        if transcoder is None or video is None:
            return
        scale = video.timescale
        for sample in samples:
            dts = sample.decode_time * RTP_CLOCK // scale
            pts = (sample.decode_time + sample.composition_offset) * RTP_CLOCK // scale
            transcoder.put(bytes(sample.data), pts, sample.is_sync, dts)

    def _deliver(self, sample: EncodedSample, epoch: int) -> None:
        """Hand one encoded AU to every session (event loop)."""
        if epoch != self._epoch:
            return  # from a transcoder being replaced
        now = time.monotonic()
        for session in self.sessions:
            session.push(
                AccessUnit(
                    sample.data,
                    sample.pts,
                    sample.pts,
                    sample.keyframe,
                    epoch,
                    now,
                    _IN_BAND,
                    source=SOURCE_TRANSCODER,
                )
            )

    def stats(self) -> dict[str, object]:
        """Return the transcoder's counters."""
        stats = self._transcoder.stats() if self._transcoder is not None else None
        return {
            "target": f"{self.target.width}x{self.target.height}@{self.target.fps}",
            "bitrate_kbps": stats.bitrate_kbps if stats else None,
            "encoder": stats.encoder if stats else None,
            "frames_in": stats.frames_in if stats else 0,
            "frames_out": stats.frames_out if stats else 0,
            "busy_seconds": round(stats.busy_seconds, 3) if stats else 0.0,
            "viewers": len(self.sessions),
            "restarts": self.restarts,
            "failed": self.failed,
        }

    def release(self) -> None:
        """Give this feed's share of the transcode budget back (idempotent)."""
        if self._reservation is not None:
            self._reservation.release()

    async def async_close(self) -> None:
        """Stop the transcoder and give its share of the budget back."""
        self.release()
        transcoder, self._transcoder = self._transcoder, None
        if transcoder is not None:
            await transcoder.async_close()


class AudioSender:
    """One viewer's Opus stream: packetized at the negotiated clock, sent as it is encoded.

    Audio comes a part at a time like video and goes out at once like video (docs/live-view.md
    §2.8), so both streams' sender reports map the newest media to the same moment.
    """

    def __init__(
        self,
        *,
        endpoint: MediaEndpoint,
        ssrc: int,
        payload_type: int,
        sample_rate: int,
        packet_time_ms: int,
        rtcp_interval: float,
        log_name: str,
        muted: Callable[[], bool] = lambda: False,
    ) -> None:
        """Prepare; ``start`` runs the sending task.

        ``muted`` is asked for every packet: the Microphone's Mute takes effect at once.
        """
        self.endpoint = endpoint
        self._muted = muted
        self.on_error: Callable[[str], None] = lambda error: None
        self.failed: str | None = None
        self.muted_packets = 0
        self._skip_carry = 0.0  # packet times not encoded while muted, not yet skipped
        self.packetizer = OpusPacketizer(
            ssrc=ssrc,
            payload_type=payload_type,
            sample_rate=sample_rate,
            packet_time_ms=packet_time_ms,
            sequence=secrets.randbelow(1 << 16),
            timestamp=secrets.randbelow(1 << 32),
        )
        self.ssrc = ssrc
        self.sample_rate = sample_rate
        self.packet_seconds = packet_time_ms / 1000
        self.rtcp_interval = max(0.5, rtcp_interval)
        self._log_name = log_name
        self._queue: deque[bytes] = deque(maxlen=MAX_AUDIO_QUEUE)
        self._queued = asyncio.Event()
        self._sent = 0
        self._last: tuple[float, int] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.paused = False

    def start(self) -> None:
        """Start sending and reporting."""
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._send_loop(), name=f"{self._log_name} live audio"),
            loop.create_task(self._report_loop(), name=f"{self._log_name} audio rtcp"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """Report a task that died of an exception (audio stops; the owner records why)."""
        if task.cancelled() or task.exception() is None:
            return
        error = task.exception()
        self.fail(f"{task.get_name()}: {type(error).__name__}: {error}")

    def fail(self, reason: str) -> None:
        """Stop sending for good and report ``reason`` once."""
        if self.failed is not None:
            return
        self.failed = reason
        self.paused = True
        self._queue.clear()
        for task in self._tasks:
            task.cancel()
        self.on_error(reason)

    def pause(self, paused: bool) -> None:
        """Stop (dropping what is queued) or restart sending."""
        self.paused = paused
        if paused:
            self.packetizer.skip(len(self._queue))
            self._queue.clear()

    @property
    def silent(self) -> bool:
        """Return True while nothing is to be sent (muted, suspended or failed)."""
        return self.paused or self._muted()

    def skip_seconds(self, seconds: float) -> None:
        """Advance the RTP clock over audio that was not even encoded (everyone muted)."""
        self._skip_carry += seconds / self.packet_seconds
        packets = int(self._skip_carry)
        self._skip_carry -= packets
        self.packetizer.skip(packets)
        self.muted_packets += packets

    def push(self, packet: bytes) -> None:
        """Queue one Opus packet (dropped while the session is suspended or muted)."""
        if self.paused or self._muted():
            self.muted_packets += 0 if self.paused else 1
            self.packetizer.skip(1)  # the audio clock keeps running through a pause
            return
        self._queue.append(packet)
        self._queued.set()

    async def _send_loop(self) -> None:
        """Send each packet as soon as it is queued (a part's audio is a few small packets)."""
        while True:
            if not self._queue:
                self._queued.clear()
                await self._queued.wait()
                continue
            if self._muted():
                # Muted while packets were queued: drop them now, the clock runs on.
                self.muted_packets += len(self._queue)
                self.packetizer.skip(len(self._queue))
                self._queue.clear()
                continue
            packet = self._queue.popleft()
            rtp = self.packetizer.packetize(packet)
            self.endpoint.send_rtp(rtp)
            self._last = (time.monotonic(), int.from_bytes(rtp[4:8]))
            self._sent += 1

    async def _report_loop(self) -> None:
        """Send an audio SR every RTCP interval."""
        while True:
            await asyncio.sleep(self.rtcp_interval)
            if self._last is None:
                continue
            sent_at, sent_ts = self._last
            rtp_now = sent_ts + round((time.monotonic() - sent_at) * self.sample_rate)
            self.endpoint.send_rtcp(
                sender_report(
                    ssrc=self.ssrc,
                    ntp_time=time.time(),
                    rtp_timestamp=rtp_now,
                    packet_count=self.packetizer.packets_sent,
                    octet_count=self.packetizer.octets_sent,
                    cname="hksv",
                )
            )

    async def async_stop(self) -> None:
        """Stop sending."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def stats(self) -> dict[str, int]:
        """Return counters."""
        return {
            "packets": self.packetizer.packets_sent,
            "octets": self.packetizer.octets_sent,
            "muted_packets": self.muted_packets,
        }


class OpusFeed:
    """One Opus encoder for every viewer with the same sample rate and packet time.

    ``on_part`` only queues AAC (it runs inside Home Assistant's part loop); opening the
    codecs and encoding happen in the encode task, on the encoder's thread. Anything that
    goes wrong there ends this encoder alone: one log line, ``failed`` says why, and
    ``on_failed`` lets the owner detach it and tell its viewers.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        packet_time_ms: int,
        bitrate_kbps: int,
        log_name: str,
        on_failed: Callable[[OpusFeed], None] = lambda feed: None,
    ) -> None:
        """Prepare; the encoder opens with the first part that has AAC."""
        self.sample_rate = sample_rate
        self.packet_time_ms = packet_time_ms
        self.bitrate_kbps = bitrate_kbps
        self._log_name = log_name
        self._on_failed = on_failed
        self.senders: list[AudioSender] = []
        self._encoder: OpusLiveEncoder | None = None
        self._config: bytes | None = None  # of the open encoder
        self._work: asyncio.Queue[tuple[bytes, list[bytes]]] = asyncio.Queue(maxsize=16)
        self._task: asyncio.Task[None] | None = None
        self.failed: str | None = None
        self.packets = 0

    def on_part(self, part: MediaPart) -> None:
        """Queue the part's AAC for the encoder (FeedListener; never blocks)."""
        audio = part.init.audio
        if self.failed is not None or audio is None or not part.audio or not self.senders:
            return
        if audio.codec != "mp4a" or audio.object_type != 2:
            self._fail(f"camera audio is {audio.codec}/{audio.object_type}, not AAC-LC")
            return
        try:
            config = aac_audio_specific_config(audio.sample_rate, audio.channels)
        except AudioError as err:
            self._fail(str(err))
            return
        if all(sender.silent for sender in self.senders):
            # Nobody hears it: do not encode; the senders' clocks run on.
            seconds = len(part.audio) * AAC_FRAME_SAMPLES / audio.sample_rate
            for sender in self.senders:
                sender.skip_seconds(seconds)
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._encode_loop(), name=f"{self._log_name} live opus"
            )
        try:
            self._work.put_nowait((config, [bytes(sample.data) for sample in part.audio]))
        except asyncio.QueueFull:
            _LOGGER.debug("%s: Opus encoder behind; dropping a part of audio", self._log_name)

    async def _encode_loop(self) -> None:
        """Open the codecs off the loop, encode queued AAC and fan the packets out."""
        try:
            while True:
                config, samples = await self._work.get()
                encoder = await self._encoder_for(config)
                packets = await encoder.async_encode(samples)
                self.packets += len(packets)
                for sender in self.senders:
                    for packet in packets:
                        sender.push(packet)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - a codec failure ends this encoder, not HA
            self._fail(f"{type(err).__name__}: {err}")

    async def _encoder_for(self, config: bytes) -> OpusLiveEncoder:
        """Return the encoder for ``config``, opening it in a thread (a new one closes the old)."""
        encoder = self._encoder
        if encoder is not None and config == self._config:
            return encoder
        self._encoder = None
        if encoder is not None:
            await encoder.async_close()
        encoder = await asyncio.to_thread(
            OpusLiveEncoder,
            aac_config=config,
            sample_rate=self.sample_rate,
            packet_time_ms=self.packet_time_ms,
            bitrate_kbps=self.bitrate_kbps,
        )
        self._encoder, self._config = encoder, config
        return encoder

    def _fail(self, reason: str) -> None:
        """Stop for good with ``reason`` (logged once)."""
        if self.failed is not None:
            return
        self.failed = reason
        _LOGGER.warning("%s: live audio stopped: %s", self._log_name, reason)
        self._on_failed(self)

    async def async_close(self) -> None:
        """Stop the encoder."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        encoder, self._encoder = self._encoder, None
        if encoder is not None:
            await encoder.async_close()
