"""Drive a real ``hass`` with hksv: cameras, hub emulators, motion events, viewers, restarts.

Everything Home Assistant talks to runs outside its process: each camera feed in its own
process (``feed.py``), each hub emulator (aiohomekit pairing, selection, Stream & Allow
Recording, HDS dataSend) and live viewer (real UDP, SRTP checked with pylibsrtp) in the caller's
event loop. Home Assistant itself is a ``hass`` subprocess on a configuration folder written
here; a restart is SIGTERM, a clean exit, and ``hass`` started again on the same folder (saved
pairings: the hubs reconnect and never select again).

HTTP: Home Assistant 2026.10 stores its HTTP settings and treats an ``http:`` YAML block as a
*pending* trial that it reverts (with a restart) five minutes later unless promoted. The
harness writes no ``http:`` block there and sets the port through ``SETUP_PORT`` instead (the
stored default); older versions, without that store, get the ``http:`` block.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
import contextlib
import ctypes
import dataclasses
from dataclasses import dataclass, field
import functools
import importlib.util
import io
import json
import os
from pathlib import Path
import signal
import socket
import sys
import tempfile
import time
from typing import Any

import av

from custom_components.hksv.hap.recording_config import SelectedCameraRecordingConfiguration
from custom_components.hksv.hap.rtp_stream import SessionCommand
from custom_components.hksv.media.fmp4 import parse_fragments, parse_init
from tests.hub.emulator import HomeHub
from tests.hub.hds_client import Recording
from tests.live.viewer import LiveViewer, access_units, decode_units
from tests.media import ClipSpec, write_clip

ROOT = Path(__file__).resolve().parents[2]
HELPER = Path(__file__).with_name("hksv_soak")
MOTION = ("85", "22")
# A hub's patience for one HDS request or a silent recording.
HUB_TIMEOUT = 30.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def free_port() -> int:
    """Return a port the kernel considers free now (ephemeral range, never a fixed block)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def has_http_store() -> bool:
    """Return True when this Home Assistant keeps HTTP settings in storage (2026.10+)."""
    try:
        from homeassistant.components.http import const
    except ImportError:
        return False
    return hasattr(const, "ENV_SETUP_PORT")


# -- media ---------------------------------------------------------------------------------


def make_clips(directory: Path, spec: ClipSpec) -> tuple[Path, Path]:
    """Return (day clip, night clip at half the frame rate), generated once per spec."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for fps in (spec.fps, spec.fps // 2):
        variant = dataclasses.replace(spec, fps=fps)
        path = directory / (
            f"{variant.width}x{variant.height}_{fps}fps_{variant.seconds:g}s_"
            f"gop{variant.gop_seconds:g}_{variant.video_bitrate_kbps}k.ts"
        )
        if not path.exists():
            write_clip(path.with_suffix(".part"), variant)
            path.with_suffix(".part").rename(path)
        paths.append(path)
    return paths[0], paths[1]


class CameraFeed:
    """A ``feed.py`` process: the camera, switched by commands."""

    def __init__(self, clip: Path, night_clip: Path, *, rtsp: bool) -> None:
        """Prepare; nothing runs before ``start``."""
        self.clip, self.night_clip, self.rtsp = clip, night_clip, rtsp
        self.url = ""
        self.process: asyncio.subprocess.Process | None = None
        self.night = False

    async def start(self) -> None:
        """Start the feed process and wait for its URL."""
        command = [sys.executable, "-m", "tests.real_hass.feed", "--clip", str(self.clip)]
        command += ["--night-clip", str(self.night_clip), "--port", str(free_port())]
        if self.rtsp:
            command.append("--rtsp")
        self.process = await asyncio.create_subprocess_exec(
            *command, cwd=ROOT, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE
        )
        line = await self._line(90)
        assert line.startswith("URL "), line
        self.url = line.split()[1]

    async def _line(self, timeout: float = 30) -> str:
        assert self.process is not None and self.process.stdout is not None
        async with asyncio.timeout(timeout):
            return (await self.process.stdout.readline()).decode().strip()

    async def command(self, text: str) -> None:
        """Send one command and wait for its OK."""
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(text.encode() + b"\n")
        await self.process.stdin.drain()
        line = await self._line()
        assert line == f"OK {text.split(maxsplit=1)[0]}", line
        if text in ("night", "day"):
            self.night = text == "night"

    async def stop(self) -> None:
        """Quit the feed (killed if it does not)."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(Exception):
            assert process.stdin is not None
            process.stdin.write(b"quit\n")
            await process.stdin.drain()
        try:
            async with asyncio.timeout(15):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()


# -- Home Assistant ------------------------------------------------------------------------


@dataclass
class HassConfig:
    """The configuration folder and what the harness put in it."""

    directory: Path
    control: Path
    http_port: int
    cameras: list[dict[str, Any]]


def write_config(
    directory: Path,
    feeds: list[CameraFeed],
    *,
    hksv: Path = ROOT / "custom_components" / "hksv",
    entry_options: dict[str, Any] | None = None,
) -> HassConfig:
    """Write a configuration folder: hksv, the helper, the cameras' feeds and HAP ports.

    ``hksv`` is the integration's folder (another commit's, for a before/after benchmark);
    ``entry_options`` are given to every hksv entry the helper creates.
    """
    components = directory / "custom_components"
    components.mkdir(parents=True, exist_ok=True)
    for name, target in (("hksv", hksv), ("hksv_soak", HELPER)):
        link = components / name
        if not link.exists():
            link.symlink_to(target)
    # A short path: a unix socket's path is limited to about 100 bytes.
    control = Path(tempfile.mkdtemp(prefix="hksv-ctl-")) / "control.sock"
    http_port = free_port()
    cameras = [{"url": feed.url, "port": free_port()} for feed in feeds]
    lines = [
        "homeassistant:",
        "  name: hksv soak",
        "  time_zone: UTC",
        "stream:",
        "logger:",
        "  default: warning",
        "  logs:",
        "    custom_components.hksv: info",
        "hksv_soak:",
        f"  control: {control}",
        f"  cameras: {json.dumps(cameras)}",
        f"  entry_options: {json.dumps(entry_options or {})}",
    ]
    if not has_http_store():
        lines += ["http:", f"  server_port: {http_port}", "  server_host: 127.0.0.1"]
    (directory / "configuration.yaml").write_text("\n".join(lines) + "\n")
    return HassConfig(directory, control, http_port, cameras)


@dataclass
class Restart:
    """One Home Assistant restart, as measured from outside."""

    at: float
    stop_seconds: float
    exit_code: int | None
    start_seconds: float
    hubs_back_seconds: float = 0.0


def _end_with_parent() -> None:
    """In the child: get SIGTERM when the harness dies, so no ``hass`` is left running."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _recovery_mode(log: Path, offset: int) -> bool:
    """Return True when this start's log says Home Assistant fell back to recovery mode."""
    with log.open("rb") as text:
        text.seek(offset)
        return b"Activating recovery mode" in text.read()


def can_run_hass() -> str | None:
    """Return why a real ``hass`` cannot run with this Python, or None when it can.

    Without the frontend package Home Assistant starts in recovery mode, which loads no
    custom integration.
    """
    if not Path(sys.executable).with_name("hass").exists():
        return "no hass script next to this Python"
    if importlib.util.find_spec("hass_frontend") is None:
        return "home-assistant-frontend is not installed (hass would start in recovery mode)"
    return None


class HassProcess:
    """A real ``hass`` on a configuration folder; its output appended to ``log``."""

    def __init__(self, config: HassConfig, log: Path) -> None:
        """Prepare; nothing runs before ``start``."""
        self.config = config
        self.log = log
        self.process: asyncio.subprocess.Process | None = None
        self.starts = 0

    async def start(self, timeout: float = 600) -> float:
        """Start ``hass``; return the seconds until its entries run (all cameras).

        Running means: loaded, the accessory served, and the camera's format known (hksv's
        startup probe). A user pairs a camera after adding it; a hub that selected before
        the probe would see the offer change a moment later.
        """
        began = time.monotonic()
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
        env["SETUP_PORT"] = str(self.config.http_port)
        log_start = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as out:
            out.write(f"\n===== hass start {self.starts + 1} at {time.ctime()} =====\n".encode())
            out.flush()
            self.process = await asyncio.create_subprocess_exec(
                str(Path(sys.executable).with_name("hass")), "-c", str(self.config.directory),
                "--skip-pip", cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
                stdout=out, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                preexec_fn=_end_with_parent,
            )  # fmt: skip
        self.starts += 1
        async with asyncio.timeout(timeout):
            while True:
                if self.process.returncode is not None:
                    raise RuntimeError(
                        f"hass exited with {self.process.returncode}; see {self.log}"
                    )
                if _recovery_mode(self.log, log_start):
                    raise RuntimeError(f"hass started in recovery mode; see {self.log}")
                with contextlib.suppress(OSError, ValueError):
                    status = await self.request({"cmd": "status"})
                    entries = status["entries"]
                    if (
                        status["started"]
                        and len(entries) == len(self.config.cameras)
                        and all(
                            e["running"] and e["state"] == "loaded" and e["source_known"]
                            for e in entries
                        )
                    ):
                        return time.monotonic() - began
                await asyncio.sleep(1)

    async def request(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send one control request to the helper inside Home Assistant."""
        reader, writer = await asyncio.open_unix_connection(str(self.config.control))
        try:
            writer.write(json.dumps(message).encode() + b"\n")
            await writer.drain()
            async with asyncio.timeout(30):
                answer: dict[str, Any] = json.loads(await reader.readline())
        finally:
            writer.close()
        if "error" in answer:
            raise ValueError(answer["error"])
        return answer

    async def stop(self, timeout: float = 180) -> tuple[float, int | None]:
        """SIGTERM and wait for the exit; return (seconds, exit code); killed after timeout."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return 0.0, process.returncode if process else None
        began = time.monotonic()
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout):
                code = await process.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
            return time.monotonic() - began, None
        return time.monotonic() - began, code


# -- recordings and viewers ----------------------------------------------------------------


@dataclass
class Clip:
    """One motion event as the hub saw it."""

    camera: int
    opened_wall: float
    ok: bool = False
    problems: list[str] = field(default_factory=list)
    preroll_seconds: float = 0.0
    media_seconds: float = 0.0
    fragments: int = 0
    longest_fragment_ms: float = 0.0
    context: list[str] = field(default_factory=list)
    hksv: dict[str, Any] | None = None  # the matching hksv_recording_finished event
    hksv_at_fault: bool | None = None


@dataclass
class View:
    """One live viewer."""

    camera: int
    at_wall: float
    ok: bool = False
    problem: str = ""
    first_picture_seconds: float | None = None
    context: list[str] = field(default_factory=list)


# Marks a fragment that is one whole GOP of the camera: the camera's keyframes were that far apart.
CAMERA_GOP = "(one camera GOP: no keyframe for"


def check_clip(packets: list[bytes], fragment_ms: int) -> tuple[list[str], int, float, float]:
    """Check a clip as a hub does; return (problems, fragments, longest ms, media seconds).

    Every fragment must start with a keyframe (sync sample, and the first picture PyAV decodes
    from init + that fragment alone is a key frame) and be no longer than the selected
    fragment length; the whole clip must decode.
    """
    problems: list[str] = []
    if not packets:
        return ["nothing received"], 0, 0.0, 0.0
    try:
        init = parse_init(packets[0])
    except Exception as err:
        return [f"bad init segment: {err!r}"], 0, 0.0, 0.0
    video = init.video
    if video is None:
        return ["init has no video track"], 0, 0.0, 0.0
    longest, total = 0.0, 0
    for index, fragment in enumerate(packets[1:]):
        try:
            samples = parse_fragments(fragment, init)[video.track_id]
        except Exception as err:
            problems.append(f"fragment {index} unparsable: {err!r}")
            continue
        duration = sum(s.duration for s in samples)
        total += duration
        ms = duration * 1000 / video.timescale
        longest = max(longest, ms)
        if not samples[0].is_sync:
            problems.append(f"fragment {index} does not start with a keyframe")
        if ms > fragment_ms + 20:
            problem = f"fragment {index} is {ms:.0f} ms, selected {fragment_ms} ms"
            if sum(1 for s in samples if s.is_sync) == 1:
                # One GOP: no cut on a keyframe could have made it shorter without re-encoding.
                problem += f" {CAMERA_GOP} {ms / 1000:.1f} s)"
            problems.append(problem)
        try:
            with av.open(io.BytesIO(packets[0] + fragment), "r") as container:
                first = next(container.decode(video=0))
            if not first.key_frame:
                problems.append(f"fragment {index} does not decode from a key frame")
        except Exception as err:
            problems.append(f"fragment {index} does not decode alone: {err!r}")
    try:
        with av.open(io.BytesIO(b"".join(packets)), "r") as container:
            frames = sum(1 for _ in container.decode(video=0))
        if not frames:
            problems.append("no decodable picture")
    except Exception as err:
        problems.append(f"clip does not decode: {err!r}")
    return problems, len(packets) - 1, longest, total / video.timescale


def _more_packets_than(recording: Recording, count: int) -> bool:
    return len(recording.complete_packets) > count


class CameraHub:
    """One camera's hub emulator: paired once, reconnected after restarts, records events."""

    def __init__(self, index: int, port: int) -> None:
        """Prepare the hub of camera ``index`` whose accessory listens on ``port``."""
        self.index = index
        self.port = port
        self.hub = HomeHub(port, alias=f"hub-{index}")
        self.selection: SelectedCameraRecordingConfiguration | None = None
        self.selections = 0

    async def pair(self, setup_code: str) -> None:
        """Pair, select from the offer, allow recording, subscribe to motion."""
        await self.hub.pair(setup_code)
        chosen = await self.hub.select_from_offer()
        await self.hub.enable_recording(chosen, audio=True)
        self.selections += 1
        self.selection = SelectedCameraRecordingConfiguration.decode(base64.b64decode(chosen))
        await self.hub.subscribe(self.hub.iid(*MOTION))

    @property
    def prebuffer_seconds(self) -> float:
        """Return the pre-roll length the hub selected."""
        assert self.selection is not None
        return self.selection.recording.prebuffer_length / 1000

    @property
    def fragment_ms(self) -> int:
        """Return the selected fragment length."""
        assert self.selection is not None
        return int(
            self.selection.recording.media_container_configuration.parameters.fragment_length
        )

    async def close(self) -> None:
        """Close the hub's current HAP session."""
        await self.hub.close()

    async def reconnect(self, timeout: float = 120) -> None:
        """Reconnect with the saved pairing as a hub does after the accessory went away."""
        data = self.hub.pairing_data
        with contextlib.suppress(Exception):
            await self.hub.close()
        async with asyncio.timeout(timeout):
            while True:
                hub = HomeHub(self.port, alias=f"hub-{self.index}")
                hub.adopt(data)
                try:
                    await hub.refresh()
                    await hub.subscribe(hub.iid(*MOTION))
                except Exception:
                    with contextlib.suppress(Exception):
                        await hub.close()
                    await asyncio.sleep(1)
                    continue
                self.hub = hub
                return

    async def record(
        self, set_motion: Callable[[bool], Any], live_seconds: float, clip: Clip
    ) -> None:
        """Motion on → the hub opens a recording, reads ``live_seconds`` → close, motion off."""
        hub = self.hub
        try:
            await set_motion(True)
            # Older events (the last event's end) may still be queued: wait for a start.
            try:
                async with asyncio.timeout(HUB_TIMEOUT):
                    while await hub.next_event(hub.iid(*MOTION), timeout=HUB_TIMEOUT) is not True:
                        pass
            except TimeoutError:
                clip.problems.append("no MotionDetected event reached the hub")
                return
            client = await hub.open_data_stream(name=f"hub-{self.index}")
            client.timeout = HUB_TIMEOUT
            try:
                response = await client.open_recording(1)
                if response.status != 0:
                    clip.problems.append(
                        f"open refused: status {response.status} {response.message}"
                    )
                    return
                recording = client.recordings[1]
                await self._read(client, recording, live_seconds, clip)
                client.close_stream(1, 0)
            finally:
                await client.close()
            packets = recording.complete_packets
            problems, fragments, longest, media = await asyncio.get_running_loop().run_in_executor(
                None, check_clip, packets, self.fragment_ms
            )
            clip.problems += problems
            clip.fragments, clip.longest_fragment_ms, clip.media_seconds = fragments, longest, media
            if clip.preroll_seconds < self.prebuffer_seconds - 1.0:
                clip.problems.append(
                    f"pre-roll {clip.preroll_seconds:.1f} s, selected {self.prebuffer_seconds:g} s"
                )
        except Exception as err:
            clip.problems.append(f"{type(err).__name__}: {err}")
        finally:
            with contextlib.suppress(Exception):
                await set_motion(False)
            clip.ok = not clip.problems

    async def _read(
        self, client: Any, recording: Recording, live_seconds: float, clip: Clip
    ) -> None:
        """Read for ``live_seconds``; pre-roll = media received ahead of real time.

        Media received beyond the wall time since the open cannot be live: it was buffered
        before the event. Measured at each complete packet.
        """
        opened = time.monotonic()
        seen = 0
        seconds = 0.0
        init = None
        while time.monotonic() - opened < live_seconds:
            if recording.ended or recording.closed:
                clip.problems.append(
                    f"accessory ended the stream early (close reason {recording.close_reason})"
                )
                break
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await client.wait_until(functools.partial(_more_packets_than, recording, seen))
            packets = recording.complete_packets
            if len(packets) > seen:
                now = time.monotonic()
                if init is None:
                    init = parse_init(packets[0])
                for packet in packets[max(seen, 1) :]:
                    if init.video is not None:
                        samples = parse_fragments(packet, init).get(init.video.track_id, [])
                        seconds += sum(s.duration for s in samples) / init.video.timescale
                seen = len(packets)
                clip.preroll_seconds = max(clip.preroll_seconds, seconds - (now - opened))

    async def view(self, seconds: float, view: View) -> None:
        """Open a live viewer, wait for a decodable keyframe, watch ``seconds``, end it."""
        viewer = LiveViewer(self.hub)
        try:
            await viewer.open()
            response = await viewer.setup()
            if response.status != 0:
                view.problem = f"SetupEndpoints status {response.status}"
                return
            result = await viewer.select()
            if result != {}:
                view.problem = f"START refused: {result}"
                return
            started = time.monotonic()
            async with asyncio.timeout(HUB_TIMEOUT):
                while view.first_picture_seconds is None:
                    await asyncio.sleep(0.2)
                    packets = viewer.packets
                    ends = [i for i, p in enumerate(packets) if p.marker]
                    if ends:
                        units = [u for u in access_units(packets[: ends[-1] + 1]) if 5 in u.types]
                        if units and decode_units(units[:1]):
                            view.first_picture_seconds = time.monotonic() - started
            await asyncio.sleep(seconds)
            before = len(viewer.packets)
            await asyncio.sleep(1.0)
            if len(viewer.packets) == before:
                view.problem = "video stopped while watching"
                return
            with contextlib.suppress(Exception):
                await viewer.select(SessionCommand.END)
            view.ok = True
        except TimeoutError:
            view.problem = "no decodable picture"
        except Exception as err:
            view.problem = f"{type(err).__name__}: {err}"
        finally:
            await viewer.close()
