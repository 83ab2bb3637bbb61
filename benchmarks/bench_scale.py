"""Scale: N cameras in one Home Assistant, each prebuffering a paced 1080p source.

Prints, for each N, the HA process's CPU per camera and the event loop's lag (a
``call_later`` probe: how late a 50 ms timer fires, p50/p99) in two phases of the same run:
the cameras' stream workers kept alive by HA's own HLS provider (no hksv), then the same
cameras with an hksv entry each and its prebuffer attached. Not a test; reproduce with:

    BENCH_CAMERAS=2,4 ../shared/toolchain/py314 .venv/bin/pytest benchmarks/bench_scale.py \
        -s -p no:randomly

BENCH_CAMERAS (default "4") lists the camera counts; BENCH_WINDOW the seconds measured per
phase (default 20). Each camera has its own paced live feed (``LiveFeedSource``, one ffmpeg
each, outside the HA process). Concurrent recordings are not part of this benchmark yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
import os
from pathlib import Path
import platform
import resource
import statistics
import time
from typing import Any

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    setup_test_component_platform,
)

from custom_components.hksv.const import (
    CONF_ADDRESS,
    CONF_CAMERA,
    CONF_PORT,
    DEFAULT_OPTIONS,
    DOMAIN,
)
from tests.conftest import FakeCamera, free_port
from tests.e2e.live_source import LiveFeedSource
from tests.media import ClipSpec, write_clip

SOURCE = ClipSpec(
    seconds=30.0, width=1920, height=1080, fps=25, gop_seconds=2.0, video_bitrate_kbps=2000
)
COUNTS = [int(n) for n in os.environ.get("BENCH_CAMERAS", "4").split(",")]
WINDOW = float(os.environ.get("BENCH_WINDOW", "20"))
WARM_UP = 8.0
PROBE_INTERVAL = 0.05
CACHE = Path(__file__).parent / "out" / "bench_scale"
RESULTS: list[str] = []


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _measure(seconds: float) -> tuple[float, float, float]:
    """Return (CPU s per wall s, loop lag p50 ms, p99 ms) over ``seconds``."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    done = loop.create_future()
    end = time.monotonic() + seconds

    def probe(scheduled: float) -> None:
        now = time.monotonic()
        lags.append((now - scheduled - PROBE_INTERVAL) * 1000)
        if now >= end:
            done.set_result(None)
        else:
            loop.call_later(PROBE_INTERVAL, probe, now)

    cpu, wall = _cpu(), time.monotonic()
    loop.call_later(PROBE_INTERVAL, probe, wall)
    await done
    cpu_rate = (_cpu() - cpu) / (time.monotonic() - wall)
    quantiles = statistics.quantiles(lags, n=100)
    return cpu_rate, quantiles[49], quantiles[98]


@pytest.fixture(scope="module", autouse=True)
def summary() -> Any:
    """Print every number once more at the end, with the environment."""
    yield
    print("\n=== bench_scale ===")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    print("\n".join(RESULTS))


@pytest.fixture
async def clip(hass: HomeAssistant) -> Path:
    """Generate the 1080p source once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    path = CACHE / "source_1080p.ts"
    if not path.exists():
        await hass.async_add_executor_job(write_clip, path, SOURCE)
    return path


@pytest.fixture
async def feeds(
    hass: HomeAssistant, socket_enabled: None, clip: Path, request: pytest.FixtureRequest
) -> AsyncGenerator[list[LiveFeedSource]]:
    """Run one paced live feed per camera."""
    sources: list[LiveFeedSource] = []
    try:
        for _ in range(request.param):
            sources.append(LiveFeedSource(clip, free_port()))
            await sources[-1].start()
        yield sources
    finally:
        for source in sources:
            await source.stop()


@pytest.mark.parametrize("feeds", COUNTS, indirect=True)
async def test_scale(
    hass: HomeAssistant,
    mock_async_zeroconf: Any,
    hass_storage: dict[str, Any],
    feeds: list[LiveFeedSource],
) -> None:
    """Measure N cameras without hksv, then with hksv prebuffering each."""
    count = len(feeds)
    cameras = [FakeCamera(f"camera.bench_{i}", feed.url) for i, feed in enumerate(feeds)]
    for i, camera in enumerate(cameras):
        camera._attr_unique_id = f"bench-{i}"
        camera._attr_name = f"Bench {i}"
    assert await async_setup_component(hass, "stream", {})
    setup_test_component_platform(hass, "camera", cameras)
    assert await async_setup_component(hass, "camera", {"camera": {"platform": "test"}})
    await hass.async_block_till_done()

    idle = await _measure(5)
    _report(count, "idle HA (no streams)", idle, idle_rate=None)

    # Phase 1: HA alone keeps every camera's worker running (an HLS viewer's provider).
    streams = []
    for camera in cameras:
        stream = await camera.async_create_stream()
        assert stream is not None
        stream.add_provider("hls", timeout=3600)
        await stream.start()
        streams.append(stream)
    await asyncio.sleep(WARM_UP)
    _report(count, "stream workers only (HLS provider)", await _measure(WINDOW), idle_rate=idle[0])
    for stream in streams:
        await stream.remove_provider(stream.outputs()["hls"])

    # Phase 2: one hksv entry per camera with its prebuffer attached.
    entries = []
    for i, camera in enumerate(cameras):
        entry = MockConfigEntry(
            domain=DOMAIN,
            title=f"Bench {i}",
            data={CONF_CAMERA: camera.entity_id, CONF_PORT: free_port(), CONF_ADDRESS: "127.0.0.1"},
            options=dict(DEFAULT_OPTIONS),
            unique_id=f"bench-{i}",
        )
        hass_storage[f"{DOMAIN}.{entry.entry_id}"] = {
            "version": 1,
            "key": f"{DOMAIN}.{entry.entry_id}",
            "data": {"source": {"width": 1920, "height": 1080, "fps": 25.0}},
        }
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await entry.runtime_data.recorder.async_set_enabled(True, None)
        entries.append(entry)
    await asyncio.sleep(WARM_UP)
    buffered = [e.runtime_data.recorder.prebuffer.buffered_seconds for e in entries]
    _report(count, "hksv prebuffer on each camera", await _measure(WINDOW), idle_rate=idle[0])
    RESULTS.append(f"  N={count}: prebuffer seconds held per camera {sorted(buffered)}")
    for entry in entries:
        await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


def _report(
    count: int, phase: str, measured: tuple[float, float, float], *, idle_rate: float | None
) -> None:
    """Print CPU (per camera, above idle HA) and loop lag."""
    cpu_rate, p50, p99 = measured
    if idle_rate is None:
        cpu = f"{cpu_rate * 100:.1f} % of a core"
    else:
        cpu = f"{(cpu_rate - idle_rate) / count * 100:.1f} % of a core per camera above idle"
    line = f"  N={count}: {phase}: {cpu}; loop lag p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    print(line)
    RESULTS.append(line)
