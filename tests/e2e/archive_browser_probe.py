"""A clip recorded by a real Home Assistant, found in its media browser and played in Chromium.

Meant to run inside a private network namespace (tests/e2e/test_archive_browser.py starts it
with ``unshare --net``), like tests/develop_probe.py whose helpers it uses. It starts a real
`hass` process (frontend included) with hksv and scripts/develop's demo camera, fed by a
paced generated clip, as scripts/develop does but self-contained; a home-hub
emulator pairs and records about 12 s over HDS; the clip must then be listed by the
media-source websocket API, resolve to a signed `/media/...` URL that Debian's Chromium
(driven by Playwright) plays in a plain <video> with the clip's duration, seeks and plays;
and HA's media-browser page listing it is saved as a screenshot. Prints one JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from pathlib import Path
import re
import signal
import subprocess
import sys
import time
import traceback
from typing import Any
from urllib.parse import quote

import aiohttp

from tests.develop_probe import READY, ROOT, bring_loopback_up
from tests.e2e.source import PacedSource
from tests.hub.controller import capture_session_keys
from tests.hub.emulator import HomeHub, media_seconds
from tests.media import ClipSpec, write_clip

HTTP_PORT = 18123
SOURCE_PORT = 18554
BASE = f"http://127.0.0.1:{HTTP_PORT}"
CLIENT_ID = f"{BASE}/"
RECORD_SECONDS = 12.0
CONFIG = f"""homeassistant:
  name: hksv archive test
  time_zone: UTC
http:
  server_host: 127.0.0.1
  server_port: {HTTP_PORT}
frontend:
stream:
logger:
  default: warning
  logs:
    custom_components.hksv: info
hksv_demo:
"""


async def record_clip(port: int, code: str) -> dict[str, Any]:
    """Pair as a hub, enable recording, record RECORD_SECONDS, close normally."""
    hub = HomeHub(port)
    try:
        await hub.pair(code)
        await hub.enable_recording(await hub.select_from_offer())
        await asyncio.sleep(8)  # the prebuffer fills
        client = await hub.open_data_stream()
        client.timeout = 120
        assert (await client.open_recording(1)).status == 0
        recording = client.recordings[1]
        await client.wait_until(lambda: media_seconds(recording) >= RECORD_SECONDS)
        seconds = media_seconds(recording)
        client.close_stream(1, 0)
        await asyncio.sleep(1)
        await client.close()
    finally:
        await hub.close()
    return {"hub_media_seconds": round(seconds, 3)}


async def onboard(session: aiohttp.ClientSession) -> dict[str, Any]:
    """Create the owner and finish onboarding; return tokens as the frontend stores them."""
    async with session.post(
        f"{BASE}/api/onboarding/users",
        json={
            "client_id": CLIENT_ID,
            "name": "Test",
            "username": "test",
            "password": "archive-test-password",
            "language": "en",
        },
    ) as response:
        response.raise_for_status()
        code = (await response.json())["auth_code"]
    async with session.post(
        f"{BASE}/auth/token",
        data={"grant_type": "authorization_code", "code": code, "client_id": CLIENT_ID},
    ) as response:
        response.raise_for_status()
        tokens: dict[str, Any] = await response.json()
    headers = {"Authorization": f"Bearer {tokens['access_token']}"}
    for step, body in (
        ("core_config", {}),
        ("analytics", {}),
        ("integration", {"client_id": CLIENT_ID, "redirect_uri": f"{BASE}/?auth_callback=1"}),
    ):
        async with session.post(f"{BASE}/api/onboarding/{step}", json=body, headers=headers):
            pass  # a step already done answers 403; either way onboarding is over
    return tokens


class Websocket:
    """A minimal Home Assistant websocket client."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        """Wrap an authenticated socket."""
        self._socket = socket
        self._id = 0

    async def call(self, message: dict[str, Any]) -> Any:
        """Send a command and return its result (raise on an error)."""
        self._id += 1
        await self._socket.send_json({"id": self._id, **message})
        while True:
            answer = await self._socket.receive_json()
            if answer.get("id") == self._id:
                if not answer["success"]:
                    raise RuntimeError(answer["error"])
                return answer["result"]


async def find_clip(session: aiohttp.ClientSession, token: str) -> dict[str, Any]:
    """Browse HomeKit Secure Video → camera → day → newest clip, and resolve it."""
    async with session.ws_connect(f"{BASE}/api/websocket") as socket:
        await socket.receive_json()
        await socket.send_json({"type": "auth", "access_token": token})
        assert (await socket.receive_json())["type"] == "auth_ok"
        ws = Websocket(socket)
        titles, child_titles = [], []
        item = await ws.call(
            {"type": "media_source/browse_media", "media_content_id": "media-source://hksv"}
        )
        for _level in range(3):
            titles.append(item["title"])
            child = item["children"][0]
            child_titles.append(child["title"])
            item = (
                await ws.call(
                    {
                        "type": "media_source/browse_media",
                        "media_content_id": child["media_content_id"],
                    }
                )
                if child["can_expand"]
                else child
            )
        titles.append(item["title"])
        resolved = await ws.call(
            {"type": "media_source/resolve_media", "media_content_id": item["media_content_id"]}
        )
    return {"titles": titles, "child_titles": child_titles, "clip": item, "resolved": resolved}


PLAY = """
async (url) => {
  const video = document.createElement('video');
  video.controls = true; video.playsInline = true; video.muted = true;
  document.body.appendChild(video);
  const once = (name) => new Promise((resolve, reject) => {
    video.addEventListener(name, resolve, {once: true});
    video.addEventListener('error',
      () => reject(new Error('media error ' + (video.error && video.error.code))), {once: true});
  });
  const loaded = once('loadedmetadata');
  video.src = url;
  await loaded;
  const duration = video.duration;
  const seekable = video.seekable.length ? video.seekable.end(0) : null;
  const middle = duration / 2;
  const seeked = once('seeked');
  video.currentTime = middle;
  await seeked;
  await video.play();
  const start = performance.now();
  while (video.currentTime < middle + 0.5 && performance.now() - start < 20000) {
    await new Promise((r) => setTimeout(r, 100));
  }
  return {duration, seekable, middle, played_to: video.currentTime,
          width: video.videoWidth, height: video.videoHeight};
}
"""


async def browser_checks(
    tokens: dict[str, Any],
    found: dict[str, Any],
    workdir: Path,
    chromium: str,
    report: dict[str, Any],
) -> None:
    """Play the resolved URL in a <video>, then screenshot HA's media browser page."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium,
            args=["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
        )
        try:
            page = await browser.new_page(viewport={"width": 1280, "height": 900})
            console: list[str] = report.setdefault("console", [])
            page.on("console", lambda message: console.append(message.text[:300]))
            page.on("pageerror", lambda error: console.append(f"pageerror {error}"[:300]))
            page.on(
                "response",
                lambda response: (
                    console.append(f"{response.status} {response.url[:200]}")
                    if response.status >= 400
                    else None
                ),
            )
            await page.goto(f"{BASE}/auth/providers")  # any page of the origin
            report["video"] = await page.evaluate(PLAY, BASE + found["resolved"]["url"])
            stored = {
                "hassUrl": BASE,
                "clientId": CLIENT_ID,
                "expires": int(time.time() * 1000) + tokens["expires_in"] * 1000,
                **tokens,
            }
            await page.evaluate(
                "(tokens) => localStorage.setItem('hassTokens', tokens)", json.dumps(stored)
            )
            day_id = found["clip"]["media_content_id"].rsplit("/", 1)[0]
            path = "/".join(
                quote(f"app,{media_id}", safe="")
                for media_id in ("media-source://hksv", day_id.rsplit("/", 1)[0], day_id)
            )
            await page.goto(f"{BASE}/media-browser/browser/{path}")
            clip_title = found["clip"]["title"]
            try:
                # The titles also sit in hidden tooltips: wait for the card itself.
                await (
                    page.get_by_text(clip_title).filter(visible=True).first.wait_for(timeout=60000)
                )
                # 2026.10 asks once to confirm HTTP settings from YAML; not ours to judge.
                confirm = page.get_by_role("button", name="Confirm")
                if await confirm.count():
                    await confirm.first.click()
            except Exception:
                await page.screenshot(path=str(workdir / "media-browser-failed.png"))
                raise
            await page.wait_for_timeout(1500)  # thumbnails
            shot = workdir / "media-browser.png"
            await page.screenshot(path=str(shot))
            report["screenshot"] = str(shot)
            report["page_lists_clip"] = True
        finally:
            await browser.close()


async def run(args: argparse.Namespace, port: int, code: str, report: dict[str, Any]) -> None:
    """Record, find, play, screenshot; fill ``report`` as it goes."""
    with capture_session_keys():  # the hub derives its HDS keys from pair-verify
        report |= await record_clip(port, code)
    media = args.workdir / "config" / "media" / "hksv"
    deadline = time.monotonic() + 60
    while not list(media.glob("*/*/*.json")) and time.monotonic() < deadline:
        await asyncio.sleep(0.5)
    (sidecar,) = media.glob("*/*/*.json")
    report["sidecar"] = json.loads(sidecar.read_text())
    async with aiohttp.ClientSession() as session:
        tokens = await onboard(session)
        found = await find_clip(session, tokens["access_token"])
        report |= {
            "titles": found["titles"],
            "child_titles": found["child_titles"],
            "resolved_url": found["resolved"]["url"],
        }
        async with session.get(BASE + found["resolved"]["url"]) as response:
            report["signed_get_status"] = response.status
    await browser_checks(tokens, found, args.workdir, args.chromium, report)


def prepare_config(workdir: Path) -> Path:
    """Write a fresh configuration with hksv and the demo camera, and the camera's clip."""
    config = workdir / "config"
    (config / "custom_components").mkdir(parents=True)
    (config / "media").mkdir()
    (config / "custom_components" / "hksv").symlink_to(ROOT / "custom_components" / "hksv")
    (config / "custom_components" / "hksv_demo").symlink_to(ROOT / "scripts" / "demo" / "hksv_demo")
    (config / "configuration.yaml").write_text(CONFIG)
    write_clip(workdir / "camera.ts", ClipSpec(seconds=30, fps=25, gop_seconds=2.0))
    return config


async def wait_for_accessory(log: Path, process: asyncio.subprocess.Process) -> re.Match[str]:
    """Wait until the demo integration announces the accessory (or Home Assistant dies)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if match := READY.search(log.read_text(errors="replace")):
            return match
        if process.returncode is not None:
            raise RuntimeError(f"Home Assistant exited with {process.returncode}")
        await asyncio.sleep(1)
    raise TimeoutError("Home Assistant did not announce the accessory")


async def session(args: argparse.Namespace, config: Path, report: dict[str, Any]) -> None:
    """Serve the camera, run Home Assistant, run the checks, stop everything."""
    source = PacedSource(args.workdir / "camera.ts", SOURCE_PORT)
    await source.start()
    log = args.workdir / "hass.log"
    with log.open("wb") as out:
        process = await asyncio.create_subprocess_exec(
            str(ROOT / ".venv" / "bin" / "hass"),
            "-c",
            str(config),
            "--skip-pip",
            cwd=ROOT,
            env={**os.environ, "HKSV_DEMO_SOURCE": source.url},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        ready = await wait_for_accessory(log, process)
        await run(args, int(ready["port"]), ready["code"], report)
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(60):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
        await source.stop()
        report["log_tail"] = log.read_text(errors="replace")[-4000:]


def main() -> int:
    """Run a real Home Assistant with the frontend, run the checks, stop; print JSON."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--chromium", required=True)
    args = parser.parse_args()
    bring_loopback_up()
    report: dict[str, Any] = {}
    try:
        asyncio.run(session(args, prepare_config(args.workdir), report))
    except Exception as err:
        report["error"] = f"{type(err).__name__}: {err}\n{traceback.format_exc()[-3000:]}"
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
