"""HDS throughput: a recording sent through the real DataStreamServer over loopback TCP.

Measures, in one run on one machine:

* raw ChaCha20-Poly1305 encrypt and decrypt of 256 KiB buffers (the ceiling);
* server -> HDSClient: the accessory encodes, encrypts and writes dataSend events of 256 KiB
  chunks; the tests' hub client reads, decrypts, decodes and keeps every chunk;
* server -> raw reader: the same sending side, while the reader only drains the socket.

Server and client share one event loop (one core), so the first end-to-end figure pays for
both encryption and decryption. No thresholds: the numbers are for comparison only.

Run from the repository root:
    ../shared/toolchain/py314 .venv/bin/python benchmarks/hds_throughput.py [--mib 64]
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator, Callable
import os
from pathlib import Path
import platform
import sys
import time
import types

ROOT = Path(__file__).resolve().parents[1]
COMMAND = "../shared/toolchain/py314 .venv/bin/python benchmarks/hds_throughput.py"


def _import_hds_without_home_assistant() -> None:
    """Make custom_components.hksv.hds importable without running the HA integration."""
    sys.path.insert(0, str(ROOT))
    for name, path in (
        ("custom_components", ROOT / "custom_components"),
        ("custom_components.hksv", ROOT / "custom_components" / "hksv"),
    ):
        if name not in sys.modules:
            module = types.ModuleType(name)
            module.__path__ = [str(path)]
            sys.modules[name] = module


_import_hds_without_home_assistant()

import cryptography  # noqa: E402
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305  # noqa: E402

from custom_components.hksv.hds import DataStreamServer, RecordingPacket  # noqa: E402
from custom_components.hksv.hds.datasend import MAX_CHUNK_SIZE  # noqa: E402
from custom_components.hksv.hds.frame import (  # noqa: E402
    EncryptCipher,
    derive_keys,
    encode_payload,
)
from custom_components.hksv.hds.messages import request_header  # noqa: E402
from tests.hub.hds_client import HDSClient  # noqa: E402

HOST = "127.0.0.1"
SECRET = bytes(range(32))
CONTROLLER_SALT = bytes(range(32, 64))
PACKET_SIZE = 4 * MAX_CHUNK_SIZE  # one 1 MiB fragment = four 256 KiB chunks
MIB = 1 << 20


class Delegate:
    """Yield an init segment, then 1 MiB fragments of random bytes."""

    recording_active = True
    camera_active = True
    has_selected_configuration = True

    def __init__(self, fragments: int) -> None:
        """Prepare the data once; every fragment is a view of it."""
        self.block = os.urandom(PACKET_SIZE)
        self.fragments = fragments
        self.done = asyncio.Event()

    async def _generate(self) -> AsyncIterator[RecordingPacket]:
        try:
            yield RecordingPacket(b"\x00" * 1024, False)
            view = memoryview(self.block)
            for index in range(self.fragments):
                yield RecordingPacket(view, index == self.fragments - 1)
        finally:
            # The server closes the generator right after writing the last packet.
            self.done.set()

    def handle_recording_stream_request(self, stream_id: int) -> AsyncIterator[RecordingPacket]:
        """Return the generator."""
        return self._generate()

    def acknowledge_stream(self, stream_id: int) -> None:
        """Ignore the ack."""

    def close_recording_stream(self, stream_id: int, reason: object) -> None:
        """Ignore the close."""

    def recording_stream_refused(self, stream_id: int, reason: object) -> None:
        """Ignore a refused open."""


class RawReader(asyncio.Protocol):
    """Drain the socket and count bytes, without decrypting."""

    def __init__(self) -> None:
        """Start counting."""
        self.received = 0
        self.target: int | None = None
        self.reached = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Count."""
        self.received += len(data)
        self._check()

    def expect(self, total: int) -> None:
        """Resolve once total bytes have arrived."""
        self.target = total
        self._check()

    def _check(self) -> None:
        if self.target is not None and self.received >= self.target and not self.reached.done():
            self.reached.set_result(None)


def best_rate(function: Callable[[], int], repeat: int) -> float:
    """Return the best of repeat runs in MB/s (MB = 10**6 bytes)."""
    rates = []
    for _ in range(repeat):
        start = time.perf_counter()
        size = function()
        rates.append(size / (time.perf_counter() - start) / 1e6)
    return max(rates)


def raw_aead(total_mib: int, repeat: int) -> tuple[float, float]:
    """Return ChaCha20-Poly1305 encrypt and decrypt speed on 256 KiB buffers."""
    aead = ChaCha20Poly1305(bytes(32))
    buffer = os.urandom(MAX_CHUNK_SIZE)
    count = total_mib * MIB // MAX_CHUNK_SIZE
    nonces = [i.to_bytes(12, "little") for i in range(count)]
    sealed = aead.encrypt(nonces[0], buffer, b"\x01\x04\x00\x00")

    def encrypt() -> int:
        for nonce in nonces:
            aead.encrypt(nonce, buffer, b"\x01\x04\x00\x00")
        return count * MAX_CHUNK_SIZE

    def decrypt() -> int:
        for _ in nonces:
            aead.decrypt(nonces[0], sealed, b"\x01\x04\x00\x00")
        return count * MAX_CHUNK_SIZE

    return best_rate(encrypt, repeat), best_rate(decrypt, repeat)


async def end_to_end(fragments: int, *, decrypting: bool) -> float:
    """Send one recording through the server; return MB/s of recording bytes."""
    delegate = Delegate(fragments)
    server = DataStreamServer(host=HOST, delegate=delegate, log_name="bench")
    await server.async_start()
    loop = asyncio.get_running_loop()
    try:
        salt = server.prepare_session("bench", SECRET, CONTROLLER_SALT)
        payload_bytes = 1024 + fragments * PACKET_SIZE
        if decrypting:
            client = HDSClient.from_shared_secret(HOST, server.port, SECRET, CONTROLLER_SALT, salt)
            client.timeout = 600
            await client.connect()
            await client.hello()
            start = time.perf_counter()
            await client.open_recording(1)
            recording = await client.receive_recording(1)
            elapsed = time.perf_counter() - start
            received = sum(len(chunk.data) for chunk in recording.chunks)
            if received != payload_bytes:
                raise RuntimeError(f"received {received} of {payload_bytes} bytes")
            client.abort()
        else:
            keys = derive_keys(SECRET, CONTROLLER_SALT, salt)
            cipher = EncryptCipher(keys.controller_to_accessory)
            _, reader = await loop.create_connection(RawReader, HOST, server.port)
            assert reader.transport is not None
            open_message = {
                "target": "controller",
                "type": "ipcamera.recording",
                "streamId": 1,
                "reason": "bench",
            }
            hello = encode_payload(request_header("control", "hello", 1), {})
            open_request = encode_payload(request_header("dataSend", "open", 2), open_message)
            start = time.perf_counter()
            reader.transport.writelines([b"".join(cipher.seal(p)) for p in (hello, open_request)])
            await delegate.done.wait()
            await asyncio.sleep(0)
            reader.expect(server.diagnostics()["bytes_sent"])
            await reader.reached
            elapsed = time.perf_counter() - start
            reader.transport.abort()
        return payload_bytes / elapsed / 1e6
    finally:
        await server.async_stop()


async def run(total_mib: int, repeat: int) -> None:
    """Run every measurement and print a report."""
    fragments = max(1, total_mib * MIB // PACKET_SIZE)
    encrypt, decrypt = raw_aead(total_mib, repeat)
    decrypting = max([await end_to_end(fragments, decrypting=True) for _ in range(repeat)])
    draining = max([await end_to_end(fragments, decrypting=False) for _ in range(repeat)])
    print(f"HDS throughput, {fragments} MiB recording in 256 KiB chunks, best of {repeat}")
    print(f"  Python {platform.python_version()} ({platform.machine()}, {platform.system()})")
    print(f"  cryptography {cryptography.__version__}, {os.cpu_count()} CPUs")
    print(f"  raw ChaCha20-Poly1305 encrypt, 256 KiB buffers : {encrypt:8.1f} MB/s")
    print(f"  raw ChaCha20-Poly1305 decrypt, 256 KiB buffers : {decrypt:8.1f} MB/s")
    print(f"  server -> HDSClient (decrypt + decode)         : {decrypting:8.1f} MB/s")
    print(f"  server -> raw reader (drain only)              : {draining:8.1f} MB/s")
    print(f"Reproduce: {COMMAND} --mib {total_mib} --repeat {repeat}")


def main() -> None:
    """Parse arguments and run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=64, help="recording size in MiB")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement")
    args = parser.parse_args()
    asyncio.run(run(args.mib, args.repeat))


if __name__ == "__main__":
    main()
