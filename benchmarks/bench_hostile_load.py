"""Home Assistant under a hostile LAN peer while a recording streams: memory and loop lag.

Runs the real stack like bench_recording.py (HA's stream worker on a paced 1080p source, the
real HAP server, the aiohomekit-paired hub emulator receiving a live recording over HDS) and
measures, in the same run, a quiet window and a window during which a separate process
(benchmarks/hostile_peer.py, loopback only, bounded in count and time) holds N
unauthenticated HAP and HDS connections and sends malformed HAP requests at a fixed rate.
Reproduce with:

    ../shared/toolchain/py314 .venv/bin/pytest benchmarks/bench_hostile_load.py -s -p no:randomly

See benchmarks/README.md for what each number means and results on the build machine.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
import json
import logging
import os
from pathlib import Path
import platform
import statistics
import sys
from typing import Any

from homeassistant.core import HomeAssistant
from pytest_homeassistant_custom_component.common import MockConfigEntry

from benchmarks import bench_recording
from tests.conftest import MOTION_ID
from tests.hub.emulator import HomeHub
from tests.hub.hds_client import HDSClient

WINDOW_SECONDS = 20.0
ATTACK_RATE = 200  # malformed HAP requests per second
HAP_CONNECTIONS = 200
HDS_CONNECTIONS = 200
LAG_INTERVAL = 0.05
PEER = Path(__file__).parent / "hostile_peer.py"


@dataclass
class Window:
    """What was sampled during one window."""

    lags_ms: list[float] = field(default_factory=list)
    rss_mb: list[float] = field(default_factory=list)
    recording_bytes: int = 0
    seconds: float = 0.0

    def line(self, label: str, baseline_rss: float) -> str:
        """Return one report line."""
        lags = sorted(self.lags_ms)
        p99 = lags[int(len(lags) * 0.99) - 1] if lags else 0.0
        return (
            f"  {label:<8} loop lag p50 {statistics.median(lags):6.1f} ms, p99 {p99:6.1f} ms, "
            f"max {max(lags):6.1f} ms | RSS max {max(self.rss_mb):7.1f} MB "
            f"({max(self.rss_mb) - baseline_rss:+6.1f} vs quiet start) | recording "
            f"{self.recording_bytes * 8 / self.seconds / 1000:6.0f} kbit/s at the hub"
        )


def _rss_mb() -> float:
    """Return this process's resident set size (Home Assistant's memory) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def _sample(window: Window, client: HDSClient, seconds: float) -> None:
    """Sample loop lag (oversleep of a 50 ms timer), RSS and recording bytes for ``seconds``."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    received = client.bytes_received
    while (now := loop.time()) - start < seconds:
        await asyncio.sleep(LAG_INTERVAL)
        window.lags_ms.append((loop.time() - now - LAG_INTERVAL) * 1000)
        if len(window.lags_ms) % 5 == 0:
            window.rss_mb.append(_rss_mb())
    window.seconds = loop.time() - start
    window.recording_bytes = client.bytes_received - received


# The same camera, entry and recording hub as bench_recording.py: its fixtures, not copies.
known_source = bench_recording.known_source
with_doorbell = bench_recording.with_doorbell
paced_source = bench_recording.paced_source
stream_source = bench_recording.stream_source
hub = bench_recording.hub


async def test_hostile_load_while_recording(
    hass: HomeAssistant, hub: HomeHub, init_integration: MockConfigEntry
) -> None:
    """Quiet window, then the same window under attack; print memory, lag and throughput."""
    bridge = init_integration.runtime_data
    prebuffer = bridge.recorder.prebuffer
    async with asyncio.timeout(60):
        while prebuffer.buffered_seconds < prebuffer.keep_seconds:
            await asyncio.sleep(0.1)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client = await hub.open_data_stream()
    client.timeout = 120
    assert (await client.open_recording(1)).status == 0
    await client.wait_until(lambda: bool(client.recordings[1].chunks))
    # As in production: no DEBUG/INFO logging (the test harness keeps every record in memory)
    # and no asyncio debug mode (it records a traceback for every callback).
    logging.disable(logging.INFO)
    hass.loop.set_debug(False)
    start_rss = _rss_mb()

    quiet = Window()
    await _sample(quiet, client, WINDOW_SECONDS)

    attacked = Window()
    peer = await asyncio.create_subprocess_exec(
        sys.executable, str(PEER),
        "--hap-port", str(bridge.port), "--hds-port", str(bridge.data_stream.port),
        "--seconds", str(WINDOW_SECONDS), "--rate", str(ATTACK_RATE),
        "--hap-connections", str(HAP_CONNECTIONS), "--hds-connections", str(HDS_CONNECTIONS),
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        await _sample(attacked, client, WINDOW_SECONDS)
        stdout, _ = await asyncio.wait_for(peer.communicate(), 60)
    finally:
        if peer.returncode is None:
            peer.kill()
            await peer.wait()
    counts: dict[str, Any] = json.loads(stdout)
    after = Window()
    await _sample(after, client, 5.0)
    ended = client.recordings[1].ended
    client.close_stream(1, 0)
    await client.close()
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})

    logging.disable(logging.NOTSET)
    diagnostics = bridge.data_stream.diagnostics()
    print("\n=== bench_hostile_load ===")
    print(f"python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.machine()}")
    print(
        f"attack: {HAP_CONNECTIONS} idle unauthenticated HAP connections, {HDS_CONNECTIONS} HDS "
        f"connections (half from 127.0.0.2) each sending 256 KiB of a 1 MiB frame, "
        f"{ATTACK_RATE} malformed HAP requests/s for {WINDOW_SECONDS:.0f} s"
    )
    print(quiet.line("quiet", start_rss))
    print(attacked.line("attacked", start_rss))
    print(after.line("after", start_rss))
    print(f"  malformed requests sent {counts['malformed_sent']}: {counts['malformed_statuses']}")
    print(
        f"  idle HAP connections still open at the end: {counts['hap_idle_held_to_end']}; "
        f"HDS: {counts['hds']}; accessory refused {diagnostics.get('connections_refused', 'n/a')}, "
        f"unmatched {diagnostics['connections_unmatched']}"
    )
    print(f"  recording stream ended during the run: {ended}")
