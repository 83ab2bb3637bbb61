"""What the local archive costs: CPU per media-minute, finalize time, bytes, loop impact.

A 3-minute 1280x720@25 H.264 2 Mbit/s + AAC clip (tests/media.py, cached in
benchmarks/out/archive/) is cut by ffmpeg into an init segment and 4 s moof+mdat fragments,
as hksv sends them to the hub. Then, in the same run:

* **archive (hksv)**: the fragments go through `archive/writer.ArchiveClip` exactly as the
  recorder hands them over (queued on the event loop, written by executor jobs), then the
  clip is finalized (stream-copy remux to faststart MP4, thumbnail, sidecar). CPU is this
  process's user+system time (all threads), wall is from the first write to the finalize's end.
* **ffmpeg -c copy -movflags +faststart** of the same partial file, as a child process
  (CPU from its rusage): the same remux done by the ffmpeg CLI.
* **on the event loop**: the time `ArchiveClip.write` takes per fragment (what the
  recording's send path pays), and the largest lag of a 10 ms ticker while the clip is
  written and finalized (how late anything else on the loop, the next HDS send included,
  runs).

Run from the repository root:

    ../shared/toolchain/py314 .venv/bin/python benchmarks/archive_cost.py [--seconds 180]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Coroutine
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
import os
from pathlib import Path
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from custom_components.hksv.archive.layout import ClipPaths
from custom_components.hksv.archive.writer import ArchiveClip, ClipMeta
from custom_components.hksv.media.fmp4 import iter_boxes
from tests.media import ClipSpec, write_clip

OUT = Path(__file__).resolve().parent / "out" / "archive"


class LoopShim:
    """The two Home Assistant calls ArchiveClip makes, on a plain asyncio loop."""

    def __init__(self, loop: asyncio.AbstractEventLoop, executor: ThreadPoolExecutor) -> None:
        """Use ``executor`` for jobs."""
        self.loop = loop
        self.executor = executor
        self.tasks: set[asyncio.Task[Any]] = set()

    def async_add_executor_job(self, target: Any, *args: Any) -> asyncio.Future[Any]:
        """Run in the executor."""
        return self.loop.run_in_executor(self.executor, target, *args)

    def async_create_task(
        self, coro: Coroutine[Any, Any, Any], name: str, eager_start: bool = False
    ) -> asyncio.Task[Any]:
        """Start and keep a task."""
        task = self.loop.create_task(coro, name=name)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task


def hksv_fragments(seconds: float) -> tuple[bytes, list[bytes], Path]:
    """Return (init, 4 s fragments) of the cached clip, as hksv sends them."""
    OUT.mkdir(parents=True, exist_ok=True)
    source = OUT / f"clip_{int(seconds)}s.ts"
    if not source.exists():
        spec = ClipSpec(
            seconds=seconds,
            width=1280,
            height=720,
            fps=25,
            gop_seconds=2.0,
            video_bitrate_kbps=2000,
        )
        write_clip(source.with_suffix(".part.ts"), spec).rename(source)
    fragmented = OUT / f"clip_{int(seconds)}s.frag.mp4"
    if not fragmented.exists():
        subprocess.run(
            [
                "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
                "-c", "copy", "-bsf:a", "aac_adtstoasc", "-f", "mp4", "-frag_duration", "4000000",
                "-movflags", "frag_keyframe+empty_moov+default_base_moof", str(fragmented),
            ],
            check=True,
        )  # fmt: skip
    data = fragmented.read_bytes()
    boxes = list(iter_boxes(data))
    init_end = next(b.end for b in boxes if b.type == b"moov")
    fragments = []
    start = None
    for box in boxes:
        if box.type == b"moof":
            start = box.start
        elif box.type == b"mdat" and start is not None:
            fragments.append(data[start : box.end])
            start = None
    return data[:init_end], fragments, fragmented


def cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def archive_once(init: bytes, fragments: list[bytes], folder: Path) -> dict[str, float]:
    """Write and finalize one clip through ArchiveClip; return timings."""
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(0.01)
            lags.append(loop.time() - before - 0.01)

    with ThreadPoolExecutor(max_workers=2) as executor:
        shim = LoopShim(loop, executor)
        tick = loop.create_task(ticker())
        await asyncio.sleep(1.0)  # idle: the ticker's own lag on this machine
        idle_lag = max(lags)
        lags.clear()
        paths = ClipPaths(folder, "bench", "2026-12-07", "120000")
        meta = ClipMeta("Bench", "bench", datetime.now(UTC), "motion", 0)
        done = asyncio.Event()
        finalized: dict[str, float] = {}

        async def on_done(clip: ArchiveClip, kept: Any, error: str | None) -> None:
            finalized["at"] = time.perf_counter()
            finalized["error"] = error  # type: ignore[assignment]
            done.set()

        cpu0, wall0 = cpu_self(), time.perf_counter()
        clip = ArchiveClip(shim, paths, meta, on_done=on_done)  # type: ignore[arg-type]
        write_costs = []
        for packet in [init, *fragments]:
            started = time.perf_counter()
            clip.write(packet)
            write_costs.append(time.perf_counter() - started)
            # Fragments come every 4 s in a recording; here the next one follows as soon as
            # the previous one is on disk (a whole clip in a burst would exceed the queue).
            await clip._idle.wait()
        finish_at = time.perf_counter()
        clip.finish({"outcome": "completed", "prebuffer_seconds": 4.0}, lambda _clip: None)
        await done.wait()
        cpu = cpu_self() - cpu0
        if finalized["error"]:
            raise RuntimeError(finalized["error"])
        wall = finalized["at"] - wall0
        stop.set()
        await tick
    return {
        "cpu": cpu,
        "wall": wall,
        "finalize_wall": finalized["at"] - finish_at,
        "write_us_mean": statistics.mean(write_costs) * 1e6,
        "write_us_max": max(write_costs) * 1e6,
        "loop_lag_ms_max": max(lags) * 1000,
        "idle_lag_ms_max": idle_lag * 1000,
        "final_bytes": paths.video.stat().st_size,
        "thumbnail_bytes": paths.thumbnail.stat().st_size,
        "sidecar_bytes": paths.sidecar.stat().st_size,
    }


def ffmpeg_once(fragmented: Path, folder: Path) -> dict[str, float]:
    """Remux the same fragmented file with the ffmpeg CLI; return its CPU and wall time."""
    target = folder / "ffmpeg.mp4"
    cpu0, wall0 = cpu_children(), time.perf_counter()
    subprocess.run(
        [
            "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(fragmented),
            "-c", "copy", "-movflags", "+faststart", str(target),
        ],
        check=True,
    )  # fmt: skip
    return {
        "cpu": cpu_children() - cpu0,
        "wall": time.perf_counter() - wall0,
        "final_bytes": target.stat().st_size,
    }


def main() -> None:
    """Measure and print a table."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=180.0)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if shutil.which("ffmpeg") is None:
        sys.exit("ffmpeg is needed")
    init, fragments, fragmented = hksv_fragments(args.seconds)
    media_minutes = args.seconds / 60
    hksv_runs, ffmpeg_runs = [], []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as folder:
            hksv_runs.append(asyncio.run(archive_once(init, fragments, Path(folder))))
        with tempfile.TemporaryDirectory() as folder:
            ffmpeg_runs.append(ffmpeg_once(fragmented, Path(folder)))
    best_hksv = min(hksv_runs, key=lambda run: run["cpu"])
    best_ffmpeg = min(ffmpeg_runs, key=lambda run: run["cpu"])
    sent = len(init) + sum(len(f) for f in fragments)
    print(f"clip: {args.seconds:g} s, {len(fragments)} fragments, {sent} bytes sent to the hub")
    print(f"runs: {args.repeat}, best by CPU; {os.cpu_count()} CPUs")
    print("| Measurement | hksv archive | ffmpeg -c copy +faststart |")
    print("|---|---|---|")
    print(
        f"| CPU per media-minute | {best_hksv['cpu'] / media_minutes * 1000:.0f} ms "
        f"| {best_ffmpeg['cpu'] / media_minutes * 1000:.0f} ms |"
    )
    print(f"| CPU, whole clip | {best_hksv['cpu']:.3f} s | {best_ffmpeg['cpu']:.3f} s |")
    print(
        f"| finalize wall time | {best_hksv['finalize_wall']:.3f} s (remux+thumbnail+sidecar) "
        f"| {best_ffmpeg['wall']:.3f} s (process) |"
    )
    print(
        f"| bytes on disk | {best_hksv['final_bytes']} MP4 + {best_hksv['thumbnail_bytes']} "
        f"JPEG + {best_hksv['sidecar_bytes']} JSON | {best_ffmpeg['final_bytes']} MP4 |"
    )
    print(
        f"| ArchiveClip.write on the loop, per packet | mean {best_hksv['write_us_mean']:.1f} µs, "
        f"max {best_hksv['write_us_max']:.1f} µs | - |"
    )
    print(
        f"| largest event-loop lag (10 ms ticker) | "
        f"{', '.join(f'{run["loop_lag_ms_max"]:.1f}' for run in hksv_runs)} ms per run "
        f"(idle, same run: {max(run['idle_lag_ms_max'] for run in hksv_runs):.1f} ms) | - |"
    )


if __name__ == "__main__":
    main()
