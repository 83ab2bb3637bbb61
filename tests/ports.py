"""Free loopback ports for test servers, reserved machine-wide for the life of the process.

Several pytest processes may run on one machine at once (``scripts/test`` next to
``scripts/test --oldest``, a benchmark beside the suite, several people's runs), each with its
own pytest-xdist workers. A port is handed out only after this process holds an exclusive
``flock`` on that port's lock file in a directory every process shares; the lock is never
released, so no other process takes the port until this one exits (the kernel drops the lock
then, even after a crash). The pool lies below the kernel's ephemeral range, so nothing that
binds port 0 (HDS servers, client sockets) lands on one of ours, and above hksv's own
``PORT_RANGE_START``..``PORT_RANGE_END``, which the config flow scans.

This module imports nothing from Home Assistant: a plain subprocess can use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
from pathlib import Path
import random
import socket

POOL_START = 22000
# The default Linux ephemeral range starts at 32768 (it is read from the kernel below).
POOL_END_DEFAULT = 32768
# Ports one process reserves before it reuses its own (each after a fresh bind check): enough
# that a port is not handed out again while its last server may still linger, few enough that
# dozens of processes fit in the pool.
PER_PROCESS_LIMIT = 256
LOCK_DIR = Path(os.environ.get("HKSV_TEST_PORT_LOCK_DIR", "/tmp/hksv-test-ports"))

_held: dict[int, int] = {}  # port -> open lock file descriptor, kept until the process exits
_reuse: itertools.cycle[int] | None = None
_reuse_count = 0  # how many ports _reuse cycles through
_cursor: int | None = None


def _pool_end() -> int:
    """Return the first port of the kernel's ephemeral range (the pool ends below it)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except OSError, ValueError, IndexError:
        return POOL_END_DEFAULT
    return min(low, POOL_END_DEFAULT)


def _bindable(port: int) -> bool:
    """Return whether nothing on this machine holds ``port`` on 127.0.0.1 (TCP or UDP)."""
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def _try_reserve(port: int) -> bool:
    """Take ``port``'s machine-wide lock and keep it if the port is also free to bind."""
    try:
        fd = os.open(LOCK_DIR / str(port), os.O_RDONLY | os.O_CREAT, 0o666)
    except OSError:
        return False  # another user's lock directory or file we may not open: not ours
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)  # another process holds it
        return False
    if not _bindable(port):
        # Held by something that does not take part in the locking; leave the lock file
        # unlocked so that it can be tried again later.
        os.close(fd)
        return False
    _held[port] = fd
    return True


def _open_lock_dir() -> None:
    """Create the shared lock directory, writable by every user (sticky, like /tmp)."""
    if LOCK_DIR.is_dir():
        return
    LOCK_DIR.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # created by another user in the meantime
        LOCK_DIR.chmod(0o1777)


def free_port() -> int:
    """Return a free TCP/UDP port on 127.0.0.1 that no other process on the machine is given."""
    global _cursor, _reuse, _reuse_count
    if len(_held) < PER_PROCESS_LIMIT:
        _open_lock_dir()
        end = _pool_end()
        size = end - POOL_START
        if size <= 0:
            raise RuntimeError(f"no test port pool below the ephemeral range (starts at {end})")
        if _cursor is None:
            # Processes start scanning at different places so they rarely contend.
            _cursor = random.randrange(size)
        for _ in range(size):
            port = POOL_START + _cursor
            _cursor = (_cursor + 1) % size
            if port not in _held and _try_reserve(port):
                return port
        if not _held:
            raise RuntimeError(
                f"every test port {POOL_START}..{end - 1} is reserved by another process"
            )
    # At the limit (or the pool is full): reuse this process's own ports, each still bindable.
    if _reuse is None or _reuse_count != len(_held):
        _reuse, _reuse_count = itertools.cycle(sorted(_held)), len(_held)
    for _ in range(len(_held)):
        port = next(_reuse)
        if _bindable(port):
            return port
    raise RuntimeError("every test port this process reserved is still in use")
