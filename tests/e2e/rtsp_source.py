"""An RTSP camera for stream tests: a shared live feed with SPS/PPS in its SDP.

``RtspSource`` runs a ``LiveFeedSource`` (the paced, looping MPEG-TS feed) and, in front of
it, ``rtsp_server.py`` under the system Python that has GStreamer's RTSP server. Clients of
rtsp://127.0.0.1:port/live share one media and join it mid-GOP, as with a real camera.
``restart()`` is a camera reboot: the server process goes away and comes back on the same
port once the feed's next SPS/PPS arrive. The first start takes any free port (the server
binds only after the feed's first keyframe, up to a GOP later: a port picked in advance
could be taken meanwhile by another test process).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from tests.e2e.live_source import LiveFeedSource
from tests.ports import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
# The server prints READY after the feed's first keyframe: a 10 s GOP takes up to 10 s.
READY_TIMEOUT = 60.0


class RtspSource:
    """Serve ``clip`` (H.264 MPEG-TS) as a live RTSP camera on 127.0.0.1:port."""

    def __init__(self, clip: Path) -> None:
        """Prepare; nothing runs before ``start``."""
        self.port = 0
        self.feed = LiveFeedSource(clip, free_port())
        self.starts = 0
        self._server: asyncio.subprocess.Process | None = None

    async def start(self) -> None:
        """Start the feed and the RTSP server; return once it listens."""
        await self.feed.start()
        await self._start_server()

    async def _start_server(self) -> None:
        self._server = await asyncio.create_subprocess_exec(
            SYSTEM_PYTHON, str(SERVER_SCRIPT), str(self.feed.port), str(self.port),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert self._server.stdout is not None
        async with asyncio.timeout(READY_TIMEOUT):
            line = await self._server.stdout.readline()
        ready, _, port = line.decode().partition(" ")
        assert ready == "READY", line
        self.port = int(port)
        self.starts += 1

    @property
    def url(self) -> str:
        """Return the camera's RTSP URL (known once started)."""
        return f"rtsp://127.0.0.1:{self.port}/live"

    async def restart(self) -> None:
        """Reboot the camera: every client drops; the server is back after the next SPS."""
        await self._stop_server()
        await self._start_server()

    async def _stop_server(self) -> None:
        server, self._server = self._server, None
        if server is not None and server.returncode is None:
            server.kill()
            await server.wait()

    async def stop(self) -> None:
        """Stop the server and the feed."""
        with contextlib.suppress(ProcessLookupError):
            await self._stop_server()
        await self.feed.stop()
