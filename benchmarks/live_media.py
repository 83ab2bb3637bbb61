"""Live-view media costs: packetize + SRTP, Opus encoding, the live transcoder.

Measures, in one run on one machine:

* H.264 RTP packetizing plus SRTP of a real 4 Mbit/s 720p30 stream: hksv's `SrtpContext`
  (`cryptography`) next to libsrtp (`pylibsrtp`) protecting the same packets, and each stage
  alone. Reported as media Mbit/s one core sustains and CPU ms per second of stream;
* Opus live audio from AAC (decode, resample, libopus) per negotiated rate and packet time,
  as CPU ms per second of audio;
* the live transcoder 1080p30 -> 720p30 (libx264 ultrafast zerolatency, 2000 kbit/s) next
  to the ffmpeg CLI running the same job on the same file.

No thresholds: the numbers are for comparison only. Run from the repository root:
    ../shared/toolchain/py314 .venv/bin/python benchmarks/live_media.py [--seconds 10] [--repeat 3]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
import os
from pathlib import Path
import platform
import resource
import subprocess
import sys
import threading
import time
import types

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "out" / "live"
COMMAND = "../shared/toolchain/py314 .venv/bin/python benchmarks/live_media.py"


def _import_without_home_assistant() -> None:
    """Make custom_components.hksv.* importable without running the HA integration."""
    sys.path.insert(0, str(ROOT))
    for name, path in (
        ("custom_components", ROOT / "custom_components"),
        ("custom_components.hksv", ROOT / "custom_components" / "hksv"),
    ):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(path)]
            sys.modules[name] = module


_import_without_home_assistant()

import av  # noqa: E402
import cryptography  # noqa: E402
import pylibsrtp  # noqa: E402

from custom_components.hksv.live.audio import OpusLiveEncoder  # noqa: E402
from custom_components.hksv.live.h264_rtp import (  # noqa: E402
    H264Packetizer,
    avcc_parameter_sets,
    payload_budget,
)
from custom_components.hksv.live.srtp import SrtpContext  # noqa: E402
from custom_components.hksv.live.transcode import LiveVideoTranscoder  # noqa: E402
from custom_components.hksv.live.transcode_codec import (  # noqa: E402
    EncodedSample,
    LiveVideoTarget,
)
from custom_components.hksv.media.encoders import EncoderChooser  # noqa: E402
from tests.media import ClipSpec, write_clip  # noqa: E402

KEY, SALT = bytes(range(16)), bytes(range(16, 30))
SSRC = 0x12345678
TARGET_BPS = 4_000_000  # the copy stream the brief budgets for (docs live-view.md §5.15)


@dataclass(frozen=True, slots=True)
class Clip:
    """An MP4's video samples (AVCC, 90 kHz pts) and audio samples (raw AAC)."""

    path: Path
    avcc: bytes
    video: list[tuple[bytes, int, bool]]
    audio: list[bytes]
    audio_config: bytes
    audio_rate: int
    seconds: float


def cpu_seconds(children: bool = False) -> float:
    """Return user + system CPU seconds of this process (all threads) or of its children."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def make_clip(spec: ClipSpec, name: str) -> Clip:
    """Encode (once, cached) and demux a clip."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{name}.mp4"
    if not path.exists():
        write_clip(path, spec)
    video: list[tuple[bytes, int, bool]] = []
    audio: list[bytes] = []
    with av.open(str(path)) as container:
        vstream = container.streams.video[0]
        astream = container.streams.audio[0]
        avcc = bytes(vstream.codec_context.extradata or b"")
        config = bytes(astream.codec_context.extradata or b"")
        for packet in container.demux(vstream, astream):
            if not packet.size or packet.pts is None:
                continue
            if packet.stream is vstream:
                pts = round(packet.pts * vstream.time_base * 90_000)
                video.append((bytes(packet), pts, packet.is_keyframe))
            else:
                audio.append(bytes(packet))
    return Clip(path, avcc, video, audio, config, spec.audio_rate, spec.seconds)


def best_of(repeat: int, run: Callable[[], None]) -> tuple[float, float]:
    """Return the lowest (wall s, CPU s) of ``repeat`` runs."""
    results = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), cpu_seconds()
        run()
        results.append((time.perf_counter() - wall, cpu_seconds() - cpu))
    return min(results)


def bench_packetize_srtp(clip: Clip, repeat: int) -> list[tuple[str, float, float]]:
    """Return (row, media Mbit/s on one core, CPU ms per second of a 4 Mbit/s stream) rows."""
    budget = payload_budget(None, ipv6=False)
    sps, pps = avcc_parameter_sets(clip.avcc)
    media_bits = sum(len(data) for data, _, _ in clip.video) * 8

    def packetizer() -> H264Packetizer:
        p = H264Packetizer(ssrc=SSRC, payload_type=99, max_payload_size=budget)
        p.set_parameter_sets(sps, pps)
        return p

    # One continuous stream for the SRTP-only rows (sequence numbers as a sender makes them).
    single = packetizer()
    packets = [pkt for data, pts, key in clip.video for pkt in single.packetize(data, pts, key)]

    def packetize_only() -> None:
        p = packetizer()
        for data, pts, key in clip.video:
            p.packetize(data, pts, key)

    def srtp_ours() -> None:
        context = SrtpContext(KEY, SALT)
        for packet in packets:
            context.protect(packet)

    def srtp_libsrtp() -> None:
        session = pylibsrtp.Session(
            pylibsrtp.Policy(key=KEY + SALT, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        )
        for packet in packets:
            session.protect(packet)

    def both_ours() -> None:
        p, context = packetizer(), SrtpContext(KEY, SALT)
        for data, pts, key in clip.video:
            for packet in p.packetize(data, pts, key):
                context.protect(packet)

    def both_libsrtp() -> None:
        p = packetizer()
        session = pylibsrtp.Session(
            pylibsrtp.Policy(key=KEY + SALT, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND)
        )
        for data, pts, key in clip.video:
            for packet in p.packetize(data, pts, key):
                session.protect(packet)

    rows = []
    for name, run in (
        ("packetize only", packetize_only),
        ("SRTP only, hksv (cryptography)", srtp_ours),
        ("SRTP only, libsrtp (pylibsrtp)", srtp_libsrtp),
        ("packetize + SRTP, hksv", both_ours),
        ("packetize + SRTP, libsrtp", both_libsrtp),
    ):
        wall, cpu = best_of(repeat, run)
        # Cost is per byte and per packet, and packets are nearly all full at any rate, so
        # the CPU for a 4 Mbit/s stream scales from this stream's by its bits.
        rows.append((name, media_bits / wall / 1e6, cpu / media_bits * TARGET_BPS * 1000))
    print(
        f"  ({len(packets)} packets of <= {budget} B payload, "
        f"{len(packets) / media_bits * TARGET_BPS:.0f} packets/s at 4 Mbit/s)"
    )
    return rows


def bench_opus(clip: Clip, repeat: int) -> list[tuple[str, float, int]]:
    """Return (row, CPU ms per audio second, packets) rows."""
    seconds = len(clip.audio) * 1024 / clip.audio_rate
    rows = []
    for rate, ptime in ((16000, 20), (24000, 20), (16000, 60), (24000, 30)):
        count = 0

        def run(rate: int = rate, ptime: int = ptime) -> None:
            nonlocal count
            encoder = OpusLiveEncoder(
                aac_config=clip.audio_config,
                sample_rate=rate,
                packet_time_ms=ptime,
                bitrate_kbps=24,
            )
            count = len(encoder.encode(clip.audio)) + len(encoder.flush())

        _, cpu = best_of(repeat, run)
        rows.append((f"Opus {rate // 1000} kHz / {ptime} ms", cpu / seconds * 1000, count))
    return rows


def bench_transcoder(clip: Clip, repeat: int) -> list[tuple[str, float, float, float]]:
    """Return (row, wall s, CPU s, x real time) for hksv's transcoder and the ffmpeg CLI."""
    target = LiveVideoTarget(1280, 720, 30, 2000)
    frames = len(clip.video)

    def hksv() -> None:
        done = threading.Event()
        count = 0

        def on_sample(_: EncodedSample) -> None:
            nonlocal count
            count += 1
            if count >= frames - 2:  # the decoder may hold a frame or two
                done.set()

        transcoder = LiveVideoTranscoder(
            codec="avc1",
            extradata=clip.avcc,
            target=target,
            on_sample=on_sample,
            encoders=EncoderChooser(("libx264",)),
        )
        try:
            for data, pts, key in clip.video:
                # A live feed never waits (it drops to the next keyframe); the benchmark does.
                if not transcoder.put(data, pts, key, wait=120):
                    raise RuntimeError(f"transcoder stuck: {transcoder.stats()}")
            if not done.wait(120):
                raise RuntimeError(f"only {count} of {frames} frames: {transcoder.stats()}")
        finally:
            transcoder.close()

    rows = []
    wall, cpu = best_of(repeat, hksv)
    rows.append(("hksv LiveVideoTranscoder", wall, cpu, clip.seconds / wall))
    command = [
        "ffmpeg", "-v", "error", "-nostdin", "-i", str(clip.path), "-an",
        "-vf", "scale=1280:720:flags=bilinear", "-r", "30", "-c:v", "libx264",
        "-preset", "ultrafast", "-tune", "zerolatency", "-bf", "0", "-g", "30",
        "-x264-params", "scenecut=0:repeat-headers=1", "-b:v", "2000k", "-maxrate", "2000k",
        "-bufsize", "2000k", "-f", "null", "-",
    ]  # fmt: skip
    results = []
    for _ in range(repeat):
        start, cpu_start = time.perf_counter(), cpu_seconds(children=True)
        subprocess.run(command, check=True)
        results.append((time.perf_counter() - start, cpu_seconds(children=True) - cpu_start))
    wall, cpu = min(results)
    rows.append(("ffmpeg CLI, same job", wall, cpu, clip.seconds / wall))
    return rows


def main() -> None:
    """Run every measurement and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--skip-transcode", action="store_true")
    args = parser.parse_args()
    print(
        f"Python {platform.python_version()}, cryptography {cryptography.__version__}, "
        f"pylibsrtp {pylibsrtp.__version__}, PyAV {av.__version__}, {platform.machine()}, "
        f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}, best of {args.repeat}"
    )
    stream = make_clip(
        ClipSpec(
            seconds=args.seconds, width=1280, height=720, fps=30, gop_seconds=2,
            video_bitrate_kbps=4000, audio_rate=48000, audio_channels=2, container="mp4",
        ),
        f"720p30-4M-{args.seconds:g}s",
    )  # fmt: skip
    real_kbps = sum(len(d) for d, _, _ in stream.video) * 8 / stream.seconds / 1000
    print(f"\nPacketize + SRTP, 1280x720@30 H.264 at {real_kbps:.0f} kbit/s, {stream.seconds:g} s:")
    print("| Stage | media Mbit/s on one core | CPU ms per second at 4 Mbit/s |")
    print("|---|---|---|")
    for name, mbps, cpu_ms in bench_packetize_srtp(stream, args.repeat):
        print(f"| {name} | {mbps:.0f} | {cpu_ms:.1f} |")
    print(f"\nOpus live audio from AAC 48 kHz stereo, {stream.seconds:g} s, 24 kbit/s:")
    print("| Rate / packet time | CPU ms per audio second | packets |")
    print("|---|---|---|")
    for name, cpu_ms, count in bench_opus(stream, args.repeat):
        print(f"| {name} | {cpu_ms:.1f} | {count} |")
    if not args.skip_transcode:
        source = make_clip(
            ClipSpec(
                seconds=args.seconds, width=1920, height=1080, fps=30, gop_seconds=2,
                video_bitrate_kbps=2000, audio_rate=48000, audio_channels=2, container="mp4",
            ),
            f"1080p30-2M-{args.seconds:g}s",
        )  # fmt: skip
        print(f"\nLive transcode 1920x1080@30 -> 1280x720@30, 2000 kbit/s, {source.seconds:g} s:")
        print("| Run | wall s | CPU s | x real time |")
        print("|---|---|---|---|")
        for name, wall, cpu, speed in bench_transcoder(source, max(1, args.repeat - 1)):
            print(f"| {name} | {wall:.2f} | {cpu:.2f} | {speed:.2f} |")
    print(f"\nReproduce: {COMMAND} --seconds {args.seconds:g} --repeat {args.repeat}")


if __name__ == "__main__":
    main()
