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
from collections import deque
import contextlib
from pathlib import Path
import shutil

TS_PACKET = 188
# Read a handful of TS packets at a time: small enough that clients see the stream paced as
# ffmpeg writes it, large enough not to wake the loop for every 188 bytes.
READ_PACKETS = 7
# A client that cannot keep up is dropped rather than buffered without bound.
CLIENT_BACKLOG_BYTES = 8 * 1024 * 1024
# ffmpeg's MPEG-TS muxer puts the first stream (the clip's video) on PID 0x100 and flags the TS
# packet that starts a keyframe's PES with the adaptation field's random_access_indicator.
VIDEO_PID = 0x100
RANDOM_ACCESS = 0x40
# Moments kept: connections and keyframes of the last minutes are plenty for a benchmark.
MOMENTS_KEPT = 512
# ffmpeg's input options for a camera's pace. After ffmpeg was starved of CPU (a loaded
# machine), plain -re reads 5 % faster until it has caught up with the wall clock, which can
# take many times as long as the stall; no camera sends faster than real time, and the RTSP
# test camera, which times frames on its first frame's clock, then holds them ever longer and
# drops them (seen in a soak as minutes without a keyframe). A feed that fell behind stays
# behind instead, at the camera's own rate.
REAL_TIME_INPUT = ("-re", "-readrate_catchup", "1")


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
        # time.monotonic() of each client connection and of each video keyframe sent out.
        self.connected_at: deque[float] = deque(maxlen=MOMENTS_KEPT)
        self.keyframes_at: deque[float] = deque(maxlen=MOMENTS_KEPT)

    @property
    def clients(self) -> int:
        """Return how many clients are connected."""
        return len(self._clients)

    def next_keyframe_after(self, moment: float) -> float | None:
        """Return when the feed sent its first keyframe after ``moment`` (None: not yet)."""
        return next((at for at in self.keyframes_at if at > moment), None)

    async def start(self) -> None:
        """Start the ffmpeg feed and the TCP server."""
        ffmpeg = shutil.which("ffmpeg")
        assert ffmpeg, "ffmpeg is needed for stream tests"
        self._process = await asyncio.create_subprocess_exec(
            ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
            *REAL_TIME_INPUT, "-stream_loop", "-1", "-i", str(self.clip),
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
        self.connected_at.append(asyncio.get_running_loop().time())
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
            if _starts_keyframe(chunk):
                self.keyframes_at.append(asyncio.get_running_loop().time())
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


def _starts_keyframe(chunk: bytes) -> bool:
    """Return True if a video TS packet in ``chunk`` starts a keyframe (random access)."""
    for offset in range(0, len(chunk), TS_PACKET):
        pid = ((chunk[offset + 1] & 0x1F) << 8) | chunk[offset + 2]
        if (
            pid == VIDEO_PID
            and chunk[offset + 1] & 0x40  # payload unit start
            and chunk[offset + 3] & 0x20  # adaptation field present
            and chunk[offset + 4] > 0
            and chunk[offset + 5] & RANDOM_ACCESS
        ):
            return True
    return False
