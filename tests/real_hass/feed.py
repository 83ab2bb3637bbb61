"""One camera feed in its own process, switched by commands on stdin.

Run as ``python -m tests.real_hass.feed --clip DAY [--night-clip NIGHT] [--rtsp]``; it prints
``URL <url>`` once clients can connect, then reads one command per line:

* ``drop SECONDS``: the camera goes away (every client dropped, connections refused) and comes
  back after SECONDS;
* ``night`` / ``day``: switch to the night (lower frame rate) clip or back, on the running
  feed: timestamps continue (a small step forward), clients stay connected and see a new
  keyframe, as with a camera whose encoder switches to its night profile;
* ``quit``.

A separate process because a feed served from a loop that also waits on Home Assistant (or
decodes a clip) stalls the camera; here nothing else runs on the feed's loop.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path
import shutil
import sys
import time

from tests.e2e.live_source import REAL_TIME_INPUT, LiveFeedSource
from tests.e2e.rtsp_source import RtspSource
from tests.real_hass.harness import free_port

# ffmpeg -re may run up to half a second ahead of real time at its start (initial burst):
# the next clip's timestamps start that far after the last ones could have gone.
SWITCH_STEP_SECONDS = 0.6


class SwitchableFeed(LiveFeedSource):
    """A LiveFeedSource whose clip can change without dropping its clients."""

    def __init__(self, clip: Path, port: int) -> None:
        """Prepare the feed."""
        super().__init__(clip, port)
        self._offset = 0.0
        self._since = 0.0

    async def start(self) -> None:
        """Start the feed; remember when its timestamps started."""
        self._since = time.monotonic()
        await super().start()

    async def switch(self, clip: Path) -> None:
        """Continue the feed from ``clip``, its timestamps after the current ones."""
        offset = self._offset + (time.monotonic() - self._since) + SWITCH_STEP_SECONDS
        ffmpeg = shutil.which("ffmpeg")
        assert ffmpeg
        process = await asyncio.create_subprocess_exec(
            ffmpeg, "-hide_banner", "-loglevel", "error", "-nostdin",
            *REAL_TIME_INPUT, "-stream_loop", "-1", "-i", str(clip),
            "-output_ts_offset", f"{offset:.3f}",
            "-c", "copy", "-f", "mpegts", "-flush_packets", "1", "pipe:1",
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        old_process, old_pump = self._process, self._pump
        self._process, self._offset, self._since = process, offset, time.monotonic()
        self._pump = asyncio.create_task(self._feed())
        if old_pump is not None:
            old_pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await old_pump
        if old_process is not None and old_process.returncode is None:
            old_process.kill()
            await old_process.wait()

    async def drop(self, seconds: float) -> None:
        """Go away for ``seconds``: clients dropped, connections refused; then come back."""
        if self._server is not None:
            self._server.close()
        await self.restart()
        await asyncio.sleep(seconds)
        self._server = await asyncio.start_server(self._on_client, "127.0.0.1", self.port)


class RtspFeed(RtspSource):
    """An RTSP camera that can go away for a while."""

    def __init__(self, clip: Path) -> None:
        """Prepare; its feed on a kernel-picked port (no fixed block shared with test runs)."""
        super().__init__(clip)
        self.feed = LiveFeedSource(clip, free_port())

    async def drop(self, seconds: float) -> None:
        """Stop the RTSP server for ``seconds``, then start it on the same port."""
        await self._stop_server()
        await asyncio.sleep(seconds)
        await self._start_server()


async def _main(args: argparse.Namespace) -> None:
    source: SwitchableFeed | RtspFeed
    if args.rtsp:
        source = RtspFeed(args.clip)
        await source.start()
        url = source.url
    else:
        source = SwitchableFeed(args.clip, args.port)
        await source.start()
        url = source.url
    print(f"URL {url}", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    background: set[asyncio.Task[None]] = set()
    try:
        while line := (await reader.readline()).decode().split():
            command = line[0]
            if command == "quit":
                break
            if command == "drop":
                task = asyncio.create_task(source.drop(float(line[1])))
                background.add(task)
                task.add_done_callback(background.discard)
            elif command in ("night", "day") and isinstance(source, SwitchableFeed):
                await source.switch(args.night_clip if command == "night" else args.clip)
            print(f"OK {command}", flush=True)
    finally:
        for task in background:
            task.cancel()
        await source.stop()


def main() -> None:
    """Parse arguments and serve until ``quit`` or end of input."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--clip", type=Path, required=True)
    parser.add_argument("--night-clip", type=Path)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rtsp", action="store_true")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
