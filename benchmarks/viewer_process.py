"""A receiver in its own process, for latency numbers the test's event loop cannot skew.

Two modes, both print one JSON object on stdout when done:

* ``srtp KEYSALT_HEX SECONDS``: bind a UDP port on 127.0.0.1 (printed first, on its own line),
  stamp every datagram on receipt, then decrypt with libsrtp (pylibsrtp), depacketize H.264
  and decode with PyAV; report, per decoded picture, the frame counter drawn into it and when
  the last packet of its access unit arrived, and when the first RTP packet arrived.
* ``feed URL SECONDS``: read the camera feed itself (as a second client of the camera) and
  report, per decoded picture, its frame counter and when it was decoded: the reference for
  "when the camera sent this frame".

Times are ``time.monotonic()``, which is one clock for every process on Linux. Run from the
repository root with ``PYTHONPATH=.`` (``benchmarks/live_view.py`` does).
"""

from __future__ import annotations

import json
import socket
import sys
import time
from typing import Any

import av
import pylibsrtp

from tests.live.viewer import RtpPacket, access_units
from tests.media import read_frame_counter


def receive_srtp(key_salt: bytes, seconds: float) -> dict[str, Any]:
    """Receive SRTP for ``seconds`` after the first packet (or 60 s without one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    sock.bind(("127.0.0.1", 0))
    print(sock.getsockname()[1], flush=True)
    datagrams: list[tuple[float, bytes]] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            data = sock.recv(65536)
        except TimeoutError:
            break
        now = time.monotonic()
        if not datagrams:
            deadline = now + seconds
        datagrams.append((now, data))
    sock.close()
    policy = pylibsrtp.Policy(key=key_salt, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND)
    session = pylibsrtp.Session(policy=policy)
    packets: list[RtpPacket] = []
    for arrived, data in datagrams:
        if 192 <= data[1] <= 223:
            continue  # SRTCP
        plain = session.unprotect(data)
        first, second = plain[0], plain[1]
        seq = int.from_bytes(plain[2:4])
        timestamp = int.from_bytes(plain[4:8])
        ssrc = int.from_bytes(plain[8:12])
        packets.append(
            RtpPacket(
                len(data),
                first >> 6,
                bool(first & 0x20),
                bool(first & 0x10),
                first & 0x0F,
                bool(second & 0x80),
                second & 0x7F,
                seq,
                timestamp,
                ssrc,
                plain[12:],
                arrived,
            )
        )
    codec = av.CodecContext.create("h264", "r")
    frames: list[tuple[int, float]] = []
    for unit in access_units(packets):
        data = b"".join(b"\x00\x00\x00\x01" + nal for nal in unit.nals)
        try:
            decoded = codec.decode(av.Packet(data))
        except av.error.InvalidDataError:
            continue
        frames.extend((read_frame_counter(f), unit.packets[-1].arrived) for f in decoded)
    return {"first_packet": packets[0].arrived if packets else None, "frames": frames}


def read_feed(url: str, seconds: float) -> dict[str, Any]:
    """Decode the camera's feed for ``seconds``; stamp each picture when it is decoded."""
    frames: list[tuple[int, float]] = []
    with av.open(url, options={"fflags": "nobuffer"}, timeout=10) as container:
        stream = container.streams.video[0]
        stream.thread_type = "SLICE"  # frame threading would hold pictures back
        end = time.monotonic() + seconds
        for packet in container.demux(stream):
            frames.extend((read_frame_counter(f), time.monotonic()) for f in packet.decode())
            if time.monotonic() > end:
                break
    return {"frames": frames}


def main() -> None:
    """Run one mode from the command line."""
    mode, argument, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    if mode == "srtp":
        result = receive_srtp(bytes.fromhex(argument), seconds)
    else:
        result = read_feed(argument, seconds)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
