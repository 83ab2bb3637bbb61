"""One viewer's Opus audio as RTP: packetized at the negotiated clock, sent as it is encoded."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
import secrets
import time
from typing import TYPE_CHECKING, Final

from .audio import OpusPacketizer
from .rtcp import sender_report

if TYPE_CHECKING:
    from .transport import MediaEndpoint

MAX_AUDIO_QUEUE: Final = 100  # packets: 2 s at 20 ms


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
