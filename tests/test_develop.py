"""scripts/develop from a fresh config: a real Home Assistant whose accessory a hub can pair.

Runs tests/develop_probe.py in a private network namespace (so the real Home Assistant's mDNS
and web server reach nothing but that namespace's loopback): it starts scripts/develop with an
empty configuration folder, waits for the accessory, pairs with aiohomekit, reads
/accessories, stops the script with SIGTERM and lists every process it left behind.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A real Home Assistant start (frontend included) plus the demo clip, on a loaded 2-core box.
PROBE_TIMEOUT = 600


def _namespace_command() -> list[str] | None:
    """Return the unshare prefix that gives a private network namespace here, if any."""
    if shutil.which("unshare") is None:
        return None
    for command in (["unshare", "--net"], ["unshare", "--net", "--map-root-user"]):
        if subprocess.run([*command, "true"], capture_output=True, check=False).returncode == 0:
            return command
    return None


@pytest.mark.timeout(PROBE_TIMEOUT + 60)
def test_develop_script_gives_a_pairable_accessory(tmp_path: Path) -> None:
    """Fresh config → accessory announced → paired → /accessories read → stopped, nothing left."""
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("scripts/develop runs in .venv (the newest Home Assistant)")
    if shutil.which("ffmpeg") is None:
        pytest.skip("scripts/develop needs ffmpeg")
    namespace = _namespace_command()
    if namespace is None:
        pytest.skip("no private network namespace (unshare --net) available here")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    probe = subprocess.run(
        [
            *namespace,
            sys.executable,
            "-m",
            "tests.develop_probe",
            "--workdir",
            str(tmp_path),
            "--timeout",
            str(PROBE_TIMEOUT / 2),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-4000:]
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    log = report.pop("log_tail")
    print(json.dumps(report, indent=1))  # seconds_to_accessory etc., shown with -s

    assert report["accessory_name"] == "Demo camera", log
    # AccessoryInformation, camera RTP stream management, camera recording management,
    # camera operating mode, data stream management, motion sensor, protocol information.
    assert {"3E", "110", "204", "21A", "129", "85", "A2"} <= set(report["services"])
    assert not report["recovery_mode"], log
    assert not report["frontend_missing"], log
    running = " ".join(report["processes_while_running"])
    assert "hass" in running and "ffmpeg" in running
    assert report["hap_port"] in report["listening_while_running"]

    assert report["exit_code"] == 143  # ended by the SIGTERM, after its own cleanup
    assert report["left_behind"] == []
    assert report["listening_after"] == []
