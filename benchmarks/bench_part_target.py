"""What short LL-HLS parts cost Home Assistant: its stream worker at 0.3 s parts vs 1 s.

One paced 1080p25 camera (2 s GOPs, AAC) joined mid-GOP by Home Assistant's real stream
worker, hksv's prebuffer attached as in production, with HA's default stream settings (1 s
parts) or hksv's short part target (``SHORT_PART_SECONDS``). Rounds alternate between the two
so a shared machine's drift hits both. Per round it reports the worker thread's CPU (from
/proc, the thread HA names ``stream_worker``), the whole process's CPU (event loop included:
HA's part callbacks and hksv's GOP assembly) and parts per second, which is also how often an
LL-HLS playlist changes and an LL-HLS player asks again.

    BENCH_WINDOW=30 BENCH_ROUNDS=3 ../shared/toolchain/py314 .venv/bin/pytest \
        benchmarks/bench_part_target.py -s -p no:randomly
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
import os
from pathlib import Path
import platform
import resource
import statistics
import threading
import time
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest

from custom_components.hksv.source.prebuffer import SHORT_PART_SECONDS, Prebuffer
from tests.conftest import CAMERA_ID, FakeCamera, free_port
from tests.e2e.live_source import LiveFeedSource
from tests.media import ClipSpec, write_clip

SOURCE = ClipSpec(
    seconds=30.0, width=1920, height=1080, fps=25, gop_seconds=2.0, video_bitrate_kbps=2000
)
WINDOW = float(os.environ.get("BENCH_WINDOW", "30"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
WARM_UP = 6.0
CACHE = Path(__file__).parent / "out" / "bench_part_target"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def _thread_cpu(native_id: int) -> float:
    """Return a thread's CPU seconds (user + system) from /proc."""
    with open(f"/proc/self/task/{native_id}/stat", encoding="ascii") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _worker_ids() -> list[int]:
    return [
        t.native_id
        for t in threading.enumerate()
        if t.name == "stream_worker" and t.native_id is not None
    ]


@pytest.fixture
async def live_feed(hass: HomeAssistant, socket_enabled: None) -> AsyncGenerator[LiveFeedSource]:
    """Serve the 1080p25 clip as a live feed; `stream` with HA's defaults (1 s parts)."""
    CACHE.mkdir(parents=True, exist_ok=True)
    clip = CACHE / "source.ts"
    if not clip.exists():
        await hass.async_add_executor_job(write_clip, clip, SOURCE)
    assert await async_setup_component(hass, "stream", {})
    source = LiveFeedSource(clip, free_port())
    await source.start()
    with patch("homeassistant.components.stream.STREAM_RESTART_INCREMENT", 1):
        yield source
    await source.stop()


@pytest.fixture
def stream_source(live_feed: LiveFeedSource) -> str:
    """Point the test camera at the feed."""
    return live_feed.url


async def _round(hass: HomeAssistant, target: float | None) -> tuple[float, float, float]:
    """Run the worker with ``target`` parts; return (worker CPU %, process CPU %, parts/s)."""
    prebuffer = Prebuffer(
        hass, CAMERA_ID, keep_seconds=8, log_name="bench", part_target_seconds=target
    )
    await prebuffer.async_start()
    try:
        async with asyncio.timeout(60):
            while prebuffer.buffered_seconds < 2:
                await asyncio.sleep(0.2)
        await asyncio.sleep(WARM_UP)
        workers = _worker_ids()
        assert len(workers) == 1, workers
        worker_before, process_before = _thread_cpu(workers[0]), _process_cpu()
        parts_before, wall = prebuffer.parts_received, time.monotonic()
        await asyncio.sleep(WINDOW)
        elapsed = time.monotonic() - wall
        worker = (_thread_cpu(workers[0]) - worker_before) / elapsed * 100
        process = (_process_cpu() - process_before) / elapsed * 100
        parts = (prebuffer.parts_received - parts_before) / elapsed
    finally:
        await prebuffer.async_close()
    return worker, process, parts


async def test_part_target_cost(hass: HomeAssistant, fake_camera: FakeCamera) -> None:
    """Alternate rounds of 1 s (HA's default) and short parts; print the medians."""
    results: dict[str, list[tuple[float, float, float]]] = {"1 s": [], "short": []}
    for _ in range(ROUNDS):
        for label, target in (("1 s", None), ("short", SHORT_PART_SECONDS)):
            results[label].append(await _round(hass, target))
    print()
    print(
        f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}; "
        f"{SOURCE.width}x{SOURCE.height}@{SOURCE.fps} {SOURCE.video_bitrate_kbps} kbit/s + AAC, "
        f"{ROUNDS} rounds of {WINDOW:g} s each"
    )
    for label, rounds in results.items():
        name = "1 s parts (HA default)" if label == "1 s" else f"{SHORT_PART_SECONDS} s parts"
        worker = statistics.median(r[0] for r in rounds)
        process = statistics.median(r[1] for r in rounds)
        parts = statistics.median(r[2] for r in rounds)
        each = ", ".join(f"{r[0]:.1f}" for r in rounds)
        print(
            f"  {name}: worker thread {worker:.1f} % of a core (rounds: {each}); "
            f"whole process {process:.1f} %; {parts:.2f} parts/s"
        )
