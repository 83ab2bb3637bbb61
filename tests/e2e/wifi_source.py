"""A Wi-Fi camera: a paced live feed that drops frames, stalls and goes offline.

The clip is 30 fps H.264 + AAC with a keyframe every 60 frames, and once per loop two frames
are missing: their timestamps are skipped, so the GOP holding the gap lasts 62 frame times
(2.067 s) while every other GOP lasts 2 s, as when a Wi-Fi camera drops frames. It is served
like ``LiveFeedSource`` (one paced feed that every client joins mid-GOP), with two more
faults:

- ``go_offline()``/``come_back()``: the camera leaves the network (open connections are
  dropped, new ones refused) and returns on the same port;
- ``hold()``/``release()``: the network holds the data for a while and then delivers it all
  at once (TCP retransmits; nothing is lost), so the camera is silent but not gone.
"""

from __future__ import annotations

import asyncio
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
from av.audio.frame import AudioFrame
import numpy as np

from tests.e2e.live_source import LiveFeedSource
from tests.media import ClipSpec, make_video_frame

FPS = 30
GOP_FRAMES = 60
GAP_FRAMES = 2
AUDIO_RATE = 32000
AAC_FRAME = 1024


def write_gapped_clip(
    path: Path, *, seconds: float, width: int = 640, height: int = 360, gap_in_gop: int = 2
) -> Path:
    """Write ``seconds`` of 2 s GOPs (30 fps) with a two-frame timestamp gap in one GOP.

    Frame counters (tests/media.py) follow the timestamps, so the missing frames are also
    missing from the counters. Audio runs on without a gap, as a camera's microphone does.
    """
    spec = ClipSpec(seconds=seconds, width=width, height=height, fps=FPS)
    # Whole GOPs, so that every GOP but the one with the gap lasts 2 s, across loops too.
    frames = round(seconds * FPS / GOP_FRAMES) * GOP_FRAMES
    gap_at = gap_in_gop * GOP_FRAMES + GOP_FRAMES // 2
    with av.open(str(path), "w", format="mpegts") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height = width, height
        video.pix_fmt = "yuv420p"
        video.bit_rate = 800_000
        video.codec_context.gop_size = GOP_FRAMES
        video.codec_context.options = {
            "preset": "ultrafast",
            "bf": "0",
            "profile": "main",
            "x264-params": f"keyint={GOP_FRAMES}:min-keyint={GOP_FRAMES}:scenecut=0",
        }
        audio = out.add_stream("aac", rate=AUDIO_RATE)
        audio.layout = "mono"
        audio.bit_rate = 64000
        audio_pts = 0
        total_audio = (frames + GAP_FRAMES) * AUDIO_RATE // FPS
        for index in range(frames):
            slot = index + (GAP_FRAMES if index >= gap_at else 0)
            frame = make_video_frame(spec, slot)
            out.mux(video.encode(frame))
            while audio_pts < total_audio and audio_pts / AUDIO_RATE <= (slot + 1) / FPS:
                out.mux(audio.encode(_tone(audio_pts)))
                audio_pts += AAC_FRAME
        out.mux(video.encode(None))
        out.mux(audio.encode(None))
    return path


def _tone(pts: int) -> AudioFrame:
    """Return one AAC frame's worth of a quiet 440 Hz tone from sample ``pts``."""
    t = (np.arange(AAC_FRAME) + pts) / AUDIO_RATE
    data = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
    frame = AudioFrame.from_ndarray(data, format="fltp", layout="mono")
    frame.sample_rate = AUDIO_RATE
    frame.pts = pts
    frame.time_base = Fraction(1, AUDIO_RATE)
    return frame


class _HeldWriter:
    """A client connection whose data the network can hold back and deliver later."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        """Wrap ``writer``; data passes straight through until ``held`` is set."""
        self._writer = writer
        self.held = False
        self._backlog: list[bytes] = []

    @property
    def transport(self) -> Any:
        """Return the real transport (buffer size, abort)."""
        return self._writer.transport

    def is_closing(self) -> bool:
        """Return True once the connection is closing."""
        return self._writer.is_closing()

    def write(self, data: bytes) -> None:
        """Send ``data``, or keep it while the network holds the connection."""
        if self.held:
            self._backlog.append(data)
        else:
            self._writer.write(data)

    def release(self) -> None:
        """Deliver everything held, in order, and pass data through again."""
        self.held = False
        if not self._writer.is_closing():
            self._writer.write(b"".join(self._backlog))
        self._backlog.clear()


class WifiCameraSource(LiveFeedSource):
    """A ``LiveFeedSource`` that can go offline or have its data held by the network."""

    def __init__(self, clip: Path, port: int) -> None:
        """Prepare the feed; nothing runs before ``start``."""
        super().__init__(clip, port)
        self.offline = False
        self._held: list[_HeldWriter] = []

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Add a client through a connection the network can hold; refuse it while offline."""
        if self.offline:
            writer.transport.abort()
            return
        self.connections += 1
        held = _HeldWriter(writer)
        self._held.append(held)
        self._clients.add(held)  # type: ignore[arg-type]

    async def go_offline(self) -> None:
        """Leave the network: drop every client and refuse new ones."""
        self.offline = True
        await self.restart()

    def come_back(self) -> None:
        """Accept clients again; they join the feed wherever it is."""
        self.offline = False

    def hold(self) -> None:
        """Hold every open connection's data (the camera looks silent)."""
        for writer in self._held:
            writer.held = True

    def release(self) -> None:
        """Deliver what was held at once and carry on live."""
        for writer in self._held:
            writer.release()
