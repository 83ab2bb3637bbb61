"""The archive's effect on a recording's send timing, measured at the hub emulator.

The real stack of tests/e2e/test_recording.py (HA's stream worker on a paced H.264 + AAC
camera, the real HAP server, the aiohomekit hub, HDS over TCP) records the same kind of event
twice per round, with the archive on and off (alternating, so a busy machine hurts both
alike); the hub notes when each complete fragment arrives (polled every 10 ms). Prints time
to the first fragment, the gaps between fragments and how far the last one lags the
media it carries. Reproduce with:

    ../shared/toolchain/py314 .venv/bin/pytest benchmarks/bench_archive_hub.py -s -p no:randomly
"""

from __future__ import annotations

import asyncio
from itertools import pairwise
import statistics
import time
from typing import Any

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from tests.e2e import test_recording as recording_tests
from tests.e2e.test_recording import PREBUFFER_S, _wait_for_prebuffer
from tests.hub.emulator import HomeHub, media_seconds

ROUNDS = 2
LIVE_SECONDS = 16.0

case = recording_tests.case
clips = recording_tests.clips
home_hub = recording_tests.home_hub
known_source = recording_tests.known_source
paced_source = recording_tests.paced_source
stream_source = recording_tests.stream_source
with_doorbell = recording_tests.with_doorbell


async def _record(hub: HomeHub, stream_id: int) -> dict[str, float]:
    """Record PREBUFFER_S + LIVE_SECONDS; return arrival timing of the fragments."""
    client = await hub.open_data_stream()
    client.timeout = 90
    started = time.perf_counter()
    assert (await client.open_recording(stream_id)).status == 0
    recording = client.recordings[stream_id]
    arrivals: list[float] = []
    media: list[float] = []
    while media_seconds(recording) < PREBUFFER_S + LIVE_SECONDS:
        count = len(recording.complete_packets)
        if count - 1 > len(arrivals):  # the init segment is not a fragment
            arrivals.append(time.perf_counter() - started)
            media.append(media_seconds(recording))
        await asyncio.sleep(0.01)
    client.close_stream(stream_id, 0)
    await client.close()
    gaps = [b - a for a, b in pairwise(arrivals[1:])]  # live ones
    return {
        "first_fragment_s": arrivals[0],
        "live_gap_mean_s": statistics.mean(gaps),
        "live_gap_max_s": max(gaps),
        # Wall time of the last arrival minus the live media it completes (pre-roll excluded).
        "last_lag_s": arrivals[-1] - (media[-1] - media[0]),
    }


@pytest.mark.parametrize("case", ["h264_2s_gop_ll_hls_copy"], indirect=True)
async def test_archive_send_timing(
    hass: HomeAssistant, init_integration: MockConfigEntry, home_hub: HomeHub, case: Any
) -> None:
    """Archive on vs off, alternating, ROUNDS times each."""
    bridge = init_integration.runtime_data
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    stream_id = 1
    for _ in range(ROUNDS):
        for archive_on in (True, False):
            bridge.archive.enabled = archive_on
            await _wait_for_prebuffer(bridge, PREBUFFER_S + 2)
            results[archive_on].append(await _record(home_hub, stream_id))
            stream_id += 1
            await hass.async_block_till_done()
    print("\n| at the hub (copy, 4 s fragments) | archive on | archive off |")
    print("|---|---|---|")
    for key in ("first_fragment_s", "live_gap_mean_s", "live_gap_max_s", "last_lag_s"):
        on = statistics.mean(run[key] for run in results[True])
        off = statistics.mean(run[key] for run in results[False])
        print(f"| {key} | {on:.3f} | {off:.3f} |")
    kept = bridge.archive.archive.stats.clips
    print(f"clips archived: {kept} (of {ROUNDS} with the archive on)")
