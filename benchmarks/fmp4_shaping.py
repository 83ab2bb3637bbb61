"""Measure the CPU cost of copy-mode fragment shaping next to the ways peers keep a prebuffer.

Run from the repository root:

    ../shared/toolchain/py314 .venv/bin/python benchmarks/fmp4_shaping.py

Options: ``--seconds N`` (clip length, default 60), ``--repeat N`` (runs per Python row, best
kept). A 1080p25 ~2 Mbit/s H.264 + AAC-LC 32 kHz clip with a 2 s GOP is generated once into
benchmarks/out/fmp4_shaping/, and HA's own stream worker turns it into LL-HLS parts before
anything is timed. Nothing here passes or fails.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
import os
from pathlib import Path
import resource
import shlex
import subprocess
import sys
import time

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from custom_components.hksv.recording.shaper import FragmentShaper  # noqa: E402
from custom_components.hksv.source.gop import Gop  # noqa: E402
from custom_components.hksv.source.part import PartParser  # noqa: E402
from tests.media import ClipSpec, write_clip  # noqa: E402
from tests.recording.ha_parts import HaWorker, RawPartAssembler  # noqa: E402

OUT = ROOT / "benchmarks" / "out" / "fmp4_shaping"
FRAGMENT_MS = 4000
LOOPS = 20  # the Python rows take milliseconds: time several runs per sample
COPY_FLAGS = "frag_keyframe+empty_moov+default_base_moof"


@dataclass(slots=True)
class Row:
    """One measured job."""

    name: str
    cpu: float  # CPU seconds
    media_seconds: float  # how much media the job handled
    note: str = ""


def make_input(seconds: int) -> Path:
    """Return the cached source clip, encoding it the first time."""
    OUT.mkdir(parents=True, exist_ok=True)
    spec = ClipSpec(
        seconds=seconds,
        width=1920,
        height=1080,
        fps=25,
        gop_seconds=2.0,
        video_bitrate_kbps=2000,
        audio_codec="aac",
        audio_rate=32000,
    )
    path = OUT / f"source_1080p25_2s_gop_{seconds}s.ts"
    if not path.exists():
        print(f"encoding {path.name} (once) ...", flush=True)
        write_clip(path, spec)
    return path


def best_cpu(job: Callable[[], object], repeat: int, loops: int = 1) -> float:
    """Return the least CPU time of one run of ``job``, over ``repeat`` × ``loops`` runs."""
    times = []
    for _ in range(repeat):
        start = time.process_time()
        for _ in range(loops):
            job()
        times.append((time.process_time() - start) / loops)
    return min(times)


def child_cpu(command: list[str]) -> float:
    """Run ``command`` and return the CPU time (user + system) it used."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, check=True, stdin=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def ffmpeg(source: Path, target: Path, *codec: str) -> list[str]:
    """Return an ffmpeg command writing a fragmented MP4 of ``source`` (ADTS AAC as HA does)."""
    return [
        "ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(source),
        *codec, "-bsf:a", "aac_adtstoasc", "-movflags", COPY_FLAGS, "-f", "mp4", str(target),
    ]  # fmt: skip


def main() -> None:
    """Prepare the input, run every row, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=60)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    source = make_input(args.seconds)
    worker = HaWorker()
    worker_cpu = best_cpu(lambda: worker.run(source, ll_hls=True), 1)
    parts = [(segment.init, data, segment.stream_id) for segment, data in worker.parts()]

    def assemble() -> list[Gop]:
        assembler = RawPartAssembler()
        gops = [gop for init, data, epoch in parts for gop in assembler.feed(init, data, epoch)]
        last = assembler.flush()
        return [*gops, last] if last else gops

    gops = assemble()
    # HA drops the unfinished segment's tail at end of file: count the media actually shaped.
    shaped = sum(gop.duration_seconds for gop in gops)
    video_kbps = sum(s.size for g in gops for s in g.video) * 8 / shaped / 1000

    def shape() -> int:
        shaper = FragmentShaper(FRAGMENT_MS, include_audio=True)
        fragments = [f for gop in gops for f in shaper.push(gop)] + shaper.flush()
        return sum(len(f.data) for f in fragments)

    def both() -> int:
        shaper = FragmentShaper(FRAGMENT_MS, include_audio=True)
        assembler = RawPartAssembler()
        size = 0
        for init, data, epoch in parts:
            for gop in assembler.feed(init, data, epoch):
                size += sum(len(f.data) for f in shaper.push(gop))
        return size

    def parse_only() -> int:
        # What the prebuffer does once per part for every consumer (recording, live view).
        part_parser = PartParser()
        return sum(len(part_parser.parse(i, d, e, 0.0).video) for i, d, e in parts)

    copy_out = OUT / "copy.mp4"
    rows = [
        Row(
            "GopAssembler + FragmentShaper (copy mode)", best_cpu(both, args.repeat, LOOPS), shaped
        ),
        Row("  GopAssembler alone", best_cpu(assemble, args.repeat, LOOPS), shaped),
        Row("  FragmentShaper alone", best_cpu(shape, args.repeat, LOOPS), shaped),
        Row("  parsing the parts alone", best_cpu(parse_only, args.repeat, LOOPS), shaped),
        Row(
            "ffmpeg -c copy, fragmented MP4",
            child_cpu(ffmpeg(source, copy_out, "-c", "copy")),
            args.seconds,
            "child process",
        ),
    ]
    for preset in ("ultrafast", "veryfast"):
        encode = ("-c:v", "libx264", "-preset", preset, "-b:v", "2M", "-g", "50")
        command = ffmpeg(source, OUT / f"x264_{preset}.mp4", *encode, "-c:a", "copy")
        cpu = child_cpu(command)
        rows.append(Row(f"ffmpeg libx264 -preset {preset}", cpu, args.seconds, "child process"))
    rows.append(
        Row("(HA stream worker remux, paid anyway)", worker_cpu, args.seconds, "in-process, once")
    )

    fragment_bytes = shape()
    copy_cpu = rows[4].cpu
    print()
    print(f"input: {source.name}, video {video_kbps:.0f} kbit/s")
    print(f"shaped: {shaped:.1f} s of media, {len(parts)} LL-HLS parts, {len(gops)} GOPs")
    print(f"        -> {fragment_bytes / 1e6:.1f} MB of {FRAGMENT_MS} ms fragments")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, best of {args.repeat}")
    print()
    copy_rate = copy_cpu / args.seconds
    print("| Job | media s | CPU s | CPU s per media minute | x ffmpeg copy | Note |")
    print("|---|---:|---:|---:|---:|---|")
    for row in rows:
        rate = row.cpu / row.media_seconds
        print(
            f"| {row.name} | {row.media_seconds:.0f} | {row.cpu:.4f} | {rate * 60:.4f} "
            f"| {rate / copy_rate:.3f} | {row.note} |"
        )
    print()
    print("reproduce:", shlex.join(["../shared/toolchain/py314", ".venv/bin/python", *sys.argv]))
    print("ffmpeg copy:", shlex.join(ffmpeg(source, copy_out, "-c", "copy")))


if __name__ == "__main__":
    main()
