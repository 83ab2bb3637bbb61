"""Live view on the real stack: start latency, steady latency, CPU per viewer vs HA's homekit.

Runs like the end-to-end tests: a camera-like 1080p ~2 Mbit/s H.264 + AAC feed (joined
mid-GOP) read by Home Assistant's stream worker, the real HAP server, an aiohomekit
controller that sets up and starts streams like iOS, and a viewer that decrypts with
pylibsrtp. Prints numbers, asserts nothing. Reproduce with:

    ../shared/toolchain/py314 .venv/bin/pytest benchmarks/live_view.py -s -p no:randomly

* start: Selected START written -> first SRTP packet, and -> first decoded picture at the
  viewer (cold: the camera stream starts for the viewer; warm: it is already running);
* steady latency: for every access unit sent, (its last RTP packet sent) - (when the frame
  reached HA's stream worker, estimated as its part's arrival minus the media time from the
  frame to the part's end: the worker receives frames in real time and flushes a part after
  its last frame), at `stream: part_duration` 1.0 and 0.3;
* CPU: marginal CPU of one copy viewer and one transcoded (watch, 320x240) viewer in this
  process, next to Home Assistant's `homekit` way (one ffmpeg per viewer reading the camera,
  `-c:v copy` or libx264 zerolatency to SRTP) for the same source and the same time window;
* behind the camera, seen by a viewer in its own process (`viewer_process.py`: libsrtp,
  PyAV, the frame counter drawn into the video): for each picture, when its last packet
  reached that viewer minus when a second client of the camera (also its own process)
  decoded the same picture; START -> first decoded picture at that viewer (cold, warm), for
  hksv at part_duration 1.0 and 0.3 and for the homekit-style `ffmpeg -c:v copy` to SRTP.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator
import contextlib
from itertools import pairwise
import json
import os
from pathlib import Path
import platform
import resource
import shutil
import statistics
import sys
import time
from typing import Any
from unittest.mock import patch

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.const import DEFAULT_OPTIONS, OPT_LIVE_DIRECT
from custom_components.hksv.hap.rtp_stream import (
    EndpointAddress,
    IPVersion,
    SessionCommand,
    SetupEndpointsRequest,
    SrtpParameters,
)
from custom_components.hksv.live.session import RTP_CLOCK, LiveSession
from tests import harness
from tests.e2e.live_source import LiveFeedSource
from tests.harness import Viewers, clip_file, live_camera
from tests.hub.controller import HOST, HubController
from tests.live.viewer import LiveViewer, access_units, decode_units
from tests.media import ClipSpec
from tests.ports import free_port

SOURCE = ClipSpec(
    seconds=60.0, width=1920, height=1080, fps=25, gop_seconds=2.0, video_bitrate_kbps=2000
)
OPENS = 4
STEADY_SECONDS = 12.0
CPU_WINDOW_SECONDS = 15.0
CACHE = Path(__file__).parent / "out" / "live_view"
RESULTS: list[str] = []


def _cpu() -> float:
    """Return this process's CPU seconds (all threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    """Return the CPU seconds of finished child processes."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _report(line: str) -> None:
    """Print now and again in the summary."""
    print(line)
    RESULTS.append(line)


def _ms(values: list[float]) -> str:
    """Return median / p95 / max of seconds, in ms."""
    if not values:
        return "n/a"
    ordered = sorted(values)
    p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    median = statistics.median(ordered)
    return f"median {median * 1000:.0f} ms, p95 {p95 * 1000:.0f}, max {ordered[-1] * 1000:.0f}"


@pytest.fixture(scope="module", autouse=True)
def summary() -> Any:
    """Print every number once more at the end, with the environment."""
    yield
    print("\n=== live_view ===")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    print(f"source {SOURCE.width}x{SOURCE.height}@{SOURCE.fps}, GOP {SOURCE.gop_seconds} s, ")
    print("\n".join(RESULTS))


with_doorbell = harness.no_doorbell


@pytest.fixture
def part_duration() -> float:
    """Return HA's LL-HLS part duration (parametrized)."""
    return 1.0


@pytest.fixture
async def feed(
    hass: HomeAssistant, socket_enabled: None, part_duration: float
) -> AsyncGenerator[LiveFeedSource]:
    """Serve the 1080p clip as a live feed; HA's stream with the given part duration."""
    clip = await clip_file(hass, CACHE, SOURCE)
    config = {"stream": {"ll_hls": True, "part_duration": part_duration}}
    async with live_camera(hass, LiveFeedSource(clip, free_port()), stream_config=config) as source:
        yield source


@pytest.fixture
def stream_source(feed: LiveFeedSource) -> str:
    """Point the test camera at the feed."""
    return feed.url


controller = harness.iphone_controller


VIEWERS = Viewers()
close_viewers = VIEWERS.closing_fixture()


async def _first_picture(viewer: LiveViewer, timeout: float = 60) -> tuple[float, float]:
    """Return (START -> first packet, START -> first decodable picture) in seconds."""
    assert viewer.started_at is not None
    await viewer.wait_packets(1, timeout)
    first_packet = viewer.packets[0].arrived - viewer.started_at
    # Arrival times are stamped on receipt, so polling does not change the numbers.
    async with asyncio.timeout(timeout):
        while True:
            await asyncio.sleep(0.05)
            packets = viewer.packets
            ends = [i for i, p in enumerate(packets) if p.marker]
            if not ends:
                continue
            units = access_units(packets[: ends[-1] + 1])
            for unit in units:
                if 5 in unit.types and decode_units([unit]):
                    return first_packet, unit.packets[-1].arrived - viewer.started_at


@pytest.mark.parametrize("part_duration", [1.0, 0.3], ids=["part_1.0s", "part_0.3s"])
async def test_start_and_steady_latency(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    part_duration: float,
) -> None:
    """START -> first packet / picture (cold, then warm), and steady HA-to-packet latency."""
    bridge = init_integration.runtime_data
    latencies: list[float] = []
    part_ends: dict[float, int] = {}
    original_on_part = LiveSession.on_part
    original_send = LiveSession._send

    def on_part(self: LiveSession, part: Any) -> None:
        if part.video:
            last = part.video[-1]
            scale = part.init.video.timescale
            part_ends[part.arrived] = (last.decode_time + last.duration) * RTP_CLOCK // scale
        original_on_part(self, part)

    def send(self: LiveSession, unit: Any, now: float) -> None:
        original_send(self, unit, now)
        end = part_ends.get(unit.arrived)
        if end is not None:
            reached_ha = unit.arrived - (end - unit.dts) / RTP_CLOCK
            latencies.append(time.monotonic() - reached_ha)

    starts: list[tuple[str, float, float]] = []
    lost = 0
    with patch.object(LiveSession, "on_part", on_part), patch.object(LiveSession, "_send", send):
        for attempt in range(OPENS):
            viewer = await VIEWERS.start(controller)
            first_packet, first_picture = await _first_picture(viewer)
            starts.append(("cold" if attempt == 0 else "warm", first_packet, first_picture))
            if attempt == OPENS - 1:
                latencies.clear()
                await asyncio.sleep(STEADY_SECONDS)
            else:
                await asyncio.sleep(1.0 + attempt * 0.7)  # land at different GOP phases
            packets = viewer.packets
            lost += sum((b.sequence - a.sequence - 1) % 65536 for a, b in pairwise(packets))
            assert await viewer.select(SessionCommand.END) == {}
            await viewer.close()
    cold = [s for s in starts if s[0] == "cold"]
    warm = [s for s in starts if s[0] == "warm"]
    _report(
        f"part_duration {part_duration}: START->first packet cold {cold[0][1] * 1000:.0f} ms, "
        f"START->first picture cold {cold[0][2] * 1000:.0f} ms"
    )
    _report(
        f"part_duration {part_duration}: START->first packet warm {_ms([s[1] for s in warm])}; "
        f"START->first picture warm {_ms([s[2] for s in warm])}"
    )
    _report(
        f"part_duration {part_duration}: steady frame-reached-HA -> last RTP packet "
        f"{_ms(latencies)} ({len(latencies)} frames); packets lost at the viewer: {lost}"
    )
    assert bridge.live.viewers == 0


def _ffmpeg_homekit(url: str, port: int, transcode: bool) -> list[str]:
    """Return an ffmpeg command shaped like HA homekit's per-viewer video process."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg
    codec = (
        [
            "-c:v",
            "libx264",
            "-profile:v",
            "high",
            "-tune",
            "zerolatency",
            "-preset",
            "ultrafast",
            "-vf",
            "scale=320:240",
            "-r",
            "15",
            "-b:v",
            "300k",
            "-maxrate",
            "300k",
            "-bufsize",
            "600k",
        ]
        if transcode
        else ["-c:v", "copy"]
    )
    key = "zRjMrTlUhTzUq4bHoU8yO3YTWoVDS0yM0R4qTNxr"  # 30 bytes base64: any key will do
    return [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-i", url,
        "-t", str(CPU_WINDOW_SECONDS), "-map", "0:v:0", "-an", *codec,
        "-payload_type", "99", "-ssrc", "1", "-f", "rtp",
        "-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80", "-srtp_out_params", key,
        f"srtp://127.0.0.1:{port}?rtcpport={port}&pkt_size=1316",
    ]  # fmt: skip


async def _ffmpeg_cpu(url: str, transcode: bool) -> float:
    """Run one homekit-style ffmpeg for the window; return its CPU seconds."""
    before = _children_cpu()
    process = await asyncio.create_subprocess_exec(
        *_ffmpeg_homekit(url, free_port(), transcode),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    await process.wait()
    return _children_cpu() - before


async def test_cpu_per_viewer(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    feed: LiveFeedSource,
) -> None:
    """Marginal CPU of a copy viewer and a transcoded viewer vs one ffmpeg per viewer."""
    bridge = init_integration.runtime_data
    bridge.live.feed.linger_seconds = 600  # keep the stream up between the windows
    # The test harness runs the loop in debug mode, which taxes every callback; HA does not.
    asyncio.get_running_loop().set_debug(False)
    warmup = await VIEWERS.start(controller)
    await _first_picture(warmup)
    assert await warmup.select(SessionCommand.END) == {}
    await warmup.close()

    async def window() -> float:
        start_cpu, start = _cpu(), time.monotonic()
        await asyncio.sleep(CPU_WINDOW_SECONDS)
        return (_cpu() - start_cpu) / (time.monotonic() - start)

    idle = await window()
    copy_viewer = await VIEWERS.start(controller)
    await _first_picture(copy_viewer)
    copy = await window()
    assert await copy_viewer.select(SessionCommand.END) == {}
    await copy_viewer.close()
    watch = await VIEWERS.start(
        controller, width=320, height=240, fps=15, bitrate=300, packet_time=60
    )
    await _first_picture(watch)
    transcoded = await window()
    mode = bridge.live.diagnostics()["active"][0]["mode"]
    assert await watch.select(SessionCommand.END) == {}
    await watch.close()
    ffmpeg_copy = await _ffmpeg_cpu(feed.url, transcode=False) / CPU_WINDOW_SECONDS
    ffmpeg_transcode = await _ffmpeg_cpu(feed.url, transcode=True) / CPU_WINDOW_SECONDS
    _report(f"CPU, stream running, no viewer (HA worker + prebuffer): {idle * 100:.1f} % of a core")
    _report(
        f"CPU per copy viewer (hksv, in process; video copied, AAC->Opus audio, and the test"
        f" viewer receiving): {(copy - idle) * 100:.1f} % of a core"
    )
    _report(
        f"CPU per transcoded 320x240 viewer (hksv, {mode}, video + Opus): "
        f"{(transcoded - idle) * 100:.1f} % of a core"
    )
    _report(
        f"CPU per viewer, HA homekit-style ffmpeg -c:v copy: {ffmpeg_copy * 100:.1f} % of a core"
    )
    _report(
        f"CPU per viewer, HA homekit-style ffmpeg libx264 320x240: "
        f"{ffmpeg_transcode * 100:.1f} % of a core"
    )


SEPARATE_STEADY_SECONDS = 12.0
SEPARATE_WARM_OPENS = 2
SETTLE_SECONDS = 3.0  # a start's catch-up burst or probe backlog is not steady latency
FFMPEG_KEY = "zRjMrTlUhTzUq4bHoU8yO3YTWoVDS0yM0R4qTNxr"  # as in _ffmpeg_homekit


class _ProcessViewer(LiveViewer):
    """A viewer whose video goes to a receiver in another process (RTCP stays here)."""

    def __init__(self, hub: HubController, video_port: int) -> None:
        super().__init__(hub)
        self.video_port = video_port

    def setup_request(self) -> bytes:
        """Advertise the other process's port for video."""
        return SetupEndpointsRequest(
            session_id=self.session_id,
            address=EndpointAddress(IPVersion.IPV4, HOST, self.video_port, self._port(self.audio)),
            video_srtp=SrtpParameters(0, self.key, self.salt),
            audio_srtp=SrtpParameters(0, self.key, self.salt),
        ).encode()


async def _process(*args: str) -> asyncio.subprocess.Process:
    """Start ``viewer_process.py`` with ``args``."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__).with_name("viewer_process.py")),
        *args,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )


async def _srtp_receiver(key_salt: bytes, seconds: float) -> tuple[asyncio.subprocess.Process, int]:
    """Start a receiver process; return it and its UDP port."""
    process = await _process("srtp", key_salt.hex(), str(seconds))
    assert process.stdout is not None
    port = int(await process.stdout.readline())
    return process, port


async def _result(process: asyncio.subprocess.Process) -> dict[str, Any]:
    """Return the JSON a receiver process printed."""
    stdout, _ = await process.communicate()
    assert process.returncode == 0
    result: dict[str, Any] = json.loads(stdout.decode().strip().splitlines()[-1])
    return result


def _behind(
    viewer: list[list[float]], reference: list[list[float]], settle: float = 0.0
) -> list[float]:
    """Return, per picture both saw, viewer arrival - reference decode (seconds).

    ``settle``: leave out pictures that arrived within this many seconds of the first one.
    """
    seen = {int(counter): at for counter, at in reference}
    first = viewer[0][1] if viewer else 0.0
    return [
        at - seen[int(counter)]
        for counter, at in viewer
        if int(counter) in seen and at - first >= settle
    ]


async def _hksv_separate(controller: HubController, feed: LiveFeedSource, label: str) -> None:
    """Cold + warm starts and steady latency of hksv, seen from separate processes."""
    seconds = SEPARATE_STEADY_SECONDS
    total = 25 + (SEPARATE_WARM_OPENS + 2) * 8 + seconds
    reference = await _process("feed", feed.url, str(total))
    await asyncio.sleep(5)  # the reference client has probed the feed and runs in real time
    starts: list[tuple[str, float]] = []
    behind: list[float] = []
    results = []
    for attempt in range(SEPARATE_WARM_OPENS + 1):
        last = attempt == SEPARATE_WARM_OPENS
        key_salt = os.urandom(30)
        receiver, port = await _srtp_receiver(key_salt, seconds if last else 3.0)
        viewer = _ProcessViewer(controller, port)
        viewer.key, viewer.salt = key_salt[:16], key_salt[16:]
        await viewer.open()
        await viewer.setup()
        assert await viewer.select() == {}
        started = viewer.started_at
        assert started is not None
        cpu_before, wall_before = _cpu(), time.monotonic()
        result = await _result(receiver)
        cpu = (_cpu() - cpu_before) / (time.monotonic() - wall_before)
        assert await viewer.select(SessionCommand.END) == {}
        await viewer.close()
        frames = result["frames"]
        assert frames, "the separate viewer decoded nothing"
        starts.append(("cold" if attempt == 0 else "warm", frames[0][1] - started))
        results.append(frames)
        await asyncio.sleep(0.9 + attempt * 0.7)  # land at different GOP phases
    reference_frames = (await _result(reference))["frames"]
    behind = _behind(results[-1], reference_frames)
    settled = _behind(results[-1], reference_frames, SETTLE_SECONDS)
    cold = [s for k, s in starts if k == "cold"]
    warm = [s for k, s in starts if k == "warm"]
    _report(
        f"{label}: separate viewer START->first picture cold {cold[0] * 1000:.0f} ms, "
        f"warm {', '.join(f'{w * 1000:.0f}' for w in warm)} ms"
    )
    _report(
        f"{label}: separate viewer behind a second camera client {_ms(behind)} "
        f"({len(behind)} pictures); CPU of the HA process while it watches "
        f"{cpu * 100:.1f} % of a core"
    )
    _report(f"{label}: same, from {SETTLE_SECONDS:.0f} s after the first picture {_ms(settled)}")


@pytest.fixture
def live_direct() -> bool:
    """Return whether the direct path is on (parametrized)."""
    return False


@pytest.fixture
def entry_options(live_direct: bool) -> dict[str, Any]:
    """Return the entry's options, with the direct path as parametrized."""
    return {**DEFAULT_OPTIONS, OPT_LIVE_DIRECT: live_direct}


@pytest.mark.parametrize(
    ("part_duration", "live_direct"),
    [(1.0, False), (0.3, False), (1.0, True)],
    ids=["part_1.0s", "part_0.3s", "direct"],
)
async def test_latency_seen_by_a_separate_viewer(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    feed: LiveFeedSource,
    part_duration: float,
    live_direct: bool,
) -> None:
    """hksv behind the camera, measured outside this process (pictures, not packets)."""
    asyncio.get_running_loop().set_debug(False)  # as in HA; the harness turns it on
    label = "hksv direct path" if live_direct else f"hksv, part_duration {part_duration}"
    await _hksv_separate(controller, feed, label)
    if part_duration == 1.0 and not live_direct:
        # HA homekit's way for the same feed: one ffmpeg -c:v copy per viewer.
        seconds = SEPARATE_STEADY_SECONDS
        reference = await _process("feed", feed.url, str(seconds + 20))
        await asyncio.sleep(5)
        receiver, port = await _srtp_receiver(base64.b64decode(FFMPEG_KEY), seconds)
        command = _ffmpeg_homekit(feed.url, port, transcode=False)
        started = time.monotonic()
        ffmpeg = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        result = await _result(receiver)
        with contextlib.suppress(ProcessLookupError):
            ffmpeg.kill()
        await ffmpeg.wait()
        frames = result["frames"]
        reference_frames = (await _result(reference))["frames"]
        behind = _behind(frames, reference_frames)
        settled = _behind(frames, reference_frames, SETTLE_SECONDS)
        _report(
            f"homekit-style ffmpeg -c:v copy: separate viewer spawn->first picture "
            f"{(frames[0][1] - started) * 1000:.0f} ms (always cold: its own camera connection)"
        )
        _report(
            f"homekit-style ffmpeg -c:v copy: separate viewer behind a second camera client "
            f"{_ms(behind)} ({len(behind)} pictures)"
        )
        _report(
            f"homekit-style ffmpeg -c:v copy: same, from {SETTLE_SECONDS:.0f} s after the first "
            f"picture {_ms(settled)}"
        )
