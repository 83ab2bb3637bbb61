"""Live view start, cold and warm, set against the camera's own keyframes.

A start cannot show a picture before the camera sends a keyframe: cold (the camera stream
starts for the viewer) it waits for the connection and the camera's next keyframe; warm (the
stream runs) hksv re-sends the GOP in progress when its keyframe is under 1 s old, else it waits
for the next one. This benchmark opens many viewers at random moments and splits each start
into what the camera decides and what Home Assistant and hksv add:

* the feed (tests/e2e/live_source.py) stamps each client connection and each keyframe it sends;
* cold: START -> the worker's connection -> the feed's next keyframe -> first decoded picture
  at the viewer; "added" is the picture minus that keyframe (ffmpeg's probe, HA's first part,
  hksv);
* warm: START -> first picture, with the age of the camera's GOP in progress at START, for
  HA's parts and for the direct path (option *Lowest latency live view*).

    ../shared/toolchain/py314 .venv/bin/pytest benchmarks/live_start.py -s -p no:randomly

Prints numbers, asserts only that every start showed a picture.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
import os
from pathlib import Path
import platform
import random
import statistics
from typing import Any

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.const import DEFAULT_OPTIONS, OPT_LIVE_DIRECT
from custom_components.hksv.hap.rtp_stream import SessionCommand
from tests import harness
from tests.e2e.live_source import LiveFeedSource
from tests.harness import Viewers, clip_file, live_camera
from tests.hub.controller import HubController
from tests.live.viewer import LiveViewer, access_units, decode_units
from tests.media import ClipSpec
from tests.ports import free_port

SOURCE = ClipSpec(
    seconds=60.0, width=1920, height=1080, fps=25, gop_seconds=2.0, video_bitrate_kbps=2000
)
COLD_STARTS = int(os.environ.get("LIVE_START_COLD", "10"))  # per variant
WARM_STARTS = int(os.environ.get("LIVE_START_WARM", "10"))  # per variant
CACHE = Path(__file__).parent / "out" / "live_view"
RESULTS: list[str] = []

with_doorbell = harness.no_doorbell
controller = harness.iphone_controller
VIEWERS = Viewers()
close_viewers = VIEWERS.closing_fixture()


def _report(line: str) -> None:
    print(line)
    RESULTS.append(line)


def _stats(values: list[float]) -> str:
    """Return min / median / mean / max of seconds, in ms."""
    if not values:
        return "n/a"
    return (
        f"min {min(values) * 1000:.0f}, median {statistics.median(values) * 1000:.0f}, "
        f"mean {statistics.fmean(values) * 1000:.0f}, max {max(values) * 1000:.0f} ms"
    )


@pytest.fixture(scope="module", autouse=True)
def summary() -> Any:
    """Print every number once more at the end, with the environment."""
    yield
    print("\n=== live_start ===")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    print(f"source {SOURCE.width}x{SOURCE.height}@{SOURCE.fps}, GOP {SOURCE.gop_seconds} s")
    print("\n".join(RESULTS))


@pytest.fixture
async def feed(hass: HomeAssistant, socket_enabled: None) -> AsyncGenerator[LiveFeedSource]:
    """Serve the clip as a live feed; HA's stream at its defaults (hksv shortens its parts)."""
    clip = await clip_file(hass, CACHE, SOURCE)
    config = {"stream": {"ll_hls": True, "part_duration": 1.0}}
    async with live_camera(hass, LiveFeedSource(clip, free_port()), stream_config=config) as source:
        yield source


@pytest.fixture
def stream_source(feed: LiveFeedSource) -> str:
    """Point the test camera at the feed."""
    return feed.url


@pytest.fixture
def live_direct() -> bool:
    """Return whether the direct path is on (parametrized)."""
    return False


@pytest.fixture
def entry_options(live_direct: bool) -> dict[str, Any]:
    """Return the entry's options, with the direct path as parametrized."""
    return {**DEFAULT_OPTIONS, OPT_LIVE_DIRECT: live_direct}


async def _first_picture(viewer: LiveViewer, timeout: float = 60) -> float:
    """Return when the first decodable keyframe's last packet arrived (monotonic)."""
    async with asyncio.timeout(timeout):
        while True:
            await asyncio.sleep(0.05)
            packets = viewer.packets
            ends = [i for i, p in enumerate(packets) if p.marker]
            if not ends:
                continue
            for unit in access_units(packets[: ends[-1] + 1]):
                if 5 in unit.types and decode_units([unit]):
                    return unit.packets[-1].arrived


async def _until(condition: Any, timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.05)


async def _watch_once(viewer_hub: HubController) -> tuple[float, float]:
    """Start a viewer, wait for its first picture, end it; return (START, picture)."""
    viewer = await VIEWERS.start(viewer_hub)
    assert viewer.started_at is not None
    picture = await _first_picture(viewer)
    assert await viewer.select(SessionCommand.END) == {}
    await viewer.close()
    return viewer.started_at, picture


@pytest.mark.parametrize("live_direct", [False, True], ids=["ha_parts", "direct"])
async def test_cold_start(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    feed: LiveFeedSource,
    live_direct: bool,
) -> None:
    """Cold starts at random moments: what the camera decides and what is added after it."""
    asyncio.get_running_loop().set_debug(False)  # as in HA; the harness turns it on
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    bridge.live.feed.linger_seconds = 0.0  # each start finds the camera stream stopped
    rows: list[tuple[float, float, float]] = []
    for _ in range(COLD_STARTS):
        await _until(lambda: not prebuffer.running and feed.clients == 0)
        await asyncio.sleep(random.uniform(0.5, 2.5))  # a random camera GOP phase
        started, picture = await _watch_once(controller)
        # The first connection after START (the direct path's demuxer makes a second one).
        connect = next(at for at in feed.connected_at if at >= started)
        keyframe = feed.next_keyframe_after(connect)
        assert keyframe is not None
        rows.append((connect - started, keyframe - started, picture - started))
    label = "direct path" if live_direct else "HA's parts"
    _report(f"cold, {label} ({len(rows)} starts):")
    _report(f"  START -> camera connected        {_stats([r[0] for r in rows])}")
    _report(f"  START -> camera's next keyframe  {_stats([r[1] for r in rows])}")
    _report(f"  START -> first picture           {_stats([r[2] for r in rows])}")
    _report(f"  added after that keyframe        {_stats([r[2] - r[1] for r in rows])}")


@pytest.mark.parametrize("live_direct", [False, True], ids=["ha_parts", "direct"])
async def test_warm_start(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    controller: HubController,
    feed: LiveFeedSource,
    live_direct: bool,
) -> None:
    """Warm starts at random moments while another viewer keeps the stream running."""
    asyncio.get_running_loop().set_debug(False)
    keeper = await VIEWERS.start(controller, slot=1)
    await _first_picture(keeper)
    await asyncio.sleep(3)  # the direct path (if on) has taken over from HA's parts
    replayed: list[float] = []
    waited: list[tuple[float, float]] = []  # (GOP age at START, START -> picture)
    for _ in range(WARM_STARTS):
        await asyncio.sleep(random.uniform(0.3, 2.3))
        started, picture = await _watch_once(controller)
        previous = [at for at in feed.keyframes_at if at <= started]
        age = started - previous[-1] if previous else float("nan")
        next_keyframe = feed.next_keyframe_after(started)
        if next_keyframe is None or picture < next_keyframe:  # only the GOP in progress
            replayed.append(picture - started)
        else:
            waited.append((age, picture - started))
    label = "direct path" if live_direct else "HA's parts"
    _report(f"warm, {label} ({WARM_STARTS} starts):")
    _report(f"  GOP in progress re-sent ({len(replayed)}): START -> picture {_stats(replayed)}")
    _report(
        f"  next keyframe awaited ({len(waited)}): START -> picture "
        f"{_stats([w[1] for w in waited])}; GOP age at START {_stats([w[0] for w in waited])}"
    )
    assert await keeper.select(SessionCommand.END) == {}
