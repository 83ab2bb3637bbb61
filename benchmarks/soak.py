"""The soak: a real Home Assistant with hksv for hours; does anything grow, is any clip lost?

Drives a real ``hass`` process (tests/real_hass/) with 2-4 cameras (paced live feeds joined
mid-GOP, one over RTSP), each an hksv entry paired to its own hub emulator: motion events the
hub records and checks, live viewers, camera drops, a night-mode frame-rate change and Home
Assistant restarts. Prints a per-interval table and a verdict, writes the samples, every clip
and viewer, and a PNG plot under benchmarks/out/soak-<time>/. Not a test; reproduce with:

    ../shared/toolchain/py314 .venv/bin/python -m benchmarks.soak --minutes 120

Every option has an environment twin (SOAK_MINUTES, SOAK_CAMERAS, ...); see --help.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import asdict
import json
import logging
import os
from pathlib import Path
import platform
import statistics
import sys
import time
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.real_hass.run import Sample, Soak, SoakResult, SoakSettings  # noqa: E402

# Samples this soon after a (re)start are left out of the slopes: startup fills caches,
# the prebuffer and the stream workers, which is not growth.
WARM_UP_MINUTES = 3.0
SERIES = (
    ("rss_mb", "RSS (MB)"),
    ("fds", "open fds"),
    ("threads", "threads"),
    ("tasks", "asyncio tasks"),
    ("lag_p99_ms", "loop lag p99 (ms)"),
    ("prebuffer_kb", "prebuffer (KB, all cameras)"),
)


def _options() -> argparse.Namespace:
    defaults = SoakSettings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])

    def option(name: str, default: float, help_text: str) -> None:
        env = "SOAK_" + name.upper().replace("-", "_")
        kind = int if isinstance(default, int) else float
        parser.add_argument(
            f"--{name}",
            type=kind,
            default=kind(os.environ.get(env, default)),
            help=f"{help_text} (${env})",
        )

    option("minutes", defaults.minutes, "how long to run")
    option("cameras", defaults.cameras, "cameras, 1-4 (the last ones over RTSP)")
    option("rtsp-cameras", defaults.rtsp_cameras, "how many of them over RTSP")
    option("event-seconds", defaults.event_seconds, "a motion event every N s per camera")
    option("live-seconds", defaults.live_seconds, "seconds the hub records after opening")
    option("viewer-seconds", defaults.viewer_seconds, "a live viewer every M s per camera")
    option("drop-minutes", defaults.drop_minutes, "a camera drops every K minutes")
    option("drop-seconds", defaults.drop_seconds, "for this long")
    option("night-minutes", defaults.night_minutes, "camera 0: night (half fps) and back, period")
    option("restart-minutes", defaults.restart_minutes, "restart Home Assistant every R minutes")
    option("sample-seconds", defaults.sample_seconds, "one row every this many seconds")
    parser.add_argument("--out", type=Path, default=None, help="output folder")
    return parser.parse_args()


def main() -> int:
    """Run the soak and report."""
    args = _options()
    if not 1 <= args.cameras <= 4:
        sys.exit("--cameras must be 1-4")
    out = args.out or ROOT / "benchmarks" / "out" / time.strftime("soak-%Y%m%d-%H%M%S")
    out.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=[logging.StreamHandler(), logging.FileHandler(out / "soak.log")],
    )
    logging.getLogger("aiohomekit").setLevel(logging.WARNING)
    settings = SoakSettings(
        minutes=args.minutes,
        cameras=args.cameras,
        rtsp_cameras=min(args.rtsp_cameras, args.cameras),
        event_seconds=args.event_seconds,
        live_seconds=args.live_seconds,
        viewer_seconds=args.viewer_seconds,
        drop_minutes=args.drop_minutes,
        drop_seconds=args.drop_seconds,
        night_minutes=args.night_minutes,
        restart_minutes=args.restart_minutes,
        sample_seconds=args.sample_seconds,
        clip_cache=ROOT / "benchmarks" / "out" / "soak-clips",
        workdir=out,
    )
    print(f"soak: {args.minutes:g} min, output in {out}", flush=True)
    result = asyncio.run(Soak(settings).run())
    report = render(result)
    print(report)
    (out / "report.txt").write_text(report)
    write_data(result, out)
    plot(result, out / "soak.png")
    print(f"plot: {out / 'soak.png'}")
    return 0


def row(sample: Sample) -> dict[str, Any]:
    """Flatten one sample into the plotted/printed numbers."""
    m = sample.metrics
    return {
        "t_min": sample.t_min,
        "start": sample.hass_start,
        "rss_mb": m["rss_kb"] / 1024,
        "fds": m["fds"],
        "threads": m["threads"],
        "tasks": m["tasks"],
        "lag_p99_ms": m["lag_p99_ms"] or 0.0,
        "prebuffer_kb": sum(p["bytes"] for p in m["prebuffer"].values()) / 1024,
        "clips_ok": sample.clips_ok,
        "clips_failed": sample.clips_failed,
        "viewers_ok": sample.viewers_ok,
        "viewers_failed": sample.viewers_failed,
    }


def slope_per_hour(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (minutes, value) per hour; None with fewer than 3 points."""
    if len(points) < 3:
        return None
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mean_x) ** 2 for x in xs)
    if den == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / den * 60


def slopes(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per series: slope within each Home Assistant process (after warm-up), their mean,
    and the slope over the whole run."""
    found: dict[str, dict[str, Any]] = {}
    starts = sorted({r["start"] for r in rows})
    for key in ("rss_mb", "fds", "threads", "tasks"):
        per_start = []
        for start in starts:
            segment = [r for r in rows if r["start"] == start]
            if not segment:
                continue
            began = segment[0]["t_min"] if start > 1 else 0.0
            points = [
                (r["t_min"], r[key]) for r in segment if r["t_min"] - began >= WARM_UP_MINUTES
            ]
            value = slope_per_hour(points)
            if value is not None:
                per_start.append(value)
        whole = slope_per_hour([(r["t_min"], r[key]) for r in rows])
        found[key] = {
            "per_process": per_start,
            "mean_per_process": statistics.fmean(per_start) if per_start else None,
            "whole_run": whole,
        }
    return found


def _fmt(value: float | None, digits: int = 2) -> str:
    return "n/a" if value is None else f"{value:+.{digits}f}"


def render(result: SoakResult) -> str:
    """Return the table and the verdict as text."""
    s = result.settings
    rows = [row(sample) for sample in result.samples]
    lines = [
        f"=== soak: {s.minutes:g} min, {s.cameras} cameras ({s.rtsp_cameras} RTSP), "
        f"python {platform.python_version()}, {os.cpu_count()} CPUs ===",
        f"events every {s.event_seconds:g} s ({s.live_seconds:g} s recorded after the open), "
        f"viewers every {s.viewer_seconds:g} s, drop {s.drop_seconds:g} s every "
        f"{s.drop_minutes:g} min, night switch every {s.night_minutes / 2:g} min, restart every "
        f"{s.restart_minutes:g} min; first start {result.first_start_seconds:.0f} s",
        "",
        f"{'min':>6} {'run':>3} {'RSS MB':>7} {'fds':>5} {'thr':>4} {'tasks':>5} "
        f"{'lag p99':>8} {'preb KB':>8} {'clips ok/fail':>13} {'views ok/fail':>13}",
    ]
    lines += [
        f"{r['t_min']:6.1f} {r['start']:3d} {r['rss_mb']:7.1f} {r['fds']:5d} {r['threads']:4d} "
        f"{r['tasks']:5d} {r['lag_p99_ms']:8.1f} {r['prebuffer_kb']:8.0f} "
        f"{r['clips_ok']:>6}/{r['clips_failed']:<6} "
        f"{r['viewers_ok']:>6}/{r['viewers_failed']:<6}"
        for r in rows
    ]
    lines.append("")
    lines += [
        f"restart at {time.strftime('%H:%M:%S', time.gmtime(restart.at))} UTC: stopped in "
        f"{restart.stop_seconds:.1f} s (exit {restart.exit_code}), back in "
        f"{restart.start_seconds:.1f} s, hubs reconnected "
        f"{restart.hubs_back_seconds:.1f} s later"
        for restart in result.restarts
    ]
    lines.append(f"drops: {len(result.drops)}; night/day switches: {len(result.night_switches)}")
    lines.append(f"selections written per hub over the run: {result.selections} (1 = never again)")
    clips_ok = sum(c.ok for c in result.clips)
    # Clips and viewers cut short by the end of the run have no verdict: not counted.
    failed = [c for c in result.clips if c.problems]
    views_failed = [v for v in result.views if v.problem]
    views_ok = sum(v.ok for v in result.views)
    lines.append(
        f"clips: {clips_ok} ok, {len(failed)} failed "
        f"({sum(bool(c.hksv_at_fault) for c in failed)} hksv's fault); "
        f"viewers: {views_ok} ok, {len(views_failed)} failed"
    )
    prerolls = [c.preroll_seconds for c in result.clips if c.ok]
    if prerolls:
        lines.append(
            f"pre-roll of good clips: min {min(prerolls):.1f} s, "
            f"median {statistics.median(prerolls):.1f} s"
        )
    outcomes: dict[str, int] = {}
    for event in result.hksv_events:
        key = f"{event.get('outcome')}/{event.get('mode')}"
        outcomes[key] = outcomes.get(key, 0) + 1
    lines.append(f"hksv_recording_finished outcomes/modes: {outcomes}")
    lines.append("")
    lines.append(
        "slopes per hour (least squares; per Home Assistant process after "
        f"{WARM_UP_MINUTES:g} min warm-up, mean of those; whole run):"
    )
    for key, found in slopes(rows).items():
        per = ", ".join(_fmt(v) for v in found["per_process"]) or "n/a"
        lines.append(
            f"  {key:8} per process [{per}] mean {_fmt(found['mean_per_process'])}, "
            f"whole run {_fmt(found['whole_run'])}"
        )
    lines.append("")
    for clip in failed:
        hksv = clip.hksv or {}
        lines.append(
            f"FAILED clip camera {clip.camera} at "
            f"{time.strftime('%H:%M:%S', time.gmtime(clip.opened_wall))} UTC "
            f"[{', '.join(clip.context) or 'no fault injected'}] "
            f"{'hksv at fault' if clip.hksv_at_fault else 'explained by the injected fault'}: "
            f"{'; '.join(clip.problems)} | hksv said: outcome={hksv.get('outcome')} "
            f"reason={hksv.get('reason')} error={hksv.get('error')}"
        )
    lines += [
        f"FAILED viewer camera {view.camera} at "
        f"{time.strftime('%H:%M:%S', time.gmtime(view.at_wall))} UTC "
        f"[{', '.join(view.context) or 'no fault injected'}]: {view.problem}"
        for view in views_failed
    ]
    return "\n".join(lines)


def write_data(result: SoakResult, out: Path) -> None:
    """Write samples (CSV), clips and viewers (JSON lines)."""
    rows = [row(sample) for sample in result.samples]
    if rows:
        with (out / "samples.csv").open("w") as csv:
            csv.write(",".join(rows[0]) + "\n")
            for r in rows:
                csv.write(
                    ",".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in r.values())
                    + "\n"
                )
    (out / "summary.json").write_text(json.dumps(summary(result), indent=1))
    with (out / "clips.jsonl").open("w") as clips:
        for clip in result.clips:
            clips.write(json.dumps(asdict(clip), default=str) + "\n")
    with (out / "viewers.jsonl").open("w") as views:
        for view in result.views:
            views.write(json.dumps(asdict(view), default=str) + "\n")


def summary(result: SoakResult) -> dict[str, Any]:
    """Return the counts a smoke test checks, per camera."""
    cameras = range(result.settings.cameras)
    restart = result.restarts[0].at if result.restarts else None
    return {
        "restarts": len(result.restarts),
        "restart_exit_codes": [r.exit_code for r in result.restarts],
        "drops": len(result.drops),
        "night_switches": len(result.night_switches),
        "selections": result.selections,
        "clips_ok": [sum(c.ok for c in result.clips if c.camera == i) for i in cameras],
        "clips_ok_after_first_restart": [
            sum(c.ok for c in result.clips if c.camera == i and restart and c.opened_wall > restart)
            for i in cameras
        ],
        "viewers_ok": [sum(v.ok for v in result.views if v.camera == i) for i in cameras],
        "viewers_ok_after_first_restart": [
            sum(v.ok for v in result.views if v.camera == i and restart and v.at_wall > restart)
            for i in cameras
        ],
        "samples": len(result.samples),
        "hksv_events": len(result.hksv_events),
        "failed_clips": [
            {
                "camera": c.camera,
                "problems": c.problems,
                "context": c.context,
                "hksv_at_fault": c.hksv_at_fault,
                "hksv": c.hksv,
            }
            for c in result.clips
            if c.problems
        ],
    }


def plot(result: SoakResult, path: Path) -> None:
    """Draw each series against minutes with Pillow (no matplotlib in the environment);
    restarts as vertical lines."""
    from PIL import Image, ImageDraw

    rows = [row(sample) for sample in result.samples]
    width, panel_height, margin = 1000, 180, 60
    image = Image.new("RGB", (width, panel_height * len(SERIES) + 20), "white")
    draw = ImageDraw.Draw(image)
    end = max([r["t_min"] for r in rows] + [result.settings.minutes])
    restarts = [(r.at - result.wall_start) / 60 for r in result.restarts]
    for index, (key, title) in enumerate(SERIES):
        top = 10 + index * panel_height
        box = (margin, top + 20, width - 20, top + panel_height - 20)
        draw.rectangle(box, outline="black")
        values = [r[key] for r in rows]
        low, high = (min(values), max(values)) if values else (0.0, 1.0)
        if high - low < 1e-9:
            high = low + 1.0
        draw.text((margin, top + 4), f"{title}: {low:.1f} - {high:.1f}", fill="black")

        def xy(
            t: float,
            v: float,
            box: tuple[int, int, int, int] = box,
            low: float = low,
            high: float = high,
        ) -> tuple[float, float]:
            x = box[0] + (box[2] - box[0]) * t / end
            y = box[3] - (box[3] - box[1]) * (v - low) / (high - low)
            return x, y

        for at in restarts:
            x = xy(at, low)[0]
            draw.line([(x, box[1]), (x, box[3])], fill=(200, 120, 120))
        points = [xy(r["t_min"], r[key]) for r in rows]
        if len(points) >= 2:
            draw.line(points, fill=(30, 60, 200), width=2)
        for x, y in points:
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=(30, 60, 200))
        draw.text((box[0], box[3] + 2), "0 min", fill="black")
        draw.text((box[2] - 50, box[3] + 2), f"{end:.0f} min", fill="black")
    image.save(path)


if __name__ == "__main__":
    sys.exit(main())
