"""Tests only: soak cameras, motion on command, and a control socket for the harness.

Configured in YAML (written by tests/real_hass/harness.py)::

    hksv_soak:
      control: /tmp/.../control.sock
      cameras: [{url: tcp://127.0.0.1:P, port: HAP port}, ...]

On the first start it adds one hksv entry per camera through hksv's own config flow, then
moves it to the harness's HAP port on 127.0.0.1. The control socket takes one JSON object per
line and answers one: ``status``, ``motion``, ``metrics`` (this process's RSS, open fds,
threads, asyncio tasks, event-loop lag and the loop thread's CPU time, measured here, inside
Home Assistant) and
``events`` (the ``hksv_recording_finished`` events since the last call).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from pathlib import Path
import statistics
import sys
import threading
import time
from typing import Any

from homeassistant.const import CONF_NAME, EVENT_HOMEASSISTANT_STARTED, EVENT_HOMEASSISTANT_STOP
from homeassistant.core import Event, HomeAssistant, callback
from homeassistant.helpers.discovery import async_load_platform
from homeassistant.helpers.typing import ConfigType

_LOGGER = logging.getLogger(__name__)
DOMAIN = "hksv_soak"
HKSV = "hksv"
# How often the loop-lag probe's timer is due (its lateness is the lag).
LAG_PROBE_SECONDS = 0.25


class Helper:
    """What the control socket needs: cameras, motion sensors, lag samples, events."""

    def __init__(self, hass: HomeAssistant, config: dict[str, Any]) -> None:
        """Keep the configuration."""
        self.hass = hass
        self.cameras: list[dict[str, Any]] = config["cameras"]
        # Options every new hksv entry gets (a benchmark comparing settings).
        self.entry_options: dict[str, Any] = config.get("entry_options", {})
        self.control = Path(config["control"])
        self.motion: list[Any] = []
        self.started = False
        self.lags_ms: list[float] = []
        self.events: list[dict[str, Any]] = []
        self._server: asyncio.Server | None = None
        self._probe: asyncio.TimerHandle | None = None

    async def async_start(self) -> None:
        """Listen on the control socket and start the lag probe."""
        with contextlib.suppress(FileNotFoundError):
            self.control.unlink()
        self._server = await asyncio.start_unix_server(self._on_client, str(self.control))
        loop = asyncio.get_running_loop()
        self._probe = loop.call_later(LAG_PROBE_SECONDS, self._lag, time.monotonic())

    @callback
    def _lag(self, scheduled: float) -> None:
        now = time.monotonic()
        self.lags_ms.append((now - scheduled - LAG_PROBE_SECONDS) * 1000)
        self._probe = asyncio.get_running_loop().call_later(LAG_PROBE_SECONDS, self._lag, now)

    async def async_stop(self, _event: Event | None = None) -> None:
        """Close the socket and the probe (Home Assistant is stopping)."""
        if self._probe is not None:
            self._probe.cancel()
        if self._server is not None:
            self._server.close()
        with contextlib.suppress(FileNotFoundError):
            self.control.unlink()

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    answer = await self._handle(json.loads(line))
                except Exception as err:
                    answer = {"error": repr(err)}
                writer.write(json.dumps(answer, default=str).encode() + b"\n")
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def _handle(self, request: dict[str, Any]) -> dict[str, Any]:
        command = request["cmd"]
        if command == "status":
            hksv = sys.modules.get("custom_components.hksv")
            return {
                "started": self.started,
                "entries": self._entries(),
                "hksv_file": getattr(hksv, "__file__", None),
            }
        if command == "motion":
            self.motion[request["camera"]].set_motion(bool(request["on"]))
            return {}
        if command == "metrics":
            return await self._metrics()
        if command == "events":
            events, self.events = self.events, []
            return {"events": events}
        return {"error": f"unknown command {command!r}"}

    def _entries(self) -> list[dict[str, Any]]:
        found = []
        for entry in self.hass.config_entries.async_entries(HKSV):
            bridge = getattr(entry, "runtime_data", None)
            found.append(
                {
                    "entry_id": entry.entry_id,
                    "title": entry.title,
                    "camera": entry.data.get("camera_entity_id"),
                    "state": entry.state.value,
                    "port": entry.data.get("port"),
                    "setup_code": bridge.setup_code if bridge else None,
                    "paired": bridge.paired if bridge else None,
                    "running": bridge is not None and bridge.driver is not None,
                    # hksv's startup probe stores what it learned about the camera.
                    "source_known": bridge is not None and "source" in bridge._stored,
                }
            )
        return found

    async def _metrics(self) -> dict[str, Any]:
        lags, self.lags_ms = self.lags_ms, []
        proc = await self.hass.async_add_executor_job(_proc_numbers)
        prebuffer: dict[str, Any] = {}
        for entry in self.hass.config_entries.async_entries(HKSV):
            bridge = getattr(entry, "runtime_data", None)
            recorder = getattr(bridge, "recorder", None)
            if recorder is not None:
                # The same numbers diagnostics shows (recording → prebuffer).
                diag = recorder.prebuffer.diagnostics()
                prebuffer[entry.data.get("camera_entity_id", entry.title)] = {
                    "bytes": diag["buffered_bytes"],
                    "seconds": diag["buffered_seconds"],
                    "restarts": diag["stream_restarts"],
                }
        return {
            **proc,
            # CPU seconds of the event-loop thread so far (this runs on it).
            "loop_cpu_seconds": time.thread_time(),
            "threads_python": threading.active_count(),
            "tasks": len(asyncio.all_tasks()),
            "lag_p99_ms": statistics.quantiles(lags, n=100)[98] if len(lags) >= 2 else None,
            "lag_max_ms": max(lags) if lags else None,
            "prebuffer": prebuffer,
        }

    async def async_create_entries(self, _event: Event | None = None) -> None:
        """Add an hksv entry per camera (first start only) on the harness's HAP port."""
        self.started = True
        existing = {
            e.data.get("camera_entity_id"): e for e in self.hass.config_entries.async_entries(HKSV)
        }
        for index, camera in enumerate(self.cameras):
            camera_id = f"camera.soak_{index}"
            if camera_id in existing:
                continue
            flow = self.hass.config_entries.flow
            result = await flow.async_init(HKSV, context={"source": "user"})
            result = await flow.async_configure(
                result["flow_id"],
                {
                    CONF_NAME: f"Soak {index}",
                    "camera_entity_id": camera_id,
                    "motion_entity_id": f"binary_sensor.soak_{index}_motion",
                },
            )
            entry = result["result"]
            self.hass.config_entries.async_update_entry(
                entry,
                data={**entry.data, "port": camera["port"], "address": "127.0.0.1"},
                options={**entry.options, **self.entry_options},
            )
            await self.hass.config_entries.async_reload(entry.entry_id)
            _LOGGER.warning("hksv entry for %s on port %s", camera_id, camera["port"])


def _proc_numbers() -> dict[str, Any]:
    """Return RSS, open fds and OS threads of this process (from /proc)."""
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return {
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "threads": int(fields["Threads"]),
        "fds": len(os.listdir("/proc/self/fd")),
    }


async def async_setup(hass: HomeAssistant, config: ConfigType) -> bool:
    """Start the helper: entities, control socket, event capture, entries."""
    helper = Helper(hass, config[DOMAIN])
    hass.data[DOMAIN] = helper
    await helper.async_start()
    for platform in ("camera", "binary_sensor"):
        hass.async_create_task(async_load_platform(hass, platform, DOMAIN, {}, config))

    @callback
    def recording_finished(event: Event) -> None:
        helper.events.append({**event.data, "fired_at": time.time()})

    hass.bus.async_listen("hksv_recording_finished", recording_finished)
    hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STARTED, helper.async_create_entries)
    hass.bus.async_listen_once(EVENT_HOMEASSISTANT_STOP, helper.async_stop)
    return True
