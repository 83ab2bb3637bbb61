"""The soak schedule on a real ``hass``: events, viewers, drops, night mode, restarts.

``Soak(settings).run()`` starts the feeds and Home Assistant, pairs one hub per camera, then
runs per camera a motion event every ``event_seconds`` and a live viewer every
``viewer_seconds``; one camera at a time drops for ``drop_seconds`` every ``drop_minutes``;
camera 0 switches to its night clip (half the frame rate) every ``night_minutes`` and back half
way; Home Assistant restarts every ``restart_minutes`` (after the events and viewers in
flight, before the next ones). Every ``sample_seconds`` it records what the helper measures
inside Home Assistant plus the clips and viewers of that interval.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
import functools
import logging
from pathlib import Path
import shutil
import time
from typing import Any

from tests.hub.controller import capture_session_keys
from tests.media import ClipSpec
from tests.real_hass.harness import (
    CAMERA_GOP,
    CameraFeed,
    CameraHub,
    Clip,
    HassProcess,
    Restart,
    View,
    make_clips,
    write_config,
)

_LOGGER = logging.getLogger(__name__)
# How long after a drop ends, or Home Assistant is back, a failure is still blamed on it.
RECOVERY_SECONDS = 30.0


@dataclass
class SoakSettings:
    """What to run; times in seconds unless named minutes."""

    minutes: float = 120.0
    cameras: int = 2
    rtsp_cameras: int = 1
    event_seconds: float = 45.0
    live_seconds: float = 10.0
    viewer_seconds: float = 120.0
    view_seconds: float = 5.0
    drop_minutes: float = 10.0
    drop_seconds: float = 20.0
    night_minutes: float = 12.0
    restart_minutes: float = 20.0
    sample_seconds: float = 60.0
    clip: ClipSpec = field(
        default_factory=lambda: ClipSpec(
            seconds=60.0, width=1280, height=720, fps=30, gop_seconds=2.0, video_bitrate_kbps=1200
        )
    )
    clip_cache: Path = Path("benchmarks/out/soak/clips")
    workdir: Path = Path("benchmarks/out/soak/run")


@dataclass
class Sample:
    """One row of the per-interval table."""

    t_min: float
    hass_start: int
    metrics: dict[str, Any]
    clips_ok: int
    clips_failed: int
    viewers_ok: int
    viewers_failed: int


@dataclass
class SoakResult:
    """Everything measured."""

    settings: SoakSettings
    samples: list[Sample] = field(default_factory=list)
    clips: list[Clip] = field(default_factory=list)
    views: list[View] = field(default_factory=list)
    restarts: list[Restart] = field(default_factory=list)
    drops: list[tuple[int, float, float]] = field(default_factory=list)  # camera, start, end
    night_switches: list[tuple[float, str]] = field(default_factory=list)
    first_start_seconds: float = 0.0
    selections: list[int] = field(default_factory=list)  # per camera, after the run
    hksv_events: list[dict[str, Any]] = field(default_factory=list)
    wall_start: float = 0.0


class Soak:
    """Run the schedule once."""

    def __init__(self, settings: SoakSettings) -> None:
        """Prepare; ``run`` does everything."""
        self.settings = settings
        self.result = SoakResult(settings)
        self.feeds: list[CameraFeed] = []
        self.hubs: list[CameraHub] = []
        self.hass: HassProcess | None = None
        self._running = asyncio.Event()  # cleared while Home Assistant restarts
        self._busy = 0
        self._idle = asyncio.Event()
        self._end = 0.0
        self._start = 0.0

    async def run(self) -> SoakResult:
        """Start everything, run the schedule for ``minutes``, stop everything."""
        settings = self.settings
        settings.workdir.mkdir(parents=True, exist_ok=True)
        loop = asyncio.get_running_loop()
        day, night = await loop.run_in_executor(
            None, make_clips, settings.clip_cache, settings.clip
        )
        async with AsyncExitStack() as stack:
            stack.enter_context(capture_session_keys())
            for index in range(settings.cameras):
                feed = CameraFeed(
                    day, night, rtsp=index >= settings.cameras - settings.rtsp_cameras
                )
                self.feeds.append(feed)
                stack.push_async_callback(feed.stop)
                await feed.start()
            config = write_config(settings.workdir / "config", self.feeds)
            stack.callback(shutil.rmtree, config.control.parent, ignore_errors=True)
            self.hass = HassProcess(config, settings.workdir / "hass.log")
            stack.push_async_callback(self._stop_hass)
            self.result.first_start_seconds = await self.hass.start()
            status = await self.hass.request({"cmd": "status"})
            entries = sorted(status["entries"], key=lambda e: e["camera"])
            for index, entry in enumerate(entries):
                hub = CameraHub(index, entry["port"])
                stack.push_async_callback(self._close_hub, hub)
                self.hubs.append(hub)
                await hub.pair(entry["setup_code"])
            await self.hass.request({"cmd": "events"})  # nothing before the schedule counts
            self._running.set()
            self._idle.set()
            self._start = time.monotonic()
            self.result.wall_start = time.time()
            self._end = self._start + settings.minutes * 60
            tasks = [
                *(asyncio.create_task(self._events(i)) for i in range(settings.cameras)),
                *(asyncio.create_task(self._viewers(i)) for i in range(settings.cameras)),
                asyncio.create_task(self._drops()),
                asyncio.create_task(self._night()),
                asyncio.create_task(self._restarts()),
            ]
            try:
                await self._sampler()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            await self._sample(final=True)
            self.result.selections = [hub.selections for hub in self.hubs]
        self._attribute()
        return self.result

    async def _stop_hass(self) -> None:
        if self.hass is not None:
            await self.hass.stop()

    @staticmethod
    async def _close_hub(hub: CameraHub) -> None:
        await hub.close()

    def _elapsed(self) -> float:
        return time.monotonic() - self._start

    async def _sleep_until(self, at: float) -> bool:
        """Sleep until ``at`` seconds into the run; False once the run is over."""
        delay = min(at, self._end - self._start) - self._elapsed()
        if delay > 0:
            await asyncio.sleep(delay)
        return self._elapsed() < self.settings.minutes * 60

    # -- activities (held off while Home Assistant restarts) --------------------------------

    async def _activity(self) -> None:
        await self._running.wait()
        self._busy += 1
        self._idle.clear()

    def _done(self) -> None:
        self._busy -= 1
        if self._busy == 0:
            self._idle.set()

    async def _events(self, index: int) -> None:
        settings = self.settings
        # Cameras staggered so their events do not all start at once.
        at = 5.0 + index * settings.event_seconds / max(1, settings.cameras)
        while await self._sleep_until(at):
            await self._activity()
            clip = Clip(index, time.time())
            self.result.clips.append(clip)
            try:
                await self.hubs[index].record(
                    functools.partial(self._motion, index), settings.live_seconds, clip
                )
            finally:
                self._done()
            clip.context = self._context(index, clip.opened_wall)
            if not clip.ok:
                _LOGGER.warning("camera %s clip failed: %s", index, "; ".join(clip.problems))
            at += settings.event_seconds

    async def _viewers(self, index: int) -> None:
        settings = self.settings
        at = 20.0 + index * 7.0
        while await self._sleep_until(at):
            await self._activity()
            view = View(index, time.time())
            self.result.views.append(view)
            try:
                await self.hubs[index].view(settings.view_seconds, view)
            finally:
                self._done()
            view.context = self._context(index, view.at_wall)
            if not view.ok:
                _LOGGER.warning("camera %s viewer failed: %s", index, view.problem)
            at += settings.viewer_seconds

    async def _drops(self) -> None:
        settings = self.settings
        at, camera = settings.drop_minutes * 60, 0
        while await self._sleep_until(at):
            now = time.time()
            self.result.drops.append((camera, now, now + settings.drop_seconds))
            await self.feeds[camera].command(f"drop {settings.drop_seconds:g}")
            camera = (camera + 1) % settings.cameras
            at += settings.drop_minutes * 60

    async def _night(self) -> None:
        settings = self.settings
        if settings.cameras - settings.rtsp_cameras < 1:
            return  # the night clip switch is on a plain TCP feed (camera 0)
        at = settings.night_minutes * 60 / 2
        while await self._sleep_until(at):
            command = "day" if self.feeds[0].night else "night"
            self.result.night_switches.append((time.time(), command))
            await self.feeds[0].command(command)
            at += settings.night_minutes * 60 / 2

    async def _restarts(self) -> None:
        settings = self.settings
        at = settings.restart_minutes * 60
        while await self._sleep_until(at):
            assert self.hass is not None
            self._running.clear()
            await self._idle.wait()
            await self._sample()  # the last numbers of this process
            began = time.time()
            stop_seconds, code = await self.hass.stop()
            start_seconds = await self.hass.start()
            restart = Restart(began, stop_seconds, code, start_seconds)
            back = time.monotonic()
            await asyncio.gather(*(hub.reconnect() for hub in self.hubs))
            restart.hubs_back_seconds = time.monotonic() - back
            self.result.restarts.append(restart)
            self._running.set()
            at += settings.restart_minutes * 60

    async def _motion(self, camera: int, on: bool) -> None:
        assert self.hass is not None
        await self.hass.request({"cmd": "motion", "camera": camera, "on": on})

    def _context(self, camera: int, since: float) -> list[str]:
        """Say what the camera went through from shortly before ``since`` until now (blame)."""
        now = time.time()
        found = [
            "camera drop"
            for dropped, start, end in self.result.drops
            if dropped == camera and start <= now and end + RECOVERY_SECONDS >= since
        ][:1]
        found += [
            "after restart"
            for restart in self.result.restarts
            if restart.at <= now
            and restart.at + restart.stop_seconds + restart.start_seconds + RECOVERY_SECONDS
            >= since
        ][:1]
        if camera == 0:
            found += [
                f"{command} switch"
                for at, command in self.result.night_switches
                if at <= now and at + RECOVERY_SECONDS >= since
            ]
        return found

    # -- sampling ---------------------------------------------------------------------------

    async def _sampler(self) -> None:
        at = self.settings.sample_seconds
        while await self._sleep_until(at):
            if self._running.is_set():
                await self._sample()
            at += self.settings.sample_seconds

    async def _sample(self, *, final: bool = False) -> None:
        assert self.hass is not None
        try:
            metrics = await self.hass.request({"cmd": "metrics"})
            events = await self.hass.request({"cmd": "events"})
        except (OSError, ValueError, TimeoutError) as err:
            _LOGGER.warning("no sample: %r", err)
            return
        self.result.hksv_events += events["events"]
        since = self.result.samples[-1].t_min * 60 if self.result.samples else 0.0
        clips = [c for c in self.result.clips if c.opened_wall - self.result.wall_start >= since]
        views = [v for v in self.result.views if v.at_wall - self.result.wall_start >= since]
        self.result.samples.append(
            Sample(
                t_min=round(self._elapsed() / 60, 2),
                hass_start=self.hass.starts,
                metrics=metrics,
                clips_ok=sum(c.ok for c in clips),
                clips_failed=sum(not c.ok and bool(c.problems) for c in clips),
                viewers_ok=sum(v.ok for v in views),
                viewers_failed=sum(not v.ok and bool(v.problem) for v in views),
            )
        )

    def _attribute(self) -> None:
        """Match each clip with its hksv_recording_finished event and decide who is at fault."""
        events = sorted(self.result.hksv_events, key=lambda e: e["fired_at"])
        for clip in self.result.clips:
            camera = f"camera.soak_{clip.camera}"
            for event in events:
                if (
                    event.get("camera_entity_id") == camera
                    and event["fired_at"] >= clip.opened_wall
                ):
                    if event["fired_at"] - clip.opened_wall <= 120:
                        clip.hksv = event
                    break
            if not clip.ok:
                clip.hksv_at_fault = _hksv_at_fault(clip)


def _hksv_at_fault(clip: Clip) -> bool:
    """Blame hksv unless what the camera went through explains every problem.

    A camera that had no data (dropped just before or during the event) explains a short
    pre-roll, a stream the accessory ended, or nothing received; right after a restart the
    prebuffer is still filling, which explains a short pre-roll. A fragment that is one whole
    camera GOP (the camera sent no keyframe within the selected length) is the camera's. A
    refused open, any other bad fragment or a missing motion event is hksv's in any case.
    """
    explained: tuple[str, ...] = ()
    if "camera drop" in clip.context:
        explained += ("pre-roll", "accessory ended the stream early", "nothing received")
    if "after restart" in clip.context:
        explained += ("pre-roll",)
    # A fragment that is one whole camera GOP longer than the selection: only re-encoding
    # could cut it, and hksv copies a camera whose GOPs are steadily shorter (its copy rule).
    return not all(
        problem.startswith(explained) or CAMERA_GOP in problem for problem in clip.problems
    )
