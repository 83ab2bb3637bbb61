"""Run scripts/develop as a newcomer would, pair with it, stop it, and report (as JSON).

Meant to run inside a private network namespace (tests/test_develop.py starts it with
``unshare --net``): the real Home Assistant it starts announces itself over mDNS, and there
that reaches only this namespace's loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import fcntl
import json
import os
from pathlib import Path
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from typing import Any

from tests.hub.controller import HubController, short

ROOT = Path(__file__).resolve().parent.parent
READY = re.compile(
    r"HomeKit Secure Video accessory '(?P<name>[^']+)' on port (?P<port>\d+): not paired\. "
    r"Setup code (?P<code>\d{3}-\d{2}-\d{3})"
)
_SIOCADDRT = 0x890B
_SIOCGIFFLAGS = 0x8913
_SIOCSIFFLAGS = 0x8914
_IFF_UP = 0x1
_IFF_MULTICAST = 0x1000
_RTF_UP = 0x1


class _SockaddrIn(ctypes.Structure):
    _fields_ = [
        ("family", ctypes.c_ushort),
        ("port", ctypes.c_ushort),
        ("addr", ctypes.c_uint32),
        ("zero", ctypes.c_char * 8),
    ]


class _RtEntry(ctypes.Structure):
    """``struct rtentry`` of <net/route.h> (the SIOCADDRT argument)."""

    _fields_ = [
        ("pad1", ctypes.c_ulong),
        ("dst", _SockaddrIn),
        ("gateway", _SockaddrIn),
        ("genmask", _SockaddrIn),
        ("flags", ctypes.c_ushort),
        ("pad2", ctypes.c_short),
        ("pad3", ctypes.c_ulong),
        ("pad4", ctypes.c_void_p),
        ("metric", ctypes.c_short),
        ("dev", ctypes.c_char_p),
        ("mtu", ctypes.c_ulong),
        ("window", ctypes.c_ulong),
        ("irtt", ctypes.c_ushort),
    ]


def bring_loopback_up() -> None:
    """Make ``lo`` the whole network: up, multicast, and the default route.

    A new network namespace starts with ``lo`` down; Home Assistant's zeroconf joins the mDNS
    group on the default route's interface, so that must exist too.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("16sH", b"lo", 0)
        flags = struct.unpack("16sH", fcntl.ioctl(sock, _SIOCGIFFLAGS, request)[:18])[1]
        flags |= _IFF_UP | _IFF_MULTICAST
        fcntl.ioctl(sock, _SIOCSIFFLAGS, struct.pack("16sH", b"lo", flags))
        route = _RtEntry(flags=_RTF_UP, dev=b"lo")
        for field in (route.dst, route.gateway, route.genmask):
            field.family = socket.AF_INET
        fcntl.ioctl(sock, _SIOCADDRT, bytearray(bytes(route)))


def descendants(pid: int) -> set[int]:
    """Return the pids of every live process below ``pid``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: set[int] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> str | None:
    """Return the command line of ``pid`` if it still runs (zombies count as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    if state == "Z":
        return None
    return cmdline.replace(b"\0", b" ").decode(errors="replace").strip()


def listening_ports() -> set[int]:
    """Return the TCP ports something listens on in this namespace."""
    ports: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A":  # TCP_LISTEN
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


async def pair_and_read(port: int, code: str) -> dict[str, Any]:
    """Pair as a home hub, read /accessories, and return what a hub would check."""
    controller = HubController(port)
    try:
        await controller.pair(code)
        accessories = await controller.refresh()
        name = controller.char("3E", "23")["value"]
        services = sorted({short(s["type"]) for s in accessories[0]["services"]})
    finally:
        await controller.close()
    return {"accessory_name": name, "services": services}


def wait_for_ready(log: Path, process: subprocess.Popen[bytes], timeout: float) -> re.Match[str]:
    """Wait until the develop log announces the accessory (or the script dies)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = READY.search(log.read_text(errors="replace"))
        if match:
            return match
        if process.poll() is not None:
            raise RuntimeError(f"scripts/develop exited with {process.returncode}")
        time.sleep(1)
    raise TimeoutError("scripts/develop did not announce the accessory")


def main() -> int:
    """Start, pair, stop; print a JSON report."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    bring_loopback_up()
    log = args.workdir / "develop.log"
    env = {**os.environ, "HKSV_DEVELOP_CONFIG": str(args.workdir / "config")}
    report: dict[str, Any] = {}
    started = time.monotonic()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(ROOT / "scripts" / "develop")],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    tree: set[int] = set()
    try:
        ready = wait_for_ready(log, process, args.timeout)
        report["seconds_to_accessory"] = round(time.monotonic() - started, 1)
        report |= asyncio.run(pair_and_read(int(ready["port"]), ready["code"]))
        report["seconds_to_paired"] = round(time.monotonic() - started, 1)
        report["hap_port"] = int(ready["port"])
        tree = descendants(process.pid)
        report["processes_while_running"] = sorted(filter(None, map(alive, tree)))
        report["listening_while_running"] = sorted(listening_ports())
        process.send_signal(signal.SIGTERM)
        report["exit_code"] = process.wait(timeout=args.timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        # Give reparented processes a moment to be reaped before looking for leftovers.
        for _ in range(20):
            if not any(alive(pid) for pid in tree):
                break
            time.sleep(0.5)
        report["left_behind"] = sorted(filter(None, (alive(pid) for pid in tree)))
        report["listening_after"] = sorted(listening_ports())
        text = log.read_text(errors="replace")
        report["recovery_mode"] = "recovery mode" in text
        report["frontend_missing"] = "hass_frontend" in text
        report["log_tail"] = text[-4000:]
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
