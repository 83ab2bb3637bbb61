"""A hostile LAN peer for bench_hostile_load.py, run as its own process (loopback only).

For ``--seconds`` it holds ``--hap-connections`` unauthenticated HAP connections (8 per
source address in 127.0.2.0/24) and ``--hds-connections`` HDS connection attempts open (each
starts a 1 MiB frame and sends 256 KiB of it), and sends ``--rate`` malformed HAP requests per
second on fresh connections from 127.0.3.0/24, cycling through the cases of issue 7. Prints
one JSON line of counts at the end. Everything is bounded: connection counts, the request
rate, and the duration.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import time
from typing import Final

HOST: Final = "127.0.0.1"
OTHER_HOST: Final = "127.0.0.2"  # an address that never prepared an HDS session
IO_TIMEOUT: Final = 10.0

MALFORMED: Final = (
    b"POST /pair-setup HTTP/1.1\r\nHost: h\r\nContent-Length: 314572800\r\n\r\n",
    b"POST /pair-setup HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\n\x06",
    b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n",
    b"BREW /accessories HTTP/1.1\r\nHost: h\r\n\r\n",
    b"GET /characteristics?id=1.%C2%B2 HTTP/1.1\r\nHost: h\r\n\r\n",
    b"PUT /prepare HTTP/1.1\r\nHost: h\r\nContent-Length: 8\r\n\r\nnot json",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: \xff\r\n\r\n",
    b"GET / HTTP/1.1\r\nX: " + b"a" * 9000,
)


def _source(block: int, index: int) -> str:
    """Return a loopback source address: strangers come from many addresses."""
    return f"127.0.{block}.{index % 250 + 1}"


async def _malformed_request(
    port: int, request: bytes, statuses: dict[str, int], source: str
) -> None:
    """Send one malformed request on a fresh connection; count the status line or failure."""
    try:
        async with asyncio.timeout(IO_TIMEOUT):
            reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source, 0))
            writer.write(request)
            line = await reader.readline()
            writer.close()
        key = line.split(b" ")[1].decode() if line.startswith(b"HTTP/1.1 ") else "no answer"
    except OSError, TimeoutError:
        key = "error"
    statuses[key] = statuses.get(key, 0) + 1


async def _hold_hap(port: int, count: int, stop: asyncio.Event) -> int:
    """Open ``count`` idle HAP connections (a partial request each) until ``stop``."""
    streams = []
    for index in range(count):
        with contextlib.suppress(OSError):
            source = _source(2, index // 8)  # 8 per address
            reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source, 0))
            writer.write(b"POST /pair-setup HTTP/1.1\r\nHost: h\r\n")
            streams.append((reader, writer))
    await stop.wait()
    held = sum(not reader.at_eof() for reader, _ in streams)
    writers = [writer for _, writer in streams]
    for writer in writers:
        writer.close()
    return held


async def _flood_hds(port: int, count: int, stop: asyncio.Event) -> dict[str, int]:
    """Open ``count`` HDS connections from two addresses, each sending 256 KiB of a 1 MiB frame."""
    flood = b"\x01\x0f\xff\xff" + bytes(256 * 1024)
    streams = []
    for index in range(count):
        source = OTHER_HOST if index % 2 else HOST
        try:
            reader, writer = await asyncio.open_connection(HOST, port, local_addr=(source, 0))
        except OSError:
            continue
        writer.write(flood)
        streams.append((reader, writer))
    closed = 0
    for reader, _ in streams:
        try:
            async with asyncio.timeout(0.5):
                while await reader.read(65536):
                    pass
        except ConnectionError:
            closed += 1  # reset: closed with our unread flood in its buffer
        except OSError, TimeoutError:
            pass  # still open
        else:
            closed += 1
    await stop.wait()
    for _, writer in streams:
        writer.close()
    return {"opened": len(streams), "closed_by_accessory": closed}


async def main(args: argparse.Namespace) -> dict[str, object]:
    """Run the attack for the given duration and return the counts."""
    stop = asyncio.Event()
    hap = asyncio.create_task(_hold_hap(args.hap_port, args.hap_connections, stop))
    hds = asyncio.create_task(_flood_hds(args.hds_port, args.hds_connections, stop))
    statuses: dict[str, int] = {}
    pending: set[asyncio.Task[None]] = set()
    start = time.monotonic()
    cases = itertools.cycle(MALFORMED)
    sent = 0
    while (elapsed := time.monotonic() - start) < args.seconds:
        due = int(elapsed * args.rate) + 1
        while sent < due:
            request = _malformed_request(args.hap_port, next(cases), statuses, _source(3, sent))
            task = asyncio.create_task(request)
            pending.add(task)
            task.add_done_callback(pending.discard)
            sent += 1
        await asyncio.sleep(1 / args.rate)
    await asyncio.gather(*pending)
    stop.set()
    return {
        "seconds": args.seconds,
        "malformed_sent": sent,
        "malformed_statuses": statuses,
        "hap_idle_held_to_end": await hap,
        "hds": await hds,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hap-port", type=int, required=True)
    parser.add_argument("--hds-port", type=int, required=True)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--hap-connections", type=int, default=200)
    parser.add_argument("--hds-connections", type=int, default=200)
    arguments = parser.parse_args()
    # Bounded whatever is asked: at most 2 minutes, 1000 requests/s, 1000 connections each.
    arguments.seconds = min(arguments.seconds, 120.0)
    arguments.rate = min(max(arguments.rate, 1.0), 1000.0)
    arguments.hap_connections = min(arguments.hap_connections, 1000)
    arguments.hds_connections = min(arguments.hds_connections, 1000)
    print(json.dumps(asyncio.run(main(arguments))))
