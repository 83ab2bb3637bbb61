"""Issue 13 §6 on a real ``hass``: a restart between two motion events loses nothing.

Run as ``python -m tests.real_hass.restart_probe --workdir DIR [--clips DIR]`` (by
tests/test_real_hass.py); prints one JSON report line. One camera (a paced live feed joined
mid-GOP) as an hksv entry, one hub emulator: pair and select once, record an event, restart
Home Assistant (SIGTERM, clean exit, same configuration folder), reconnect the hub with its
saved pairing (no new selection), watch live right away, then record a second event once the
prebuffer has had time to refill.
"""

from __future__ import annotations

import argparse
import asyncio
from contextlib import AsyncExitStack
from dataclasses import asdict
import json
from pathlib import Path
import shutil
import time
from typing import Any

from tests.hub.controller import capture_session_keys
from tests.media import ClipSpec
from tests.real_hass.harness import (
    CameraFeed,
    CameraHub,
    Clip,
    HassProcess,
    View,
    make_clips,
    write_config,
)

CLIP = ClipSpec(seconds=20.0, width=640, height=360, fps=30, gop_seconds=2.0)
LIVE_SECONDS = 6.0
VIEW_SECONDS = 3.0
PREBUFFER_TIMEOUT = 120.0


async def _prebuffered(hass: HassProcess, seconds: float) -> float:
    """Wait until the camera's prebuffer holds ``seconds``; return how long that took."""
    began = time.monotonic()
    async with asyncio.timeout(PREBUFFER_TIMEOUT):
        while True:
            metrics = await hass.request({"cmd": "metrics"})
            held = metrics["prebuffer"].get("camera.soak_0", {}).get("seconds", 0.0)
            if held >= seconds:
                return time.monotonic() - began
            await asyncio.sleep(0.5)


async def run(workdir: Path, clips: Path) -> dict[str, Any]:
    """Run the scenario; return what was seen."""
    report: dict[str, Any] = {}
    day, night = await asyncio.get_running_loop().run_in_executor(None, make_clips, clips, CLIP)
    async with AsyncExitStack() as stack:
        stack.enter_context(capture_session_keys())
        feed = CameraFeed(day, night, rtsp=False)
        stack.push_async_callback(feed.stop)
        await feed.start()
        config = write_config(workdir / "config", [feed])
        stack.callback(shutil.rmtree, config.control.parent, ignore_errors=True)
        hass = HassProcess(config, workdir / "hass.log")
        stack.push_async_callback(hass.stop)
        await hass.start()
        entry = (await hass.request({"cmd": "status"}))["entries"][0]
        hub = CameraHub(0, entry["port"])
        stack.push_async_callback(hub.close)
        await hub.pair(entry["setup_code"])
        report["selected_prebuffer_seconds"] = hub.prebuffer_seconds

        async def motion(on: bool) -> None:
            await hass.request({"cmd": "motion", "camera": 0, "on": on})

        await _prebuffered(hass, hub.prebuffer_seconds)
        first = Clip(0, time.time())
        await hub.record(motion, LIVE_SECONDS, first)
        report["first"] = asdict(first)

        await asyncio.sleep(2)  # the event is fired when hksv closes its side
        report["hksv_events_before"] = (await hass.request({"cmd": "events"}))["events"]
        stop_seconds, exit_code = await hass.stop()
        report["exit_code"] = exit_code
        report["stop_seconds"] = round(stop_seconds, 1)
        report["start_seconds"] = round(await hass.start(), 1)
        back = time.monotonic()
        await hub.reconnect()
        report["reconnect_seconds"] = round(time.monotonic() - back, 1)
        entry_after = (await hass.request({"cmd": "status"}))["entries"][0]
        report["port_after"] = entry_after["port"]
        report["port_before"] = entry["port"]
        report["paired_after"] = entry_after["paired"]

        view = View(0, time.time())
        await hub.view(VIEW_SECONDS, view)
        report["view"] = asdict(view)

        report["prebuffer_refill_seconds"] = round(
            await _prebuffered(hass, hub.prebuffer_seconds), 1
        )
        second = Clip(0, time.time())
        await hub.record(motion, LIVE_SECONDS, second)
        report["second"] = asdict(second)
        report["selections"] = hub.selections
        await asyncio.sleep(2)  # the event is fired when hksv closes its side
        report["hksv_events"] = (await hass.request({"cmd": "events"}))["events"]
    return report


def main() -> None:
    """Run and print the JSON report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--clips", type=Path)
    args = parser.parse_args()
    report = asyncio.run(run(args.workdir, args.clips or args.workdir / "clips"))
    print(json.dumps(report, default=str))


if __name__ == "__main__":
    main()
