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
import logging
import secrets
import time
from typing import TYPE_CHECKING, Final

from .audio import AudioError, OpusLiveEncoder, OpusPacketizer, aac_audio_specific_config
from .rtcp import sender_report
from .session import RTP_CLOCK, SOURCE_TRANSCODER, AccessUnit, ParameterSets
from .transcode import EncodedSample, LiveTranscodeError, LiveVideoTarget, LiveVideoTranscoder

if TYPE_CHECKING:
    from ..recording.fmp4 import InitSegment, Sample
    from ..recording.gop import Gop
    from .session import LiveSession
    from .source import MediaPart
    from .transport import MediaEndpoint

_LOGGER = logging.getLogger(__name__)

# The transcoder's output carries SPS/PPS in-band on every IDR.
_IN_BAND: Final = ParameterSets([], [], 4)
MAX_AUDIO_QUEUE: Final = 100  # packets: 2 s at 20 ms


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

    def __init__(self, target: LiveVideoTarget, *, catchup_seconds: float, log_name: str) -> None:
        """Prepare; the transcoder starts with the first part (it needs the init)."""
        self.target = target
        self.catchup_seconds = catchup_seconds
        self._log_name = log_name
        self.sessions: list[LiveSession] = []
        self._transcoder: LiveVideoTranscoder | None = None
        self._source: tuple[int, bytes] | None = None  # (epoch, init fingerprint)
        self._epoch = 0
        self._loop = asyncio.get_running_loop()
        self._closing: list[LiveVideoTranscoder] = []
        self.restarts = 0
        self.failed: str | None = None

    def add(self, session: LiveSession, pending: Gop | None) -> None:
        """Serve ``session`` too; a new viewer gets an IDR soon."""
        self.sessions.append(session)
        if self._transcoder is not None:
            self._transcoder.force_keyframe()
        elif pending is not None and pending.duration_seconds <= self.catchup_seconds:
            self._ensure(pending.epoch, pending.init)
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
        self._ensure(part.epoch, part.init)
        self._put(part.init, part.video)

    def _ensure(self, epoch: int, init: InitSegment) -> None:
        """Start a transcoder for this epoch and init (a restarted worker gets a new one)."""
        key = (epoch, init.fingerprint)
        if self._source == key and self._transcoder is not None:
            return
        extradata = codec_extradata(init)
        if self._transcoder is not None:
            self._closing.append(self._transcoder)
            self._transcoder = None
            self.restarts += 1
        self._source = key
        if extradata is None:
            self.failed = f"cannot decode {init.video.codec if init.video else 'no video'}"
            return
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
            self.failed = str(err)
            _LOGGER.warning("%s: live transcoder unavailable: %s", self._log_name, err)

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

    async def async_close(self) -> None:
        """Stop every transcoder this feed started."""
        if self._transcoder is not None:
            self._closing.append(self._transcoder)
            self._transcoder = None
        closing, self._closing = self._closing, []
        for transcoder in closing:
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
    ) -> None:
        """Prepare; ``start`` runs the sending task."""
        self.endpoint = endpoint
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

    def pause(self, paused: bool) -> None:
        """Stop (dropping what is queued) or restart sending."""
        self.paused = paused
        if paused:
            self.packetizer.skip(len(self._queue))
            self._queue.clear()

    def push(self, packet: bytes) -> None:
        """Queue one Opus packet (dropped while the session is suspended)."""
        if self.paused:
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
        return {"packets": self.packetizer.packets_sent, "octets": self.packetizer.octets_sent}


class OpusFeed:
    """One Opus encoder for every viewer with the same sample rate and packet time."""

    def __init__(
        self, *, sample_rate: int, packet_time_ms: int, bitrate_kbps: int, log_name: str
    ) -> None:
        """Prepare; the encoder opens with the first part that has AAC."""
        self.sample_rate = sample_rate
        self.packet_time_ms = packet_time_ms
        self.bitrate_kbps = bitrate_kbps
        self._log_name = log_name
        self.senders: list[AudioSender] = []
        self._encoder: OpusLiveEncoder | None = None
        self._config: bytes | None = None
        self._work: asyncio.Queue[list[bytes]] = asyncio.Queue(maxsize=16)
        self._task: asyncio.Task[None] | None = None
        self.failed: str | None = None
        self.packets = 0

    def on_part(self, part: MediaPart) -> None:
        """Queue the part's AAC for the encoder (FeedListener)."""
        audio = part.init.audio
        if self.failed is not None or audio is None or not part.audio or not self.senders:
            return
        if audio.codec != "mp4a" or audio.object_type != 2:
            self.failed = f"camera audio is {audio.codec}/{audio.object_type}, not AAC-LC"
            return
        try:
            config = aac_audio_specific_config(audio.sample_rate, audio.channels)
        except AudioError as err:
            self.failed = str(err)
            return
        if config != self._config or self._encoder is None:
            self._config = config
            try:
                self._encoder = OpusLiveEncoder(
                    aac_config=config,
                    sample_rate=self.sample_rate,
                    packet_time_ms=self.packet_time_ms,
                    bitrate_kbps=self.bitrate_kbps,
                )
            except AudioError as err:
                self.failed = str(err)
                return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._encode_loop(), name=f"{self._log_name} live opus"
            )
        try:
            self._work.put_nowait([bytes(sample.data) for sample in part.audio])
        except asyncio.QueueFull:
            _LOGGER.debug("%s: Opus encoder behind; dropping a part of audio", self._log_name)

    async def _encode_loop(self) -> None:
        """Encode queued AAC on the encoder's thread and fan the packets out."""
        while True:
            samples = await self._work.get()
            encoder = self._encoder
            if encoder is None:
                continue
            packets = await encoder.async_encode(samples)
            self.packets += len(packets)
            for sender in self.senders:
                for packet in packets:
                    sender.push(packet)

    async def async_close(self) -> None:
        """Stop the encoder."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._encoder is not None:
            await self._encoder.async_close()
            self._encoder = None
