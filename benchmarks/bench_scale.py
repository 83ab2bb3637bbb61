"""Scale: N cameras in one Home Assistant, each prebuffering a paced 1080p source.

Prints, for each N, the HA process's CPU per camera and the event loop's lag (a
``call_later`` probe: how late a 50 ms timer fires, p50/p99) in three phases of the same run:
the cameras' stream workers kept alive by HA's own HLS provider (no hksv); the same cameras
with an hksv entry each and its prebuffer attached; then K of them recording at once, each
to its own aiohomekit-paired hub emulator over a real HDS connection (selection, Stream &
Allow Recording, dataSend open, read until the window ends). For the recordings it also
prints the bitrate arriving at the hubs, how far each stream is behind live at the start
and at the end of the window (the media a live stream would have delivered since the open
minus the media received: steady when it keeps up, growing when it falls behind), the
recording mode and whether each was still streaming when the window ended. Not a test;
reproduce with:

    BENCH_CAMERAS=4,8,16 BENCH_WINDOW=15 ../shared/toolchain/py314 .venv/bin/pytest \
        benchmarks/bench_scale.py -s -p no:randomly

BENCH_CAMERAS (default "4") lists the camera counts; BENCH_WINDOW the seconds measured per
phase (default 20); BENCH_RECORDING how many cameras record at once (default min(N, 4));
BENCH_VIDEO_MODE the entries' video mode option (default "copy"; "auto" or "transcode").
Each camera has its own paced live feed (``LiveFeedSource``, one ffmpeg each, outside the HA
process, so not in the CPU figures, but on the same cores). Everything is on loopback.
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
    OPT_VIDEO_MODE,
)
from tests.conftest import FakeCamera
from tests.e2e.live_source import LiveFeedSource
from tests.hub.emulator import HomeHub, media_seconds
from tests.hub.hds_client import HDSClient, Recording
from tests.media import ClipSpec, write_clip
from tests.ports import free_port

SOURCE = ClipSpec(
    seconds=30.0, width=1920, height=1080, fps=25, gop_seconds=2.0, video_bitrate_kbps=2000
)
# What the startup probe would store for SOURCE (skips the probe).
KNOWN_SOURCE = {
    "width": 1920,
    "height": 1080,
    "fps": 25.0,
    "audio_codec": "aac-lc",
    "audio_sample_rate": 32000,
    "audio_channels": 1,
}
COUNTS = [int(n) for n in os.environ.get("BENCH_CAMERAS", "4").split(",")]
RECORDING = os.environ.get("BENCH_RECORDING")
# "copy" by default: the source is within the hub's 2000 kbit/s, but its bitrate measured over
# a few GOPs sometimes crosses auto's tolerance, and one 1080p re-encode takes about a core.
VIDEO_MODE = os.environ.get("BENCH_VIDEO_MODE", "copy")
WINDOW = float(os.environ.get("BENCH_WINDOW", "20"))
WARM_UP = 8.0
RECORDING_WARM_UP = 3.0
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
    session_keys: None,
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
            options={**DEFAULT_OPTIONS, OPT_VIDEO_MODE: VIDEO_MODE},
            unique_id=f"bench-{i}",
        )
        hass_storage[f"{DOMAIN}.{entry.entry_id}"] = {
            "version": 1,
            "key": f"{DOMAIN}.{entry.entry_id}",
            "data": {"source": KNOWN_SOURCE},
        }
        entry.add_to_hass(hass)
        assert await hass.config_entries.async_setup(entry.entry_id)
        await entry.runtime_data.recorder.async_set_enabled(True, None)
        entries.append(entry)
    await asyncio.sleep(WARM_UP)
    buffered = [e.runtime_data.recorder.prebuffer.buffered_seconds for e in entries]
    hksv = await _measure(WINDOW)
    _report(count, "hksv prebuffer on each camera", hksv, idle_rate=idle[0])
    RESULTS.append(f"  N={count}: prebuffer seconds held per camera {sorted(buffered)}")

    # Phase 3: K of the N cameras record at once, each to its own paired hub emulator.
    recording = min(count, int(RECORDING)) if RECORDING else min(count, 4)
    hubs: list[HomeHub] = []
    clients: list[HDSClient] = []
    opened: list[float] = []
    try:
        for entry in entries[:recording]:
            hubs.append(HomeHub(entry.runtime_data.port, alias=f"hub-{len(hubs)}"))
            await hubs[-1].pair(entry.runtime_data.setup_code)
            await hubs[-1].enable_recording(await hubs[-1].select_from_offer(), audio=True)
        for entry in entries[:recording]:
            prebuffer = entry.runtime_data.recorder.prebuffer
            await _until(lambda p=prebuffer: p.buffered_seconds >= p.keep_seconds)
        for hub in hubs:
            clients.append(await hub.open_data_stream(name=f"hub-{len(clients)}"))
            clients[-1].timeout = 120
            assert (await clients[-1].open_recording(1)).status == 0
            opened.append(time.monotonic())
        recordings = [client.recordings[1] for client in clients]
        await asyncio.sleep(RECORDING_WARM_UP)
        before = [(time.monotonic(), len(r.chunks)) for r in recordings]
        measured = await _measure(WINDOW)
        after = [(time.monotonic(), len(r.chunks)) for r in recordings]
        _report(
            count, f"hksv prebuffer on each, {recording} recording", measured, idle_rate=idle[0]
        )
        hksv_rate = measured[0] - hksv[0]
        line = f"  N={count}: each recording adds {hksv_rate / recording * 100:.1f} % of a core"
        print(line)
        RESULTS.append(line)
        _report_recordings(count, entries[:recording], recordings, opened, before, after)
    finally:
        for client in clients:
            client.close_stream(1, 0)
            await client.close()
        for hub in hubs:
            await hub.close()
    for entry in entries:
        await hass.config_entries.async_unload(entry.entry_id)
    await hass.async_block_till_done()


async def _until(condition: Any, timeout: float = 120) -> None:
    """Poll ``condition`` (a benchmark, not a test: plain polling is fine)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.2)


def _report_recordings(
    count: int,
    entries: list[MockConfigEntry],
    recordings: list[Recording],
    opened: list[float],
    before: list[tuple[float, int]],
    after: list[tuple[float, int]],
) -> None:
    """Print what reached each hub during the window: bitrate, and how far behind live.

    Behind live = the media a live stream would have delivered since the open (the
    prebuffer sent plus the wall time since) minus the media of the fragments received.
    A fragment is sent once complete, so a stream keeping up stays about one fragment
    (4 s) plus assembly behind; a stream falling behind grows by the window's length.
    """
    rates, start_lag, end_lag, modes, alive = [], [], [], [], 0
    for entry, recording, open_time, (t0, n0), (t1, n1) in zip(
        entries, recordings, opened, before, after, strict=True
    ):
        rates.append(sum(len(c.data) for c in recording.chunks[n0:n1]) * 8 / (t1 - t0) / 1000)
        summary = entry.runtime_data.recorder._active.get(1)
        sent = summary.prebuffer_seconds if summary is not None else 0.0
        for lags, at, n in ((start_lag, t0, n0), (end_lag, t1, n1)):
            lags.append(sent + at - open_time - media_seconds(Recording(1, recording.chunks[:n])))
        modes.append(summary.mode if summary is not None else "ended")
        if summary is not None and summary.mode_reasons:
            line = f"  N={count}: {entry.title} {summary.mode}: {'; '.join(summary.mode_reasons)}"
            print(line)
            RESULTS.append(line)
        alive += summary is not None and not recording.closed and not recording.ended
    line = (
        f"  N={count}: at the hubs: {min(rates):.0f}-{max(rates):.0f} kbit/s per recording "
        f"(total {sum(rates) / 1000:.1f} Mbit/s); behind live {min(start_lag):.1f}-"
        f"{max(start_lag):.1f} s at the window's start, {min(end_lag):.1f}-{max(end_lag):.1f} s "
        f"at its end; modes {sorted(set(modes))}; "
        f"{alive}/{len(recordings)} still streaming after the window"
    )
    print(line)
    RESULTS.append(line)


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
