"""One viewer's H.264 as RTP: packetized, on one continuous RTP clock, within a byte budget.

Sending (docs/live-view.md §2.8): every frame of a part is already late by the media time to
the part's end, so each access unit goes out as soon as it is queued. The only pacing is a byte
budget (a token bucket) that keeps a burst within what a receiver's socket buffer takes. A new
epoch (worker restart) or source keeps the SSRC and continuous sequence numbers; the RTP clock
jumps forward by the wall-clock gap.
"""

from __future__ import annotations

import secrets
import time
from typing import TYPE_CHECKING, Final

from .h264_rtp import LEVEL_4_0, H264Packetizer
from .rtcp import sender_report

if TYPE_CHECKING:
    from .session import AccessUnit, ParameterSets
    from .transport import MediaEndpoint

# Byte budget of the sender (docs/live-view.md §2.8): up to BURST_BYTES leave at once, then
# SEND_RATE_BYTES per second. 64 KiB is under a third of Linux's default UDP receive buffer;
# 3 MB/s (24 Mbit/s) is 4x the 6 Mbit/s copy cap and spreads a 1 s part of a 2 Mbit/s camera
# (~250 KB) over about 60 ms.
BURST_BYTES: Final = 64 * 1024
SEND_RATE_BYTES: Final = 3_000_000
CNAME: Final = "hksv"


class ByteBudget:
    """A token bucket in bytes: BURST_BYTES may leave at once, then SEND_RATE_BYTES a second."""

    def __init__(self) -> None:
        """Start full."""
        self.available = float(BURST_BYTES)  # negative while in debt
        self.refilled_at = time.monotonic()

    def wait(self, now: float) -> float:
        """Refill the budget; return how long to wait before the next AU may go."""
        self.available = min(
            float(BURST_BYTES), self.available + (now - self.refilled_at) * SEND_RATE_BYTES
        )
        self.refilled_at = now
        # An AU may leave while the budget is positive, even if larger: an IDR is never split
        # over time, and the debt it leaves delays what follows.
        return 0.0 if self.available > 0 else (1 - self.available) / SEND_RATE_BYTES

    def spend(self, size: int) -> None:
        """Take ``size`` bytes that just left."""
        self.available -= size


class VideoSender:
    """Packetize one viewer's access units, keep its RTP clock and write its sender reports."""

    def __init__(self, *, ssrc: int, payload_type: int, max_payload: int, clock_rate: int) -> None:
        """Prepare; the RTP clock starts at a random point with the first AU."""
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.packetizer = H264Packetizer(
            ssrc=ssrc,
            payload_type=payload_type,
            max_payload_size=max_payload,
            sequence=secrets.randbelow(1 << 16),
        )
        self._params: ParameterSets | None = None
        self._rtp_offset: int | None = None  # RTP timestamp = pts + offset
        self._last_rtp: tuple[float, int] | None = None  # (monotonic, RTP time of its DTS)
        self._sent_epoch: int | None = None
        self._sent_source: str | None = None

    def send(
        self, unit: AccessUnit, now: float, endpoint: MediaEndpoint, *, patch_level: bool
    ) -> int:
        """Packetize, encrypt and send one AU; return how many RTP packets went out."""
        packetizer = self.packetizer
        # The camera's in-band SPS carries the level too (most repeat it before every IDR).
        packetizer.sps_level = LEVEL_4_0 if patch_level else None
        if unit.params is not self._params:
            self._params = unit.params
            packetizer.set_parameter_sets(unit.params.sps, unit.params.pps)
        if (
            self._rtp_offset is None
            or unit.epoch != self._sent_epoch
            or unit.source != self._sent_source
        ):
            self._rebase_rtp_clock(unit, now)
        timestamp = (unit.pts + (self._rtp_offset or 0)) & 0xFFFFFFFF
        packets = packetizer.packetize(
            bytes(unit.data), timestamp, unit.keyframe, unit.params.nal_length_size
        )
        for packet in packets:
            endpoint.send_rtp(packet)
        self._last_rtp = (now, (unit.dts + (self._rtp_offset or 0)) & 0xFFFFFFFF)
        self._sent_epoch = unit.epoch
        self._sent_source = unit.source
        return len(packets)

    def _rebase_rtp_clock(self, unit: AccessUnit, now: float) -> None:
        """Map this epoch's PTS onto the RTP clock, continuing from what was sent."""
        if self._last_rtp is None:
            self._rtp_offset = secrets.randbelow(1 << 32) - unit.pts
            return
        sent_at, sent_ts = self._last_rtp
        gap = max(1, round((now - sent_at) * self.clock_rate))
        self._rtp_offset = sent_ts + gap - unit.dts

    def send_report(self, endpoint: MediaEndpoint) -> bool:
        """Send one SR + SDES; return False before the first AU (there is nothing to map)."""
        if self._last_rtp is None:
            return False
        now = time.monotonic()
        sent_at, sent_ts = self._last_rtp
        rtp_now = (sent_ts + round((now - sent_at) * self.clock_rate)) & 0xFFFFFFFF
        packetizer = self.packetizer
        endpoint.send_rtcp(
            sender_report(
                ssrc=self.ssrc,
                ntp_time=time.time(),
                rtp_timestamp=rtp_now,
                packet_count=packetizer.packets_sent,
                octet_count=packetizer.octets_sent,
                cname=CNAME,
            )
        )
        return True
