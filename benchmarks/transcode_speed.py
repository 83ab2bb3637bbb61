"""Measure the transcoder's speed (1080p30 -> 720p) next to the ffmpeg CLI doing the same job.

Run from the repository root:

    ../shared/toolchain/py314 .venv/bin/python benchmarks/transcode_speed.py

Options: ``--seconds N`` (clip length, default 30), ``--presets a,b`` (x264 presets, default
superfast,veryfast,ultrafast), ``--repeat N`` (runs per row, best kept), ``--paced`` (also feed
the input at real-time pace and report how long each fragment takes to come out),
``--capacity-only`` (only the encoder choice and the capacity section).
Generated media is cached in benchmarks/out/transcode/. Nothing here passes or fails.

First it prints the shared encoder chooser's decision on this machine (media/encoders.py) and
the transcode capacity hksv measures (media/budget.py), each measurement run ``--repeat``
times (at least 3), next to an ffmpeg process coding the same synthetic 720p30 frames with
the same libx264 settings, so the measurement can be checked against a known encoder.
"""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass, replace
import os
from pathlib import Path
import resource
import shlex
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from custom_components.hksv.media.budget import (  # noqa: E402
    HEADROOM,
    MEASURE_X264_PRESET,
    REFERENCE_FPS,
    REFERENCE_SIZE,
    measure_capacity,
    probe_luma_planes,
    transcode_cost,
)
from custom_components.hksv.media.encoders import EncoderChooser  # noqa: E402
from custom_components.hksv.media.h264 import H264Level, H264Profile  # noqa: E402
from custom_components.hksv.recording import av_encode  # noqa: E402
from custom_components.hksv.recording.encoding import AudioTarget, TranscodeTarget  # noqa: E402
from custom_components.hksv.recording.transcode import Transcoder  # noqa: E402
from tests.media import ClipSpec, write_clip  # noqa: E402
from tests.recording.transcode_helpers import make_fmp4  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "transcode"
PART_SECONDS = 1.0  # HA's LL-HLS part length: the size of each input fragment
TARGET = TranscodeTarget(
    width=1280,
    height=720,
    fps=30,
    profile=H264Profile.MAIN,
    level=H264Level.LEVEL4_0,
    bitrate_kbps=2000,
    fragment_length_ms=4000,
    audio=AudioTarget(sample_rate=32000, channels=1, bitrate_kbps=64),
)


@dataclass(slots=True)
class Row:
    """One measured run."""

    name: str
    wall: float
    cpu: float
    media: float
    init_ms: float | None = None
    first_fragment_ms: float | None = None

    def cells(self) -> list[str]:
        """Return the table cells."""
        ms = [f"{v:.0f}" if v is not None else "-" for v in (self.init_ms, self.first_fragment_ms)]
        return [
            self.name,
            f"{self.wall:.2f}",
            f"{self.media / self.wall:.2f}",
            f"{self.cpu:.2f}",
            f"{self.media / self.cpu:.2f}",
            *ms,
        ]


def cpu_seconds(who: int) -> float:
    """Return user+system CPU seconds of this process (all threads) or of its children."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def source(seconds: float) -> tuple[Path, bytes, list[bytes]]:
    """Write (once) the 1080p30 ~2 Mbit/s H.264 + AAC clip and its HA-like fMP4 form."""
    OUT.mkdir(parents=True, exist_ok=True)
    spec = ClipSpec(
        seconds=seconds,
        width=1920,
        height=1080,
        fps=30,
        gop_seconds=4.0,
        video_bitrate_kbps=2000,
        audio_rate=48000,
        audio_channels=2,
        container="mp4",
    )
    clip = OUT / f"source-1080p30-{seconds:g}s.mp4"
    if not clip.exists():
        print(f"generating {clip.name} ...", flush=True)
        write_clip(clip, spec)
    init, fragments = make_fmp4(clip, part_seconds=PART_SECONDS)
    fmp4 = OUT / f"input-1080p30-{seconds:g}s.fmp4.mp4"
    fmp4.write_bytes(init + b"".join(fragments))
    return fmp4, init, fragments


async def run_transcoder(
    name: str, target: TranscodeTarget, init: bytes, fragments: list[bytes], *, paced: bool
) -> tuple[Row, list[float]]:
    """Transcode once; return the row and, when paced, how late each fragment comes out.

    Paced, each part is fed when it would be complete live, at (index + 1) x PART_SECONDS,
    and a fragment's lag is its arrival minus the wall time at which its last frame was live.
    """
    transcoder = Transcoder(target, log_name="bench")
    cpu = cpu_seconds(resource.RUSAGE_SELF)
    start = time.perf_counter()
    await transcoder.start(init)

    async def feed() -> None:
        for index, fragment in enumerate(fragments):
            if paced:
                live = start + (index + 1) * PART_SECONDS
                await asyncio.sleep(max(0.0, live - time.perf_counter()))
            await transcoder.feed(fragment)
        transcoder.end_of_input()

    feeder = asyncio.create_task(feed())
    arrivals: list[float] = []
    try:
        while await transcoder.read() is not None:
            arrivals.append(time.perf_counter())
        await feeder
    finally:
        await transcoder.close()
    wall = time.perf_counter() - start
    stats = transcoder.stats
    if stats.last_error:
        raise RuntimeError(stats.last_error)
    row = Row(name, wall, cpu_seconds(resource.RUSAGE_SELF) - cpu, stats.media_seconds)
    row.init_ms = (arrivals[0] - start) * 1000
    row.first_fragment_ms = (arrivals[1] - start) * 1000 if len(arrivals) > 1 else None
    fragment_seconds = target.fragment_length_ms / 1000
    lags = [
        arrived - (start + (k + 1) * fragment_seconds)
        for k, arrived in enumerate(arrivals[1:-1])  # the last one comes at end of input
    ]
    return row, lags if paced else []


def ffmpeg_command(preset: str, fmp4: Path, *, copy_video: bool) -> list[str]:
    """Return the ffmpeg command line for the same job."""
    video = (
        ["-c:v", "copy"]
        if copy_video
        else [
            *("-vf", "scale=1280:720:flags=bilinear", "-c:v", "libx264", "-preset", preset),
            *("-profile:v", "main", "-level:v", "4.0", "-b:v", "2000k"),
            *("-maxrate", "2000k", "-bufsize", "4000k", "-g", "120", "-sc_threshold", "0"),
            *("-bf", "0", "-r", "30"),
        ]
    )
    return [
        *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(fmp4)),
        *video,
        *("-c:a", "aac", "-ar", "32000", "-ac", "1", "-b:a", "64k"),
        *("-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4"),
        str(OUT / "ffmpeg-out.mp4"),
    ]


def run_ffmpeg(name: str, command: list[str], media: float) -> Row:
    """Run the ffmpeg CLI once and return its row."""
    cpu = cpu_seconds(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(command, check=True)
    wall = time.perf_counter() - start
    return Row(name, wall, cpu_seconds(resource.RUSAGE_CHILDREN) - cpu, media)


def ffmpeg_capacity_command(raw: Path) -> list[str]:
    """Return the ffmpeg command coding the capacity probe's frames like the probe does."""
    width, height = REFERENCE_SIZE
    threads = min(6, (os.process_cpu_count() or 1) * 3 // 2)
    return [
        *("ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo"),
        *("-pix_fmt", "yuv420p", "-s", f"{width}x{height}", "-r", str(REFERENCE_FPS)),
        *("-i", str(raw), "-c:v", "libx264", "-preset", MEASURE_X264_PRESET),
        *("-b:v", "2000k", "-g", str(REFERENCE_FPS * 4), "-bf", "0", "-threads", str(threads)),
        *("-x264-params", "scenecut=0:bframes=0", "-f", "null", "-"),
    ]


def capacity_section(repeat: int) -> None:
    """Print the chooser's decision, the measured capacity and the ffmpeg baseline."""
    chooser = EncoderChooser()
    decision = chooser.decide()
    print(
        f"Encoder chooser on this machine: {decision.encoder} "
        f"({'hardware' if decision.hardware else 'software'})"
    )
    for name, what in decision.tried:
        print(f"  {name:18} {what}")
    runs = [measure_capacity(chooser) for _ in range(max(3, repeat))]
    speeds = sorted(run.speed for run in runs)
    units = sorted(run.units for run in runs)
    print(
        f"\nhksv capacity probe ({runs[0].encoder} {MEASURE_X264_PRESET}, synthetic "
        f"{REFERENCE_SIZE[0]}x{REFERENCE_SIZE[1]}@{REFERENCE_FPS}, ~1.4 s each, "
        f"{len(runs)} runs): speed {speeds[0]:.2f}-{speeds[-1]:.2f}x real time "
        f"(median {speeds[len(speeds) // 2]:.2f}) -> capacity {units[0]:.2f}-{units[-1]:.2f} "
        f"units of 720p30 (x {HEADROOM} headroom)"
    )
    for label, (w, h, fps) in {
        "1080p30 recording": (1920, 1080, 30),
        "720p30 recording": (1280, 720, 30),
        "watch live view 320x240@15": (320, 240, 15),
    }.items():
        cost = transcode_cost(w, h, fps)
        print(f"  {label}: costs {cost:.2f}; {units[len(units) // 2] / cost:.1f} fit at once")
    # The same frames, the same settings, through the ffmpeg CLI: 300 frames (10 s).
    raw = OUT / "capacity-720p.yuv"
    OUT.mkdir(parents=True, exist_ok=True)
    if not raw.exists():
        width, height = REFERENCE_SIZE
        chroma = bytes([128]) * (width * height // 2)
        planes = probe_luma_planes(width, height)
        with raw.open("wb") as out:
            for index in range(REFERENCE_FPS * 10):
                out.write(planes[index % len(planes)].tobytes() + chroma)
    command = ffmpeg_capacity_command(raw)
    walls = []
    for _ in range(max(3, repeat)):
        start = time.perf_counter()
        subprocess.run(command, check=True)
        walls.append(time.perf_counter() - start)
    ff = sorted(10.0 / wall for wall in walls)
    print(
        f"ffmpeg, same frames and settings ({len(walls)} runs of 10 s): "
        f"{ff[0]:.2f}-{ff[-1]:.2f}x real time (median {ff[len(ff) // 2]:.2f}); "
        f"process start-up included"
    )
    print("ffmpeg row: " + shlex.join(command))


def best(rows: list[Row]) -> Row:
    """Return the fastest of repeated runs."""
    return min(rows, key=lambda row: row.wall)


async def main() -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--presets", default="superfast,veryfast,ultrafast")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--paced", action="store_true")
    parser.add_argument("--capacity-only", action="store_true")
    args = parser.parse_args()
    capacity_section(args.repeat)
    if args.capacity_only:
        return
    print()
    fmp4, init, fragments = source(args.seconds)
    rows: list[Row] = []
    default_preset = av_encode.X264_PRESET
    for preset in args.presets.split(","):
        # Benchmark-only: the preset is a module constant, not part of the API.
        av_encode.X264_PRESET = preset  # type: ignore[misc]  # read when an encoder opens
        runs = [
            (await run_transcoder(f"hksv {preset}", TARGET, init, fragments, paced=False))[0]
            for _ in range(args.repeat)
        ]
        rows.append(best(runs))
        command = ffmpeg_command(preset, fmp4, copy_video=False)
        media = rows[-1].media
        rows.append(
            best([run_ffmpeg(f"ffmpeg {preset}", command, media) for _ in range(args.repeat)])
        )
    av_encode.X264_PRESET = default_preset  # type: ignore[misc]
    copy_target = replace(TARGET, copy_video=True)
    runs = [
        (await run_transcoder("hksv copy video", copy_target, init, fragments, paced=False))[0]
        for _ in range(args.repeat)
    ]
    rows.append(best(runs))
    command = ffmpeg_command("-", fmp4, copy_video=True)
    rows.append(
        best([run_ffmpeg("ffmpeg copy video", command, rows[-1].media) for _ in range(args.repeat)])
    )
    header = ["run", "wall s", "x real time", "CPU s", "x per CPU-s", "init ms", "1st frag ms"]
    table = [header, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    print()
    print(
        f"{args.seconds:g} s of 1920x1080@30 H.264 ~2 Mbit/s + AAC 48 kHz stereo, fed as "
        f"{len(fragments)} HA-like {PART_SECONDS:g} s fMP4 parts all at once -> "
        f"1280x720@30 H.264 Main 4.0 2000 kbps + AAC-LC 32 kHz mono, "
        f"{os.process_cpu_count()} CPUs"
    )
    for line in table:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))
    if args.paced:
        row, lags = await run_transcoder("paced", TARGET, init, fragments, paced=True)
        print(
            f"\nfed live, one {PART_SECONDS:g} s part per {PART_SECONDS:g} s "
            f"({av_encode.X264_PRESET}): init after {row.init_ms:.0f} ms; each fragment out "
            f"{min(lags) * 1000:.0f}-{max(lags) * 1000:.0f} ms (mean "
            f"{sum(lags) / len(lags) * 1000:.0f} ms) after its last frame was live"
        )
    print("\nReproduce:  ../shared/toolchain/py314 .venv/bin/python benchmarks/transcode_speed.py")
    ffmpeg_row = ffmpeg_command(av_encode.X264_PRESET, fmp4, copy_video=False)
    print("ffmpeg row: " + shlex.join(ffmpeg_row))


if __name__ == "__main__":
    asyncio.run(main())
