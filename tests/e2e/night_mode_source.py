"""A camera whose frame rate changes mid-run: day at 30 fps, night at 15 fps, frames dropped.

Cameras halve their frame rate at night (longer exposure) and Wi-Fi cameras drop frames now
and then; neither changes the picture size or the stream's parameter sets. ``NightModeFeed``
encodes one continuous H.264/AAC clip whose frames follow a schedule of phases (each a frame
rate for a number of seconds) with frames dropped at random, keyframes every ``gop_seconds``
of *time* (so a GOP holds half as many frames at night), and audio running on throughout.
The clip is served as one paced live MPEG-TS feed by ``LiveFeedSource``: every client joins
mid-GOP wherever the feed is, and the schedule loops like any live camera.

Every picture carries its frame index (tests/media.py), so a test can tell from a recording
which frames, and at which rate, the camera sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
import random

import av
from av.video.frame import PictureType

from tests.e2e.live_source import LiveFeedSource
from tests.media import ClipSpec, _audio_frames, make_video_frame

# MPEG-TS timestamps run at 90 kHz.
_TIME_BASE = Fraction(1, 90000)


@dataclass(frozen=True, slots=True)
class Phase:
    """``seconds`` of video at ``fps``, each frame dropped with probability ``drop``."""

    fps: int
    seconds: float
    drop: float = 0.0


@dataclass(frozen=True, slots=True)
class FrameRateSchedule:
    """The camera's day/night program; the clip is its one loop."""

    phases: tuple[Phase, ...]
    width: int = 640
    height: int = 360
    gop_seconds: float = 2.0
    seed: int = 13

    @property
    def seconds(self) -> float:
        """Return the length of one loop."""
        return sum(phase.seconds for phase in self.phases)

    def frame_times(self) -> list[tuple[Fraction, bool]]:
        """Return (time in seconds, keyframe) of every frame the camera sends, drops removed.

        The first frame of a phase and the first frame at or after each ``gop_seconds``
        boundary are keyframes; a keyframe is never dropped (a camera drops what it could not
        capture, and the encoder's next frame then starts the GOP).
        """
        rng = random.Random(self.seed)
        frames: list[tuple[Fraction, bool]] = []
        start = Fraction(0)
        next_key = Fraction(0)
        gop = Fraction(self.gop_seconds).limit_denominator(1000)
        for phase in self.phases:
            step = Fraction(1, phase.fps)
            count = round(phase.seconds * phase.fps)
            for index in range(count):
                time = start + index * step
                key = time >= next_key
                if not key and rng.random() < phase.drop:
                    continue
                if key:
                    while next_key <= time:
                        next_key += gop
                frames.append((time, key))
            start += Fraction(phase.seconds).limit_denominator(1000)
        return frames


def write_schedule_clip(path: Path, schedule: FrameRateSchedule) -> Path:
    """Encode ``schedule`` (H.264 Main, AAC-LC 32 kHz mono) as MPEG-TS into ``path``."""
    spec = ClipSpec(seconds=schedule.seconds, width=schedule.width, height=schedule.height, fps=30)
    frames = schedule.frame_times()
    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=30)
        video.width, video.height = spec.width, spec.height
        video.pix_fmt = "yuv420p"
        video.bit_rate = spec.video_bitrate_kbps * 1000
        video.codec_context.time_base = _TIME_BASE
        keyint = len(frames) + 1
        video.codec_context.options = {
            "preset": "ultrafast",
            "bf": "0",
            "profile": "main",
            "forced-idr": "1",
            # Keyframes only where the schedule forces them.
            "x264-params": f"keyint={keyint}:min-keyint=1:scenecut=0",
        }
        audio = out.add_stream("aac", rate=spec.audio_rate)
        audio.layout = "mono"
        audio.bit_rate = 64000
        audio_iter = _audio_frames(spec, audio)
        pending_audio = next(audio_iter, None)
        for index, (time, key) in enumerate(frames):
            frame = make_video_frame(spec, index)
            frame.pts = int(time / _TIME_BASE)
            frame.time_base = _TIME_BASE
            frame.pict_type = PictureType.I if key else PictureType.NONE
            out.mux(video.encode(frame))
            while pending_audio is not None and pending_audio.pts / spec.audio_rate <= time:
                out.mux(audio.encode(pending_audio))
                pending_audio = next(audio_iter, None)
        out.mux(video.encode(None))
        while pending_audio is not None:
            out.mux(audio.encode(pending_audio))
            pending_audio = next(audio_iter, None)
        out.mux(audio.encode(None))
    return path


class NightModeFeed:
    """Serve a ``FrameRateSchedule`` as a paced live feed over tcp://127.0.0.1:port."""

    def __init__(self, clip: Path, schedule: FrameRateSchedule, port: int) -> None:
        """Prepare the feed for a clip written by ``write_schedule_clip``."""
        self.schedule = schedule
        self._feed = LiveFeedSource(clip, port)
        self.url = self._feed.url

    @property
    def phases(self) -> Sequence[Phase]:
        """Return the schedule's phases, in the order the camera runs them."""
        return self.schedule.phases

    @property
    def connections(self) -> int:
        """Return how many times a client connected."""
        return self._feed.connections

    async def start(self) -> None:
        """Start the feed (it is already running when the first client joins)."""
        await self._feed.start()

    async def restart(self) -> None:
        """Drop every client (a camera reboot); they reconnect mid-GOP."""
        await self._feed.restart()

    async def stop(self) -> None:
        """Stop the feed and its ffmpeg."""
        await self._feed.stop()
