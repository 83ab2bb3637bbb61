"""The camera-like live feed really is live: paced, shared, and joined mid-GOP."""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import io
import os
from pathlib import Path
import signal
import time

import av
import pytest

from tests.e2e.live_source import TS_PACKET, LiveFeedSource
from tests.media import ClipSpec, write_clip
from tests.ports import free_port

FPS = 25


async def _receive(url_port: int, seconds: float) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", url_port)
    data = bytearray()
    deadline = time.monotonic() + seconds
    try:
        while (left := deadline - time.monotonic()) > 0:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), left)
            except TimeoutError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        writer.close()
    return bytes(data)


def _video_packets(data: bytes) -> list[tuple[bool, float]]:
    """Return (keyframe, pts seconds) of every video packet in a TS capture."""
    out: list[tuple[bool, float]] = []
    with av.open(io.BytesIO(data), format="mpegts") as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is None or packet.size == 0:
                continue
            out.append((packet.is_keyframe, float(packet.pts * stream.time_base)))
    return out


@pytest.mark.usefixtures("socket_enabled")
async def test_clients_join_a_shared_paced_feed_mid_gop(tmp_path: Path) -> None:
    """Late joiners get the same feed from where it is, not a fresh stream from a keyframe."""
    clip = write_clip(
        tmp_path / "clip.ts", ClipSpec(seconds=6.0, fps=FPS, gop_seconds=2.0, audio_codec=None)
    )
    source = LiveFeedSource(clip, free_port())
    await source.start()
    try:
        joins = []
        for delay in (0.0, 0.7, 0.7):
            await asyncio.sleep(delay)
            joins.append(asyncio.create_task(_receive(source.port, 2.5)))
        captures = await asyncio.gather(*joins)
    finally:
        await source.stop()

    assert source.connections == 3
    starts = []
    for data in captures:
        assert len(data) % TS_PACKET == 0
        packets = _video_packets(data)
        # Paced like a camera: 2.5 s of wall clock carries about 2.5 s of video, not the clip.
        span = packets[-1][1] - packets[0][1]
        assert 1.5 < span < 3.5, span
        starts.append(packets[0])
    # One feed: the joiners start at different points of the same timeline...
    assert starts[2][1] - starts[0][1] > 1.0
    # ...and a joiner lands mid-GOP (a per-client ffmpeg would always start on a keyframe).
    assert not all(keyframe for keyframe, _ in starts)


@pytest.mark.usefixtures("socket_enabled")
async def test_a_feed_starved_of_cpu_goes_on_at_real_time_not_faster(tmp_path: Path) -> None:
    """After ffmpeg was stopped a while (a loaded machine), the feed never runs ahead to catch up.

    Plain ``-re`` then reads 5 % fast until it is back on the wall clock; the RTSP test camera
    holds such frames ever longer and drops them (a long soak lost minutes of video so).
    """
    clip = write_clip(
        tmp_path / "clip.ts", ClipSpec(seconds=6.0, fps=FPS, gop_seconds=2.0, audio_codec=None)
    )
    source = LiveFeedSource(clip, free_port())
    await source.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", source.port)
    chunks: list[tuple[float, int]] = []  # (arrival, stream offset) of each read
    data = bytearray()

    async def receive(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            with contextlib.suppress(TimeoutError):
                chunk = await asyncio.wait_for(reader.read(65536), left)
                chunks.append((time.monotonic(), len(data)))
                data.extend(chunk)

    try:
        await receive(1.0)
        assert source._process is not None
        os.kill(source._process.pid, signal.SIGSTOP)
        await asyncio.sleep(3.0)
        os.kill(source._process.pid, signal.SIGCONT)
        resumed = time.monotonic()
        await receive(14.0)
    finally:
        writer.close()
        await source.stop()

    arrivals = [at for at, _ in chunks]
    offsets = [offset for _, offset in chunks]
    timed: list[tuple[float, float]] = []  # (arrival, pts) of each video packet
    with av.open(io.BytesIO(bytes(data)), format="mpegts") as container:
        stream = container.streams.video[0]
        for packet in container.demux(stream):
            if packet.pts is None or packet.pos is None or packet.pos < 0:
                continue
            arrival = arrivals[max(0, bisect.bisect_right(offsets, packet.pos) - 1)]
            timed.append((arrival, float(packet.pts * stream.time_base)))
    # Once whatever ffmpeg had written before the stop is out, media comes at the camera's rate.
    after = [(at, pts) for at, pts in timed if at >= resumed + 1.0]
    rate = (after[-1][1] - after[0][1]) / (after[-1][0] - after[0][0])
    assert 0.97 < rate < 1.025, rate
