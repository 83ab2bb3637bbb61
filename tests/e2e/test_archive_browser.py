"""A recorded clip in a real Home Assistant's media browser, played by a real browser.

Runs tests/e2e/archive_browser_probe.py in a private network namespace (as
tests/test_develop.py does): real `hass` process with the frontend, the demo camera, a
home-hub emulator recording over HDS, then Debian's Chromium through Playwright. The
screenshot of the media browser page is kept in ``artifacts/`` (git-ignored) and the test's
temporary folder.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
import shutil
import subprocess
import sys

import pytest

from tests.test_develop import _namespace_command

ROOT = Path(__file__).resolve().parents[2]
PROBE_TIMEOUT = 600
ARTIFACTS = ROOT / "artifacts"


def _chromium() -> str | None:
    """Return Debian's Chromium, if installed (scripts/setup installs it where apt exists)."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.timeout(PROBE_TIMEOUT + 60)
def test_a_recorded_clip_plays_in_the_media_browser(tmp_path: Path) -> None:
    """Listed as HomeKit Secure Video → camera → day → clip; plays, seeks; screenshot kept."""
    if Path(sys.prefix).resolve() != (ROOT / ".venv").resolve():
        pytest.skip("the real Home Assistant runs from .venv (the newest release)")
    chromium = _chromium()
    if chromium is None:
        pytest.skip("no browser: Debian's chromium is not installed (scripts/setup installs it)")
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("the playwright package is not installed (requirements_test.txt)")
    if shutil.which("ffmpeg") is None:
        pytest.skip("the paced camera needs ffmpeg")
    namespace = _namespace_command()
    if namespace is None:
        pytest.skip("no private network namespace (unshare --net) available here")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    probe = subprocess.run(
        [
            *namespace,
            sys.executable,
            "-m",
            "tests.e2e.archive_browser_probe",
            "--workdir",
            str(tmp_path),
            "--chromium",
            chromium,
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT,
        check=False,
    )
    assert probe.returncode == 0, probe.stderr[-4000:]
    ARTIFACTS.mkdir(exist_ok=True)
    for picture in tmp_path.glob("*.png"):  # kept whether the test passes or not
        shutil.copy(picture, ARTIFACTS / picture.name)
    report = json.loads(probe.stdout.strip().splitlines()[-1])
    log = report.pop("log_tail")
    print(json.dumps(report, indent=1))
    assert "error" not in report, (report.get("error"), log, probe.stderr[-3000:])

    sidecar = report["sidecar"]
    assert sidecar["camera"] == "Demo camera"
    assert sidecar["outcome"] == "completed"
    assert report["titles"][:3] == ["HomeKit Secure Video", "Demo camera", "Demo camera · Today"]
    assert report["child_titles"][:2] == ["Demo camera", "Today (1)"]
    assert report["child_titles"][2] == report["titles"][3]  # "12:03:12 · 12 s"
    assert report["titles"][3].endswith(" · 12 s")
    assert report["resolved_url"].startswith("/media/local/hksv/demo_camera/")
    assert "authSig=" in report["resolved_url"]
    assert report["signed_get_status"] == 200

    video = report["video"]
    assert abs(video["duration"] - sidecar["duration"]) <= 0.5, video
    assert video["seekable"] == pytest.approx(video["duration"], abs=0.1)
    assert video["played_to"] >= video["middle"] + 0.5  # seeked to the middle, then played
    assert video["width"] > 0 and video["height"] > 0

    assert report["page_lists_clip"]
    screenshot = Path(report["screenshot"])
    assert screenshot.stat().st_size > 10_000
    assert (ARTIFACTS / "media-browser.png").exists()
