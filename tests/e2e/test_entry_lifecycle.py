"""What an unload or a Home Assistant stop leaves behind, and what a reload brings back.

Real stack: a paced live feed joined mid-GOP, HA's real stream worker, the real HAP server
paired with the hub emulator, an HDS recording in progress (transcoded, so the feed task
runs too), a live viewer over real SRTP and a snapshot waiting for the camera. After the
unload (or the stop) no task of hksv may be left; after a reload the *Last recording*
sensor still says how the clip before it ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable
import contextlib
from pathlib import Path
from typing import Any
from unittest.mock import patch

from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_mock_restore_state_shutdown_restart,
)

import custom_components.hksv
from custom_components.hksv.const import DEFAULT_OPTIONS, OPT_VIDEO_MODE, VIDEO_MODE_TRANSCODE
from tests import harness
from tests.conftest import MOTION_ID, FakeCamera
from tests.e2e.live_source import LiveFeedSource
from tests.harness import clip_file, live_camera, stream_motion_recording
from tests.hub.emulator import HomeHub
from tests.live.viewer import LiveViewer
from tests.media import ClipSpec
from tests.ports import free_port

CLIP = ClipSpec(seconds=20.0, width=640, height=360, fps=25, gop_seconds=1.0)
HKSV_DIR = str(Path(custom_components.hksv.__file__).parent)
LAST_RECORDING = "sensor.front_door_last_recording"


@pytest.fixture
def known_source() -> dict[str, Any]:
    """The camera's format is known: no startup probe."""
    return {
        "width": CLIP.width,
        "height": CLIP.height,
        "fps": float(CLIP.fps),
        "audio_codec": "aac-lc",
        "audio_sample_rate": 32000,
        "audio_channels": 1,
    }


@pytest.fixture
def entry_options() -> dict[str, Any]:
    """Transcode recordings, so the transcoder's feed task runs too."""
    return {**DEFAULT_OPTIONS, OPT_VIDEO_MODE: VIDEO_MODE_TRANSCODE}


with_doorbell = harness.no_doorbell


@pytest.fixture
async def live_source(
    hass: HomeAssistant, socket_enabled: None, tmp_path: Path
) -> AsyncGenerator[LiveFeedSource]:
    """Serve a live feed and set up HA's stream."""
    clip = await clip_file(hass, tmp_path, CLIP)
    async with live_camera(hass, LiveFeedSource(clip, free_port())) as source:
        yield source


@pytest.fixture
def stream_source(live_source: LiveFeedSource) -> str:
    """Point the test camera at the feed."""
    return live_source.url


def hksv_tasks() -> list[asyncio.Task[Any]]:
    """Return the unfinished tasks that run hksv code or carry an hksv name."""
    found = []
    for task in asyncio.all_tasks():
        if task is asyncio.current_task() or task.done():
            continue
        name = task.get_name()
        if "hksv" in name or "Front door" in name or _runs_hksv_code(task.get_coro()):
            found.append(task)
    return found


def _runs_hksv_code(coro: Any) -> bool:
    """Return True if a frame of the coroutine's await chain is in custom_components/hksv."""
    while coro is not None:
        code = getattr(coro, "cr_code", None) or getattr(coro, "ag_code", None)
        if code is not None and code.co_filename.startswith(HKSV_DIR):
            return True
        coro = getattr(coro, "cr_await", None) or getattr(coro, "ag_await", None)
    return False


async def _wait_for(condition: Callable[[], Any], timeout: float = 60) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.1)


async def _record(hass: HomeAssistant, hub: HomeHub, entry: MockConfigEntry) -> Any:
    """Enable recording and leave a clip streaming to the hub; return the HDS client."""
    await hub.enable_recording(await hub.select_from_offer())
    return await stream_motion_recording(hass, entry.runtime_data, hub)


@pytest.mark.parametrize("ending", ["unload", "home_assistant_stop"])
@pytest.mark.usefixtures("session_keys")
async def test_no_task_outlives_the_entry(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_camera: FakeCamera, ending: str
) -> None:
    """Recording, a live viewer and a snapshot in flight: none of their tasks survives."""
    bridge = init_integration.runtime_data
    hub = HomeHub(bridge.port)
    await hub.pair(bridge.setup_code)
    viewer = LiveViewer(hub, 0)
    camera_asked, camera_answers = asyncio.Event(), asyncio.Event()

    async def slow_image(width: int | None = None, height: int | None = None) -> bytes | None:
        camera_asked.set()
        await camera_answers.wait()
        return fake_camera.image

    snapshot: asyncio.Task[Any] | None = None
    try:
        client = await _record(hass, hub, init_integration)
        await viewer.open()
        await viewer.setup()
        assert await viewer.select() == {}
        await viewer.wait_packets(10)
        with patch.object(fake_camera, "async_camera_image", slow_image):
            snapshot = asyncio.create_task(hub.snapshot())
            await _wait_for(camera_asked.is_set)
            assert bridge.live.viewers == 1
            running = {t.get_name() for t in hksv_tasks()}
            assert any("transcode feed" in name for name in running), running

            if ending == "unload":
                assert await hass.config_entries.async_unload(init_integration.entry_id)
                assert init_integration.state is ConfigEntryState.NOT_LOADED
            else:
                await hass.async_stop()
            await hass.async_block_till_done()
            assert hksv_tasks() == []
        await client.wait_closed()
    finally:
        camera_answers.set()
        if snapshot is not None:
            with contextlib.suppress(Exception):
                await snapshot
        await viewer.close()
        await hub.close()


@pytest.mark.usefixtures("session_keys")
async def test_last_recording_survives_a_reload(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """The clip before a reload still shows as Last recording after it, details included."""
    bridge = init_integration.runtime_data
    hub = HomeHub(bridge.port)
    await hub.pair(bridge.setup_code)
    try:
        client = await _record(hass, hub, init_integration)
        client.close_stream(1, 0)
        await _wait_for(lambda: bridge.recorder.last_recording is not None)
        await client.close()
    finally:
        await hub.close()
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    await hass.async_block_till_done()
    before = hass.states.get(LAST_RECORDING)
    assert before is not None and before.state == "completed"
    assert before.attributes["mode"] == "transcode"
    assert before.attributes["fragments"] >= 1

    assert await hass.config_entries.async_unload(init_integration.entry_id)
    await hass.async_block_till_done()
    # Through the restore-state storage (JSON), as across a Home Assistant restart.
    await async_mock_restore_state_shutdown_restart(hass)
    assert await hass.config_entries.async_setup(init_integration.entry_id)
    await hass.async_block_till_done()

    after = hass.states.get(LAST_RECORDING)
    assert after is not None
    assert after.state == "completed"
    assert dict(after.attributes) == dict(before.attributes)
    assert init_integration.runtime_data.recorder.last_recording is None  # nothing new ran
