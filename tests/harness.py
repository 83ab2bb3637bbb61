"""Real-stack pieces the end-to-end tests and benchmarks share: a camera, a paired hub, viewers.

Context managers and helpers a module wraps in its own fixtures (it still chooses its clip, HLS
mode and source kind):

- ``clip_file``: a generated clip for a ``ClipSpec``, written once per directory.
- ``live_camera``: Home Assistant's ``stream`` set up and a camera source serving the clip
  (``LiveFeedSource`` joined mid-GOP, ``PacedSource``, ``RtspSource``), stopped on every path.
- ``recording_hub``: an aiohomekit home-hub emulator paired over real HAP after the startup
  probe, a recording configuration selected from the offer, Stream & Allow Recording on;
  ``stream_motion_recording`` then fires motion and opens a recording over real HDS.
- ``paired_controller`` / ``another_device``: iPhone-like aiohomekit controllers for live view.
- ``Viewers``: SRTP live viewers (``tests/live/viewer.py``) set up on a controller, every one
  closed after the test even when it fails.
- ``assert_fragments_contiguous``: the fragment check every recording test makes.

Fixtures a module takes by assignment (pytest registers them under the module's name for them):
``known_source = harness.probe_at_startup``, ``with_doorbell = harness.no_doorbell``,
``controller = harness.iphone_controller``, ``home_hub = harness.hub_recording_from_offer``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
import hashlib
from pathlib import Path
from typing import Any, Protocol
from unittest.mock import patch

from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.hap.rtp_stream import SetupStatus
from custom_components.hksv.media.fmp4 import parse_fragments, parse_init
from tests.conftest import MOTION_ID
from tests.hub.controller import HubController
from tests.hub.emulator import HomeHub, media_seconds
from tests.hub.hds_client import HDSClient
from tests.live.viewer import LiveViewer
from tests.media import ClipSpec, write_clip

LL_HLS: dict[str, Any] = {"stream": {"ll_hls": True}}
# Home Assistant's stream defaults (no `stream:` section in the configuration).
STREAM_DEFAULTS: dict[str, Any] = {}
PROBE_TIMEOUT = 60.0


class CameraSource(Protocol):
    """What every test camera offers: a URL Home Assistant's stream worker reads, start, stop."""

    @property
    def url(self) -> str:
        """Return the camera's stream URL."""
        ...

    async def start(self) -> None:
        """Start serving."""

    async def stop(self) -> None:
        """Stop serving (also after a failed start)."""


@pytest.fixture
def probe_at_startup() -> None:
    """Use as ``known_source``: no stored camera format, so the integration probes the camera."""


def stored_format(spec: ClipSpec) -> dict[str, Any]:
    """Return the camera format the integration stores for ``spec`` (``known_source``: no probe)."""
    return {
        "width": spec.width,
        "height": spec.height,
        "fps": float(spec.fps),
        "audio_codec": "aac-lc",
        "audio_sample_rate": spec.audio_rate,
        "audio_channels": spec.audio_channels,
    }


@pytest.fixture
def no_doorbell() -> bool:
    """Use as ``with_doorbell``: the entry has no doorbell."""
    return False


async def clip_file(hass: HomeAssistant, directory: Path, spec: ClipSpec) -> Path:
    """Return ``spec`` as an MPEG-TS clip in ``directory``, generated only the first time."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"clip-{hashlib.sha256(repr(spec).encode()).hexdigest()[:16]}.ts"
    if not path.exists():
        await hass.async_add_executor_job(write_clip, path, spec)
    return path


@asynccontextmanager
async def live_camera[SourceT: CameraSource](
    hass: HomeAssistant,
    source: SourceT,
    *,
    stream_config: dict[str, Any] = LL_HLS,
    quick_restart: bool = True,
) -> AsyncIterator[SourceT]:
    """Set up HA's ``stream`` with ``stream_config`` and run ``source`` as the camera.

    ``quick_restart`` makes the stream worker retry a lost camera after 1 s instead of HA's
    growing back-off, so reconnects happen within a test.
    """
    assert await async_setup_component(hass, "stream", stream_config)
    try:
        await source.start()
    except BaseException:
        await source.stop()  # start() may fail after launching ffmpeg (port taken meanwhile)
        raise
    restart = (
        patch("homeassistant.components.stream.STREAM_RESTART_INCREMENT", 1)
        if quick_restart
        else nullcontext()
    )
    try:
        with restart:
            yield source
    finally:
        await source.stop()


async def wait_for_probe(bridge: Any) -> None:
    """Wait until the startup probe has learnt the camera's format."""
    async with asyncio.timeout(PROBE_TIMEOUT):
        while "source" not in bridge._stored:
            await asyncio.sleep(0.2)


@asynccontextmanager
async def recording_hub(
    bridge: Any, *, audio: bool = True, selection: Any = None
) -> AsyncIterator[HomeHub]:
    """Pair a home hub after the probe and enable recording with ``selection``.

    Without a ``selection`` the hub selects from the accessory's offer, as a home hub does.
    """
    await wait_for_probe(bridge)
    hub = HomeHub(bridge.port)
    try:
        await hub.pair(bridge.setup_code)
        if selection is None:
            selection = await hub.select_from_offer()
        await hub.enable_recording(selection, audio=audio)
        yield hub
    finally:
        await hub.close()


@pytest.fixture
async def hub_recording_from_offer(
    init_integration: MockConfigEntry, session_keys: None
) -> AsyncIterator[HomeHub]:
    """Use as ``home_hub``: a ``recording_hub`` that selected from the offer, audio on."""
    async with recording_hub(init_integration.runtime_data) as hub:
        yield hub


async def stream_motion_recording(
    hass: HomeAssistant, bridge: Any, hub: HomeHub, *, client_timeout: float = 90
) -> HDSClient:
    """Fire motion once 2 s are buffered; return the hub's HDS client with 2 s of recording in."""
    async with asyncio.timeout(60):
        while bridge.recorder.prebuffer.buffered_seconds < 2:
            await asyncio.sleep(0.1)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    client = await hub.open_data_stream()
    client.timeout = client_timeout
    assert (await client.open_recording(1)).status == 0
    await client.wait_until(lambda: media_seconds(client.recordings[1]) >= 2)
    assert bridge.recorder.streaming
    return client


@asynccontextmanager
async def paired_controller(bridge: Any, alias: str = "iphone") -> AsyncIterator[HubController]:
    """Pair an iPhone-like controller (live view, snapshots) as admin."""
    controller = HubController(bridge.port, alias=alias)
    try:
        await controller.pair(bridge.setup_code)
        yield controller
    finally:
        await controller.close()


@pytest.fixture
async def iphone_controller(init_integration: MockConfigEntry) -> AsyncIterator[HubController]:
    """Use as ``controller``: an iPhone-like controller paired with the entry's accessory."""
    async with paired_controller(init_integration.runtime_data) as controller:
        yield controller


def another_device(controller: HubController, alias: str) -> HubController:
    """Return a second device of ``controller``'s home: same pairing, no pairing of its own."""
    device = HubController(controller.port, alias=alias)
    device.adopt(controller.pairing_data)
    device.accessories = controller.accessories
    return device


def assert_fragments_contiguous(packets: list[bytes]) -> None:
    """Assert every fragment of a recording starts on a keyframe where the previous one ended."""
    init = parse_init(packets[0])
    assert init.video is not None
    expected = None
    for fragment in packets[1:]:
        samples = parse_fragments(fragment, init)[init.video.track_id]
        assert samples[0].is_sync
        if expected is not None:
            assert abs(samples[0].decode_time - expected) <= init.video.timescale // 50
        expected = samples[0].decode_time + sum(s.duration for s in samples)


class Viewers:
    """The live viewers of one test; ``close`` ends every one of them."""

    def __init__(self) -> None:
        """Start with none."""
        self.opened: list[LiveViewer] = []

    def add(self, hub: HubController, slot: int = 0) -> LiveViewer:
        """Return a viewer of ``slot`` that is closed with the others (not opened yet)."""
        viewer = LiveViewer(hub, slot)
        self.opened.append(viewer)
        return viewer

    async def set_up(self, hub: HubController, slot: int = 0) -> LiveViewer:
        """Open a viewer's sockets and set up endpoints on ``slot`` (which must succeed)."""
        viewer = self.add(hub, slot)
        await viewer.open()
        response = await viewer.setup()
        assert response.status == SetupStatus.SUCCESS
        return viewer

    async def start(self, hub: HubController, slot: int = 0, **selection: Any) -> LiveViewer:
        """Set up a viewer and start its stream with ``selection`` (defaults otherwise)."""
        viewer = await self.set_up(hub, slot)
        assert await viewer.select(**selection) == {}
        return viewer

    async def close(self) -> None:
        """Close every viewer, newest first."""
        while self.opened:
            await self.opened.pop().close()

    def closing_fixture(self) -> Any:
        """Return an autouse fixture that closes these viewers after every test, even a failed one.

        A module using a module-wide ``Viewers`` assigns it to a name of its own, e.g.
        ``close_viewers = VIEWERS.closing_fixture()``.
        """

        async def close_viewers() -> AsyncIterator[None]:
            yield
            await self.close()

        return pytest.fixture(autouse=True)(close_viewers)
