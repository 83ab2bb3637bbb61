"""LiveSession without a network: start policy, byte budget, queue bound, epochs, RTP clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import pairwise
import struct
from typing import Any

import pytest

from custom_components.hksv.live.session import (
    MAX_QUEUE_SECONDS,
    RTP_CLOCK,
    AccessUnit,
    LiveSession,
    ParameterSets,
    VideoConfig,
)
from custom_components.hksv.live.video_sender import BURST_BYTES, SEND_RATE_BYTES

SPS = bytes.fromhex("6742c01e95a0501ed808")
PPS = bytes.fromhex("68ce3c80")
PARAMS = ParameterSets([SPS], [PPS], 4)
FRAME = RTP_CLOCK // 25


def _avcc(nal: bytes) -> bytes:
    return struct.pack(">I", len(nal)) + nal


IDR = _avcc(b"\x65" + bytes(3000))
P_FRAME = _avcc(b"\x41" + bytes(500))


@dataclass
class _Endpoint:
    sent: list[bytes] = field(default_factory=list)
    packets_sent: int = 0
    largest_datagram: int = 0
    rtcp_received: int = 0
    rejected: int = 0
    reception: Any = None

    def send_rtp(self, rtp: bytes) -> None:
        self.sent.append(rtp)

    def send_rtcp(self, rtcp: bytes) -> None:
        self.sent.append(rtcp)


@dataclass
class _Transport:
    video: _Endpoint = field(default_factory=_Endpoint)
    audio: _Endpoint = field(default_factory=_Endpoint)
    last_valid_rtcp: float = 0.0

    def close(self) -> None:
        pass


def _session() -> LiveSession:
    config = VideoConfig(99, 0xABCD, 1300, 0.5, 1280, 720, 30, 299)
    return LiveSession(
        video=config,
        transport=_Transport(),  # type: ignore[arg-type]
        on_idle=lambda: None,
        log_name="test",
    )


def _unit(index: int, *, key: bool = False, epoch: int = 0, arrived: float = 100.0) -> AccessUnit:
    return AccessUnit(
        IDR if key else P_FRAME, index * FRAME, index * FRAME, key, epoch, arrived, PARAMS
    )


def test_waits_for_a_keyframe_then_queues() -> None:
    """Frames before the first keyframe are dropped; a keyframe starts the queue."""
    session = _session()
    session.push(_unit(0))
    session.push(_unit(1))
    assert not session._queue
    session.push(_unit(2, key=True))
    session.push(_unit(3))
    assert [u.dts // FRAME for u in session._queue] == [2, 3]
    assert session.stats.frames_dropped == 2


def _send_times(session: LiveSession, sizes: list[int], start: float) -> list[float]:
    """Return when the send loop lets each AU of ``sizes`` go, all queued at ``start``."""
    now, times = start, []
    budget = session._budget
    budget.refilled_at = min(budget.refilled_at, start)  # a fresh session: full budget at start
    for size in sizes:
        while (wait := budget.wait(now)) > 0:
            now += wait
        budget.spend(size)
        times.append(now)
    return times


def test_a_part_goes_out_as_soon_as_it_arrives() -> None:
    """A part within the byte budget is not spread over time: every AU leaves on arrival."""
    session = _session()
    sizes = [len(IDR)] + [len(P_FRAME)] * 24  # one second of this stream: ~15 KB
    assert _send_times(session, sizes, 100.0) == [100.0] * 25


def test_a_burst_beyond_the_budget_leaves_at_the_send_rate() -> None:
    """What exceeds BURST_BYTES is spread at SEND_RATE_BYTES, and no faster."""
    session = _session()
    sizes = [10_000] * 40  # 400 KB at once: a 1 s part of a 3.2 Mbit/s camera
    times = _send_times(session, sizes, 100.0)
    # The first AUs go at once, until the budget is spent (one AU may overdraw it).
    assert times[: BURST_BYTES // 10_000 + 1] == [100.0] * (BURST_BYTES // 10_000 + 1)
    over = sum(sizes[:-1]) - BURST_BYTES  # the last AU leaves once the debt before it is paid
    assert times[-1] == pytest.approx(100.0 + over / SEND_RATE_BYTES, rel=0.01)
    # Sustained, the rate never exceeds SEND_RATE_BYTES (plus the initial burst).
    for i, when in enumerate(times):
        assert sum(sizes[:i]) <= BURST_BYTES + (when - 100.0) * SEND_RATE_BYTES + 1


def test_the_budget_refills_between_parts() -> None:
    """After a pause as long as a part, a new part gets the whole burst again."""
    session = _session()
    _send_times(session, [BURST_BYTES], 100.0)
    assert session._budget.wait(100.0) > 0  # spent
    assert _send_times(session, [BURST_BYTES // 2] * 2, 100.3) == [100.3, 100.3]


def test_queue_bound_drops_whole_aus_to_the_next_keyframe() -> None:
    """Beyond MAX_QUEUE_SECONDS the oldest AUs go, up to the newest keyframe."""
    session = _session()
    count = int(MAX_QUEUE_SECONDS * 25) + 2
    for i in range(count):
        session.push(_unit(i, key=i in (0, 50)))
    assert session._queue[0].keyframe
    assert session._queue[0].dts == 50 * FRAME
    assert session.stats.frames_dropped == 50


def test_epoch_change_keeps_sequence_and_moves_the_clock_forward() -> None:
    """After a worker restart: same SSRC, next sequence number, RTP time continues forward."""
    session = _session()
    for i in range(3):
        session._send(_unit(i, key=i == 0), 10.0 + i / 25)
    endpoint = session.transport.video
    before = list(endpoint.sent)  # type: ignore[attr-defined]
    session.push(_unit(5000, epoch=1))  # not a keyframe: dropped
    session.push(_unit(5001, key=True, epoch=1, arrived=12.0))
    unit = session._queue.popleft()
    session._send(unit, 12.0)
    after = endpoint.sent[len(before) :]  # type: ignore[attr-defined]
    seqs = [struct.unpack_from(">H", p, 2)[0] for p in before + after]
    assert all((b - a) % 65536 == 1 for a, b in pairwise(seqs))
    assert {struct.unpack_from(">I", p, 8)[0] for p in before + after} == {0xABCD}
    last_ts = struct.unpack_from(">I", before[-1], 4)[0]
    new_ts = struct.unpack_from(">I", after[0], 4)[0]
    gap = (new_ts - last_ts) % 2**32
    # 2 s - 2 frames of wall time passed: the clock moves forward by that, not by the PTS jump.
    assert gap == pytest.approx((12.0 - (10.0 + 2 / 25)) * RTP_CLOCK, abs=2)
    assert after[0][12] == 24  # STAP-A with SPS/PPS leads the IDR
