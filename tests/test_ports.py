"""The free-port helper never gives two processes on one machine the same port."""

from __future__ import annotations

import json
import os
from pathlib import Path
import subprocess
import sys

from tests import ports

REPO = Path(__file__).resolve().parent.parent
PORTS_EACH = 200  # below ports.PER_PROCESS_LIMIT: every one is a fresh reservation

# Waits for "go" so that both processes ask at the same time, each starting its scan at the
# same place in the pool (the worst case: they race for every single port).
ASK_FOR_PORTS = f"""
import json, sys
from tests import ports
ports._cursor = 0
sys.stdout.write("ready\\n"); sys.stdout.flush()
sys.stdin.readline()
print(json.dumps([ports.free_port() for _ in range({PORTS_EACH})]), flush=True)
sys.stdin.readline()  # hold the reservations until told to exit
"""


def _start(lock_dir: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HKSV_TEST_PORT_LOCK_DIR": str(lock_dir)}
    # Both processes are xdist worker gw0: per-worker blocks alone would collide here.
    env["PYTEST_XDIST_WORKER"] = "gw0"
    return subprocess.Popen(
        [sys.executable, "-c", ASK_FOR_PORTS],
        cwd=REPO,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _wait_ready(proc: subprocess.Popen[str]) -> None:
    assert proc.stdout is not None
    assert proc.stdout.readline() == "ready\n"


def _say_go(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()


def _ports_given(proc: subprocess.Popen[str]) -> list[int]:
    assert proc.stdout is not None
    answer: list[int] = json.loads(proc.stdout.readline())
    return answer


def _finish(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None
    proc.stdin.close()
    assert proc.wait(timeout=60) == 0


def _ask_alone(lock_dir: Path) -> tuple[subprocess.Popen[str], set[int]]:
    proc = _start(lock_dir)
    _wait_ready(proc)
    _say_go(proc)
    return proc, set(_ports_given(proc))


def test_two_processes_asking_at_once_never_share_a_port(tmp_path: Path) -> None:
    """Two separate processes racing for ports in one lock directory get disjoint sets."""
    procs = [_start(tmp_path), _start(tmp_path)]
    try:
        for proc in procs:
            _wait_ready(proc)
        for proc in procs:
            _say_go(proc)
        answers = [_ports_given(proc) for proc in procs]
    finally:
        for proc in procs:
            _finish(proc)

    first, second = (set(answer) for answer in answers)
    assert len(first) == len(second) == PORTS_EACH  # no repeats within a process either
    assert not first & second
    ephemeral_start = ports._pool_end()
    assert all(ports.POOL_START <= port < ephemeral_start for port in first | second)


def test_a_port_reserved_elsewhere_is_skipped_until_that_process_exits(tmp_path: Path) -> None:
    """A port another process holds is not given out; its lock goes when that process ends."""
    holder, held = _ask_alone(tmp_path)
    second, while_held = _ask_alone(tmp_path)
    _finish(second)
    assert not held & while_held

    _finish(holder)
    # The holder is gone and so are its locks: a new process may have its ports again.
    third, after_exit = _ask_alone(tmp_path)
    _finish(third)
    assert held & after_exit
