"""A camera-like live feed: one paced MPEG-TS stream that every client joins mid-stream.

A real camera does not start a new stream for each client: a client connects to a feed that
is already running and joins wherever it is, usually in the middle of a GOP, before the next
keyframe and possibly between in-band SPS/PPS. ``PacedSource`` (one ffmpeg per client) always
starts on a keyframe and hides those faults; this source does not.

One ffmpeg reads the clip in real time (``-re -stream_loop -1``) and writes MPEG-TS to a pipe;
a loopback TCP server copies the feed to every connected client from the packet it is at,
aligned to 188-byte TS packets (ffmpeg repeats PAT/PMT, so a joiner finds the programs).

Faults a camera shows are switches on the feed: ``restart()`` drops every client (a camera
reboot: clients reconnect and join mid-GOP again), ``stall()``/``resume()`` stop and restart
the data on open connections (a camera that hangs without closing).
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
import shutil

TS_PACKET = 188
# Read a handful of TS packets at a time: small enough that clients see the stream paced as
# ffmpeg writes it, large enough not to wake the loop for every 188 bytes.
READ_PACKETS = 7
# A client that cannot keep up is dropped rather than buffered without bound.
CLIENT_BACKLOG_BYTES = 8 * 1024 * 1024


class LiveFeedSource:
    """Serve ``clip`` as one live MPEG-TS feed over tcp://127.0.0.1:port, joined mid-stream."""

    def __init__(self, clip: Path, port: int) -> None:
        """Prepare the feed; nothing runs before ``start``."""
        self.clip = clip
        self.port = port
        self.url = f"tcp://127.0.0.1:{port}"
        self.connections = 0
        self.bytes_fed = 0
        self._process: asyncio.subprocess.Process | None = None
        self._pump: asyncio.Task[None] | None = None
        self._server: asyncio.Server | None = None
        self._clients: set[asyncio.StreamWriter] = set()
        self._stalled = False

    async def start(self) -> None:
        """Start the ffmpeg feed and the TCP server."""
        ffmpeg = shutil.which("ffmpeg")
        assert ffmpeg, "ffmpeg is needed for stream tests"
        self._process = await asyncio.create_subprocess_exec(
            ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
            "-re", "-stream_loop", "-1", "-i", str(self.clip),
            "-c", "copy", "-f", "mpegts", "-flush_packets", "1", "pipe:1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        self._pump = asyncio.create_task(self._feed())
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", self.port)
        # Let the feed run a little so the first client joins mid-stream, as with a camera.
        await asyncio.sleep(0.3)

    async def _on_client(self, _reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Add a client; it receives the feed from the next TS packet on."""
        self.connections += 1
        self._clients.add(writer)

    async def _feed(self) -> None:
        """Copy ffmpeg's output to every client, whole TS packets at a time."""
        assert self._process is not None
        assert self._process.stdout is not None
        stdout = self._process.stdout
        while True:
            try:
                chunk = await stdout.readexactly(TS_PACKET * READ_PACKETS)
            except asyncio.IncompleteReadError:
                return
            self.bytes_fed += len(chunk)
            if self._stalled:
                continue
            for writer in list(self._clients):
                if writer.is_closing():
                    self._clients.discard(writer)
                    continue
                if writer.transport.get_write_buffer_size() > CLIENT_BACKLOG_BYTES:
                    self._drop(writer)
                    continue
                writer.write(chunk)

    def _drop(self, writer: asyncio.StreamWriter) -> None:
        self._clients.discard(writer)
        writer.transport.abort()

    async def restart(self) -> None:
        """Drop every client, as a camera rebooting would; they reconnect mid-stream."""
        for writer in list(self._clients):
            self._drop(writer)

    def stall(self) -> None:
        """Stop sending data on the open connections (a camera that hangs)."""
        self._stalled = True

    def resume(self) -> None:
        """Send data again after ``stall``; clients continue from the current packet."""
        self._stalled = False

    async def stop(self) -> None:
        """Close every client, the server and ffmpeg."""
        for writer in list(self._clients):
            self._drop(writer)
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await self._server.wait_closed()
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
