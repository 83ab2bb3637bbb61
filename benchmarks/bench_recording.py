"""Real-stack recording measurements: prebuffer CPU and memory, open-to-prebuffer latency.

Runs like the end-to-end tests (Home Assistant's stream worker reading a paced 1080p
~2 Mbit/s H.264 + AAC source, the real HAP server, the aiohomekit-paired hub emulator) and
prints numbers instead of asserting them. Reproduce with:

    ../shared/toolchain/py314 .venv/bin/pytest benchmarks/bench_recording.py -s -p no:randomly

See benchmarks/README.md for what each number means and results on the build machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
import os
from pathlib import Path
import platform
import resource
import time
from typing import Any

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.const import DEFAULT_OPTIONS, OPT_VIDEO_MODE
from tests import harness
from tests.conftest import MOTION_ID
from tests.e2e.source import PacedSource
from tests.harness import STREAM_DEFAULTS, clip_file, live_camera, recording_hub
from tests.hub.emulator import HomeHub, media_seconds
from tests.media import ClipSpec
from tests.ports import free_port

SOURCE = ClipSpec(
    seconds=60.0, width=1920, height=1080, fps=25, gop_seconds=2.0, video_bitrate_kbps=2000
)
CPU_WINDOW_SECONDS = 30.0
OPENS = 3
CACHE = Path(__file__).parent / "out" / "bench_recording"
RESULTS: list[str] = []


def _cpu() -> float:
    """Return this process's CPU seconds (all threads: the HA loop and the stream worker)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _report(line: str) -> None:
    """Print now and again in the summary."""
    print(line)
    RESULTS.append(line)


@pytest.fixture(scope="module", autouse=True)
def summary() -> Any:
    """Print every number once more at the end, with the environment."""
    yield
    print("\n=== bench_recording ===")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    print("\n".join(RESULTS))


# A fresh install (the camera is probed at startup), no doorbell.
known_source = harness.probe_at_startup
with_doorbell = harness.no_doorbell


@pytest.fixture
def video_mode() -> str:
    """Return the video mode option (parametrized per test)."""
    return "auto"


@pytest.fixture
def entry_options(video_mode: str) -> dict[str, Any]:
    """Return options with the video mode under test."""
    return {**DEFAULT_OPTIONS, OPT_VIDEO_MODE: video_mode}


@pytest.fixture
async def paced_source(hass: HomeAssistant, socket_enabled: None) -> AsyncGenerator[PacedSource]:
    """Serve the 1080p clip in real time (LL-HLS defaults)."""
    clip = await clip_file(hass, CACHE, SOURCE)
    source = PacedSource(clip, free_port())
    async with live_camera(hass, source, stream_config=STREAM_DEFAULTS, quick_restart=False):
        yield source


@pytest.fixture
def stream_source(paced_source: PacedSource) -> str:
    """Point the camera at the paced source."""
    return paced_source.url


@pytest.fixture
async def hub(init_integration: MockConfigEntry, session_keys: None) -> AsyncGenerator[HomeHub]:
    """A hub that selected from the offer and enabled recording."""
    async with recording_hub(init_integration.runtime_data) as home_hub:
        yield home_hub


async def _until(condition: Any, timeout: float = 120) -> None:
    """Poll ``condition`` (a benchmark, not a test: plain polling is fine)."""
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.1)


def _proc_cpu(pid: int) -> float:
    """Return a child process's CPU seconds from /proc (it may be reaped later)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _ffmpeg_cpu_per_minute(clip: Path, output_args: list[str]) -> float:
    """Run ffmpeg on a paced copy of the source for the window; return its CPU s per minute."""
    source = PacedSource(clip, free_port())
    await source.start()
    process = await asyncio.create_subprocess_exec(
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-nostdin", "-i", source.url,
        *output_args, "-f", "mp4", "-movflags", "frag_keyframe+empty_moov+default_base_moof",
        "-y", "/dev/null",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    await asyncio.sleep(5)  # let it connect and settle
    if process.returncode is not None:
        await source.stop()
        raise RuntimeError(f"ffmpeg {output_args} exited with {process.returncode}")
    cpu, wall = _proc_cpu(process.pid), time.monotonic()
    await asyncio.sleep(CPU_WINDOW_SECONDS)
    used, elapsed = _proc_cpu(process.pid) - cpu, time.monotonic() - wall
    process.kill()
    await process.wait()
    await source.stop()
    return used / elapsed * 60


async def _process_cpu_per_minute() -> float:
    """Return this process's CPU s per minute over the window."""
    cpu, wall = _cpu(), time.monotonic()
    await asyncio.sleep(CPU_WINDOW_SECONDS)
    return (_cpu() - cpu) / (time.monotonic() - wall) * 60


async def test_prebuffer_cpu_and_memory(
    hass: HomeAssistant,
    hub: HomeHub,
    init_integration: MockConfigEntry,
    paced_source: PacedSource,
) -> None:
    """CPU per camera-minute of the prebuffer next to peers' ways, and what it holds."""
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    await _until(lambda: prebuffer.buffered_seconds >= prebuffer.keep_seconds)
    with_prebuffer = await _process_cpu_per_minute()

    gops = prebuffer.gops
    # Samples are views into HA's part buffers: what stays alive is those buffers.
    retained = sum(
        {id(s.data.obj): len(s.data.obj) for g in gops for s in (*g.video, *g.audio)}.values()
    )
    seconds = prebuffer.buffered_seconds
    sample_bytes = prebuffer.buffered_bytes
    bitrate = sum(s.size for g in gops for s in (*g.video, *g.audio)) * 8 / seconds
    expected = bitrate / 8 * seconds

    # The same worker with HLS keeping it alive and the prebuffer stopped (recording off).
    stream = bridge.recorder.prebuffer._stream
    hls = stream.add_provider("hls", timeout=600)
    assert await hub.write(hub.iid("204", "B0"), 0) == {}
    await _until(lambda: not prebuffer.running)
    worker_only = await _process_cpu_per_minute()
    await stream.remove_provider(hls)

    ffmpeg_copy = await _ffmpeg_cpu_per_minute(
        paced_source.clip, ["-c", "copy", "-bsf:a", "aac_adtstoasc"]
    )
    x264 = await _ffmpeg_cpu_per_minute(
        paced_source.clip,
        [
            *("-c:v", "libx264", "-preset", "veryfast", "-b:v", "2M", "-g", "100"),
            *("-c:a", "copy", "-bsf:a", "aac_adtstoasc"),
        ],
    )
    _report("CPU s per camera-minute, 1080p25 ~2 Mbit/s H.264 + AAC, paced in real time:")
    for label, value in (
        ("HA worker + hksv prebuffer (whole HA process)", with_prebuffer),
        ("HA worker alone, HLS provider (whole HA process)", worker_only),
        ("=> hksv prebuffer and shaping", with_prebuffer - worker_only),
        ("ffmpeg -c copy fMP4 remux process", ffmpeg_copy),
        ("ffmpeg libx264 veryfast re-encode process", x264),
    ):
        _report(f"  {label:<50} {value:7.2f}")
    _report(
        f"prebuffer holds {seconds:.1f} s in {len(gops)} GOPs: "
        f"{sample_bytes / 1e6:.2f} MB of samples; "
        f"{retained / 1e6:.2f} MB of HA part buffers kept alive; "
        f"bitrate x duration = {expected / 1e6:.2f} MB at {bitrate / 1000:.0f} kbit/s "
        f"(audio + video); retained / (bitrate x duration) = {retained / expected:.2f}"
    )


async def _time_one_open(
    hass: HomeAssistant, hub: HomeHub, bridge: Any, stream_id: int
) -> tuple[float, float]:
    """Open a recording; return seconds to the first byte and to the prebuffer's last byte."""
    prebuffer = bridge.recorder.prebuffer
    await _until(lambda: prebuffer.buffered_seconds >= prebuffer.keep_seconds)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client = await hub.open_data_stream()
    client.timeout = 120
    opened = time.monotonic()
    assert (await client.open_recording(stream_id)).status == 0
    recording = client.recordings[stream_id]
    await client.wait_until(lambda: bool(recording.chunks))
    first = time.monotonic() - opened
    summary = bridge.recorder._active[stream_id]
    await _until(lambda: summary.mode != "")
    await client.wait_until(lambda: media_seconds(recording) >= summary.prebuffer_seconds - 0.05)
    last = time.monotonic() - opened
    client.close_stream(stream_id, 0)
    await client.close()
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await asyncio.sleep(1)
    return first, last


@pytest.mark.parametrize("video_mode", ["auto", "transcode"])
async def test_open_to_last_prebuffer_byte(
    hass: HomeAssistant, hub: HomeHub, init_integration: MockConfigEntry, video_mode: str
) -> None:
    """Time from dataSend open to the first byte, and to the last byte of the prebuffer."""
    bridge = init_integration.runtime_data
    times = [await _time_one_open(hass, hub, bridge, n) for n in range(1, OPENS + 1)]
    last = bridge.recorder.last_recording
    _report(
        f"{last.mode}: open -> first data "
        + ", ".join(f"{first * 1000:.0f}" for first, _ in times)
        + f" ms; open -> last byte of the {last.prebuffer_seconds:.1f} s prebuffer "
        + ", ".join(f"{end * 1000:.0f}" for _, end in times)
        + " ms"
    )
