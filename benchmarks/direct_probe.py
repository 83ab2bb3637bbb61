"""How soon the direct path's demuxer hands out the camera's first keyframe, per open options.

The paced loopback camera (tests/e2e/live_source.py, 720p25, 2 s GOPs) stamps every keyframe
it sends; each round opens it at a random moment with PyAV, as `live/direct.py` does, once per
option set, and reports how long the open took and how late the first keyframe packet came
out after the camera sent it. Baseline: the options the direct path used before (with
`fflags=nobuffer`). Run:

    ../shared/toolchain/py314 .venv/bin/python -m benchmarks.direct_probe [--rounds 6]
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
import random
import statistics
import time

import av

from custom_components.hksv.live.direct import DEMUX_OPTIONS
from tests.conftest import free_port
from tests.e2e.live_source import LiveFeedSource
from tests.media import ClipSpec, write_clip

SPEC = ClipSpec(seconds=20.0, width=1280, height=720, fps=25, gop_seconds=2.0)
OUT = Path(__file__).parent / "out" / "direct_probe"
VARIANTS: dict[str, dict[str, str]] = {
    "before (nobuffer)": {
        "fflags": "nobuffer",
        "flags": "low_delay",
        "probesize": "500000",
        "analyzeduration": "1000000",
    },
    "no nobuffer, fps probe": {
        "flags": "low_delay",
        "probesize": "500000",
        "analyzeduration": "1000000",
    },
    "now (live/direct.py)": {k: v for k, v in DEMUX_OPTIONS.items() if k != "rtsp_transport"},
}


def first_keyframe(url: str, options: dict[str, str]) -> tuple[float, float, float]:
    """Open ``url``; return (start, open returned, first keyframe out) in time.monotonic()."""
    start = time.monotonic()
    with av.open(url, options=options, timeout=(10, 5)) as container:
        opened = time.monotonic()
        for packet in container.demux(container.streams.video[0]):
            if packet.is_keyframe and packet.size:
                return start, opened, time.monotonic()
    raise RuntimeError("no keyframe")


async def main(rounds: int) -> None:
    """Open the camera ``rounds`` times per variant at random moments; print the numbers."""
    OUT.mkdir(parents=True, exist_ok=True)
    clip = write_clip(OUT / "camera.ts", SPEC)
    feed = LiveFeedSource(clip, free_port())
    await feed.start()
    late: dict[str, list[float]] = {name: [] for name in VARIANTS}
    opens: dict[str, list[float]] = {name: [] for name in VARIANTS}
    try:
        for _ in range(rounds):
            for name, options in VARIANTS.items():
                await asyncio.sleep(random.uniform(0.1, 2.0))
                start, opened, keyframe = await asyncio.to_thread(first_keyframe, feed.url, options)
                sent = feed.next_keyframe_after(start)
                assert sent is not None
                opens[name].append((opened - start) * 1000)
                late[name].append((keyframe - sent) * 1000)
    finally:
        await feed.stop()
    print(f"{rounds} random opens per row, {SPEC.width}x{SPEC.height}@{SPEC.fps}, 2 s GOPs")
    for name in VARIANTS:
        print(
            f"{name:24} open median {statistics.median(opens[name]):6.0f} ms;"
            f" first keyframe out after the camera sent it: "
            + ", ".join(f"{value:.0f}" for value in late[name])
            + " ms"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    asyncio.run(main(parser.parse_args().rounds))
