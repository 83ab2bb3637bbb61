"""A camera-like source: a generated clip looped in real time by ffmpeg over TCP.

HA's stream worker reads a plain file faster than real time; a camera does not. ffmpeg
``-re -stream_loop -1`` paces the clip and ``-listen 1`` serves it to one client, so the
loop below starts a new ffmpeg whenever the previous one ended (like a camera that accepts a
reconnect), and ``restart()`` kills the current one to simulate a source dropping mid-event.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
import shutil

from tests.e2e.live_source import REAL_TIME_INPUT


class PacedSource:
    """Serve ``clip`` as MPEG-TS over tcp://127.0.0.1:port in real time, forever."""

    def __init__(self, clip: Path, port: int) -> None:
        """Prepare the source."""
        self.clip = clip
        self.port = port
        self.url = f"tcp://127.0.0.1:{port}"
        self._process: asyncio.subprocess.Process | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self.connections = 0

    async def start(self) -> None:
        """Start serving."""
        ffmpeg = shutil.which("ffmpeg")
        assert ffmpeg, "ffmpeg is needed for stream tests"
        self._task = asyncio.create_task(self._serve(ffmpeg))
        await asyncio.sleep(0.3)

    async def _serve(self, ffmpeg: str) -> None:
        """Run one ffmpeg per client connection until stopped."""
        while not self._stopping:
            self._process = await asyncio.create_subprocess_exec(
                ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
                *REAL_TIME_INPUT, "-stream_loop", "-1", "-i", str(self.clip),
                "-c", "copy", "-f", "mpegts", "-listen", "1", f"{self.url}?listen=1",
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip
            self.connections += 1
            await self._process.wait()
            if not self._stopping:
                await asyncio.sleep(0.2)

    async def restart(self) -> None:
        """Drop the current client, as a camera rebooting would."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()

    async def stop(self) -> None:
        """Stop serving and reap ffmpeg."""
        self._stopping = True
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
