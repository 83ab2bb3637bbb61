"""What recording plus live view cost Home Assistant's event loop, before and after a change.

One run, a real ``hass`` process per variant (the soak's harness, tests/real_hass/): one paced
1280x720 30 fps H.264 + AAC camera with 2 s GOPs, joined mid-GOP, in its own process; hksv
from the working tree or from any commit (``git archive``d into the output folder); one hub
emulator that pairs, selects and keeps a recording open over HDS the whole time; then 0, 1
and 3 copy viewers (real SRTP, decrypted with libsrtp in this process, not Home Assistant's).
Per viewer count it reads, from inside Home Assistant, the CPU time of the event-loop thread
(``time.thread_time()`` on the loop) and, from /proc, the CPU of the whole ``hass`` process,
over a window of media time. The baseline in the same run: Home Assistant ``homekit``'s way
for one viewer, an ``ffmpeg`` reading the camera and sending video copied and audio as Opus
over SRTP, its CPU from /proc, the receiver in this process.

    ../shared/toolchain/py314 .venv/bin/python -m benchmarks.bench_shared_stream \
        --refs 9a27b29,WORKTREE --window-seconds 60

``WORKTREE`` is the checkout itself; ``WORKTREE:1s`` turns hksv's short parts off.
"""

from __future__ import annotations

import argparse
import asyncio
from contextlib import AsyncExitStack, suppress
from dataclasses import dataclass, field
import os
from pathlib import Path
import shutil
import socket
import subprocess
import sys
import time
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from custom_components.hksv.hap.rtp_stream import SessionCommand  # noqa: E402
from tests.hub.controller import capture_session_keys  # noqa: E402
from tests.live.viewer import LiveViewer  # noqa: E402
from tests.media import ClipSpec  # noqa: E402
from tests.real_hass.harness import (  # noqa: E402
    CameraFeed,
    CameraHub,
    Clip,
    HassProcess,
    make_clips,
    write_config,
)

CLIP = ClipSpec(
    seconds=60.0, width=1280, height=720, fps=30, gop_seconds=2.0, video_bitrate_kbps=1200
)
TICKS = os.sysconf("SC_CLK_TCK")
RECORDING_SECONDS = 150.0  # each recording the hub reads (hksv's own limit is 180 s)
SETTLE_SECONDS = 4.0
PREBUFFER_FILL_SECONDS = 8.0  # after the viewers' first packets, before the window opens


@dataclass
class Window:
    """One measurement window."""

    viewers: int
    seconds: float
    loop_cpu: float  # event-loop thread CPU seconds
    process_cpu: float  # whole hass process CPU seconds
    packets: list[int] = field(default_factory=list)  # video RTP packets per viewer

    @property
    def loop_per_minute(self) -> float:
        """Return loop CPU seconds per minute of media (the window is live media time)."""
        return self.loop_cpu / self.seconds * 60

    @property
    def process_percent(self) -> float:
        """Return the hass process's CPU in % of one core."""
        return self.process_cpu / self.seconds * 100


def _process_cpu(pid: int) -> float:
    """Return utime + stime of ``pid`` in seconds (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def _hksv_tree(ref: str, out: Path) -> Path:
    """Return the hksv folder of ``ref`` ("WORKTREE": this checkout)."""
    if ref == "WORKTREE":
        return ROOT / "custom_components" / "hksv"
    target = out / f"tree-{ref}"
    if not target.exists():
        target.mkdir(parents=True)
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", ref, "custom_components/hksv"],
            check=True,
            capture_output=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    return target / "custom_components" / "hksv"


async def _viewers(hub: CameraHub, count: int, stack: AsyncExitStack) -> list[LiveViewer]:
    """Start ``count`` copy viewers on their own slots; return them once video flows."""
    viewers = []
    for slot in range(count):
        viewer = LiveViewer(hub.hub, slot)
        stack.push_async_callback(viewer.close)
        await viewer.open()
        response = await viewer.setup()
        assert response.status == 0, f"SetupEndpoints status {response.status}"
        result = await viewer.select()
        assert result == {}, f"START refused: {result}"
        viewers.append(viewer)
    for viewer in viewers:
        await viewer.wait_packets(50)
    return viewers


async def _measure(hass: HassProcess, hub: CameraHub, count: int, seconds: float) -> Window:
    """Run ``count`` viewers and measure one window."""
    assert hass.process is not None
    pid = hass.process.pid
    async with AsyncExitStack() as stack:
        viewers = await _viewers(hub, count, stack)
        await asyncio.sleep(SETTLE_SECONDS)
        before = await hass.request({"cmd": "metrics"})
        cpu_before = _process_cpu(pid)
        packets_before = [len(v.packets) for v in viewers]
        began = time.monotonic()
        await asyncio.sleep(seconds)
        after = await hass.request({"cmd": "metrics"})
        elapsed = time.monotonic() - began
        cpu_after = _process_cpu(pid)
        packets = [len(v.packets) - n for v, n in zip(viewers, packets_before, strict=True)]
        for viewer in viewers:
            with suppress(Exception):
                await viewer.select(SessionCommand.END)
    return Window(
        count,
        elapsed,
        after["loop_cpu_seconds"] - before["loop_cpu_seconds"],
        cpu_after - cpu_before,
        packets,
    )


async def _variant(
    label: str, hksv: Path, options: dict[str, Any], args: argparse.Namespace, clips: Any
) -> list[Window]:
    """Start hass with ``hksv``, pair, record, and measure each viewer count."""
    workdir = args.out / label.replace(" ", "_").replace(":", "-")
    async with AsyncExitStack() as stack:
        feed = CameraFeed(*clips, rtsp=False)
        stack.push_async_callback(feed.stop)
        await feed.start()
        config = write_config(workdir / "config", [feed], hksv=hksv, entry_options=options)
        stack.callback(shutil.rmtree, config.control.parent, ignore_errors=True)
        hass = HassProcess(config, workdir / "hass.log")
        stack.push_async_callback(hass.stop)
        await hass.start()
        status = await hass.request({"cmd": "status"})
        print(f"  {label}: hksv loaded from {status['hksv_file']}", flush=True)
        (entry,) = status["entries"]
        hub = CameraHub(0, entry["port"])
        stack.push_async_callback(hub.close)
        await hub.pair(entry["setup_code"])
        # Recording turned on just now: let the prebuffer fill before the first event.
        await asyncio.sleep(PREBUFFER_FILL_SECONDS)

        async def motion(on: bool) -> None:
            await hass.request({"cmd": "motion", "camera": 0, "on": on})

        counts = [int(c) for c in args.viewers.split(",")]
        clips: list[Clip] = []

        async def record() -> None:
            # hksv ends a recording after 3 minutes: the hub opens the next one at once.
            while True:
                clips.append(Clip(0, time.time()))
                await hub.record(motion, RECORDING_SECONDS, clips[-1])

        recording = asyncio.create_task(record())
        await asyncio.sleep(10)  # the recording is open and past its pre-roll
        windows = []
        for count in counts:
            windows.append(await _measure(hass, hub, count, args.window_seconds))
            print(f"  {label}: {_row(windows[-1])}", flush=True)
        recording.cancel()
        with suppress(asyncio.CancelledError):
            await recording
        # The last clip was cut short by the cancel; every earlier one must be whole.
        for clip in clips[:-1]:
            if clip.problems:
                print(f"  {label}: recording problems: {clip.problems}", flush=True)
    return windows


def _row(window: Window) -> str:
    return (
        f"{window.viewers} viewers: loop {window.loop_per_minute:.2f} CPU-s/media-min, "
        f"hass {window.process_percent:.1f} % of a core, video packets {window.packets}"
    )


async def _ffmpeg_baseline(url: str, seconds: float) -> tuple[float, int]:
    """Run HA homekit's per-viewer ffmpeg (video copy, audio Opus, SRTP); CPU %, packets."""
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg
    sinks = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2)]
    for sink in sinks:
        sink.bind(("127.0.0.1", 0))
        sink.setblocking(False)
    video_port, audio_port = (s.getsockname()[1] for s in sinks)
    key = "zRjMrTlUhTzUq4bHoU8yO3YTWoVDS0yM0R4qTNxr"  # any 30-byte base64 key will do
    srtp = ["-srtp_out_suite", "AES_CM_128_HMAC_SHA1_80", "-srtp_out_params", key]
    command = [
        ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin", "-i", url,
        "-map", "0:v:0", "-an", "-c:v", "copy", "-payload_type", "99", "-ssrc", "1",
        "-f", "rtp", *srtp, f"srtp://127.0.0.1:{video_port}?rtcpport={video_port}&pkt_size=1316",
        "-map", "0:a:0", "-vn", "-c:a", "libopus", "-application", "lowdelay",
        "-frame_duration", "20", "-b:a", "24k", "-ar", "24000", "-ac", "1",
        "-payload_type", "110", "-ssrc", "2", "-f", "rtp", *srtp,
        f"srtp://127.0.0.1:{audio_port}?rtcpport={audio_port}&pkt_size=1316",
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL
    )
    received = 0
    loop = asyncio.get_running_loop()

    def drain(sink: socket.socket) -> None:
        nonlocal received
        with suppress(BlockingIOError):
            while sink.recv(65536):
                received += 1

    for sink in sinks:
        loop.add_reader(sink.fileno(), drain, sink)
    try:
        await asyncio.sleep(SETTLE_SECONDS + 2)  # ffmpeg probes the stream first
        cpu_before, began, packets_before = _process_cpu(process.pid), time.monotonic(), received
        await asyncio.sleep(seconds)
        cpu = _process_cpu(process.pid) - cpu_before
        elapsed = time.monotonic() - began
        return cpu / elapsed * 100, received - packets_before
    finally:
        for sink in sinks:
            loop.remove_reader(sink.fileno())
            sink.close()
        process.kill()
        await process.wait()


async def _run(args: argparse.Namespace) -> None:
    args.out = args.out.resolve()  # the configuration's symlinks point into it
    args.out.mkdir(parents=True, exist_ok=True)
    clips = await asyncio.get_running_loop().run_in_executor(
        None, make_clips, ROOT / "benchmarks" / "out" / "soak-clips", CLIP
    )
    results: dict[str, list[Window]] = {}
    with capture_session_keys():
        for ref in args.refs.split(","):
            tree, _, parts = ref.partition(":")
            options = {"live_view_short_parts": False} if parts == "1s" else {}
            print(f"variant {ref}", flush=True)
            results[ref] = await _variant(ref, _hksv_tree(tree, args.out), options, args, clips)
        async with AsyncExitStack() as stack:
            feed = CameraFeed(*clips, rtsp=False)
            stack.push_async_callback(feed.stop)
            await feed.start()
            ffmpeg_percent, ffmpeg_packets = await _ffmpeg_baseline(feed.url, args.window_seconds)
    _report(results, ffmpeg_percent, ffmpeg_packets, args)


def _report(
    results: dict[str, list[Window]],
    ffmpeg_percent: float,
    ffmpeg_packets: int,
    args: argparse.Namespace,
) -> None:
    lines = [
        f"Window {args.window_seconds:g} s per row; a recording open over HDS throughout.",
        "",
        "| hksv | viewers | event loop, CPU-s per media-minute | hass process, % of a core |",
        "|---|---|---|---|",
    ]
    for ref, windows in results.items():
        lines += [
            f"| {ref} | {w.viewers} | {w.loop_per_minute:.2f} | {w.process_percent:.1f} |"
            for w in windows
        ]
    lines += ["", "One copy viewer's cost (hass with 1 viewer minus hass with 0):", ""]
    for ref, windows in results.items():
        by_count = {w.viewers: w for w in windows}
        if 0 in by_count and 1 in by_count:
            extra = by_count[1].process_percent - by_count[0].process_percent
            lines.append(f"- {ref}: {extra:.1f} % of a core")
        if 0 in by_count and 3 in by_count:
            each = (by_count[3].process_percent - by_count[0].process_percent) / 3
            lines.append(f"  - with 3 viewers: {each:.1f} % of a core each")
    lines.append(
        f"- HA homekit's way, one ffmpeg per viewer (video copy + Opus audio, SRTP): "
        f"{ffmpeg_percent:.1f} % of a core ({ffmpeg_packets} packets in the window)"
    )
    report = "\n".join(lines)
    print(report)
    (args.out / "report.txt").write_text(report + "\n")


def main() -> None:
    """Parse the options and run."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refs", default="9a27b29,WORKTREE:1s,WORKTREE")
    parser.add_argument("--viewers", default="0,1,3")
    parser.add_argument("--window-seconds", type=float, default=60.0)
    parser.add_argument(
        "--out",
        type=Path,
        default=ROOT / "benchmarks" / "out" / time.strftime("shared-stream-%Y%m%d-%H%M%S"),
    )
    asyncio.run(_run(parser.parse_args()))


if __name__ == "__main__":
    main()
