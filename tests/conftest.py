"""Shared fixtures: Home Assistant with a test camera, motion and doorbell, and the hksv entry."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from typing import Any

from homeassistant.components.camera import Camera, CameraEntityFeature
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    setup_test_component_platform,
)

from custom_components.hksv.const import (
    CONF_ADDRESS,
    CONF_CAMERA,
    CONF_DOORBELL,
    CONF_MOTION,
    CONF_PORT,
    DEFAULT_OPTIONS,
    DOMAIN,
)
from custom_components.hksv.media import budget as budget_module
from custom_components.hksv.media.budget import TranscodeBudget
from tests.hub.controller import HubController, capture_session_keys
from tests.ports import free_port

CAMERA_ID = "camera.front_door"
MOTION_ID = "binary_sensor.front_door_motion"
DOORBELL_ID = "event.front_door_doorbell"
JPEG = b"\xff\xd8\xff\xe0fake-jpeg\xff\xd9"

__all__ = ["free_port"]  # still importable from here; tests/ports.py is its home


@pytest.fixture(autouse=True)
def auto_enable_custom_integrations(enable_custom_integrations: None) -> None:
    """Load custom_components/hksv."""


@pytest.fixture(autouse=True)
def transcode_budget(monkeypatch: pytest.MonkeyPatch) -> TranscodeBudget:
    """Give each test its own process budget, roomy unless a test makes its own.

    A measured capacity would depend on how busy the machine is while the suite runs;
    tests about admission configure theirs (tests/test_transcode_budget.py).
    """
    budget = TranscodeBudget(capacity=100.0)
    monkeypatch.setattr(budget_module, "_SHARED", budget)
    return budget


@pytest.fixture
def hass_config_dir(hass_tmp_config_dir: str) -> str:
    """Give each test its own config dir (HAP-python writes real files under .storage)."""
    return hass_tmp_config_dir


class FakeCamera(Camera):
    """A camera entity with a stream source and a still image, recording its requests."""

    _attr_supported_features = CameraEntityFeature.STREAM

    def __init__(self, entity_id: str, source: str | None) -> None:
        """Create the camera."""
        super().__init__()
        self.entity_id = entity_id
        self._attr_name = "Front door"
        self._attr_unique_id = "front-door-camera"
        self.source = source
        self.image: bytes | None = JPEG
        self.image_requests: list[tuple[int | None, int | None]] = []
        self.stream_error: Exception | None = None

    async def stream_source(self) -> str | None:
        """Return the stream URL (or fail like an unreachable camera)."""
        if self.stream_error is not None:
            raise self.stream_error
        return self.source

    async def async_camera_image(
        self, width: int | None = None, height: int | None = None
    ) -> bytes | None:
        """Return a still image."""
        self.image_requests.append((width, height))
        return self.image


@pytest.fixture
def stream_source() -> str | None:
    """Return the test camera's stream source (overridden by stream tests)."""
    return "rtsp://127.0.0.1:1/unused"


@pytest.fixture
async def fake_camera(hass: HomeAssistant, stream_source: str | None) -> FakeCamera:
    """Set up the test camera, a motion binary_sensor and a doorbell event entity."""
    camera = FakeCamera(CAMERA_ID, stream_source)
    setup_test_component_platform(hass, "camera", [camera])
    assert await async_setup_component(hass, "camera", {"camera": {"platform": "test"}})
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    hass.states.async_set(DOORBELL_ID, "unknown", {"device_class": "doorbell"})
    await hass.async_block_till_done()
    return camera


@pytest.fixture
def with_doorbell() -> bool:
    """Return whether the entry has a doorbell."""
    return True


@pytest.fixture
def entry_options() -> dict[str, Any]:
    """Return the entry's options."""
    return dict(DEFAULT_OPTIONS)


@pytest.fixture
def known_source() -> dict[str, Any] | None:
    """Return the stored camera format (skips the startup probe), or None to probe."""
    return {
        "width": 1920,
        "height": 1080,
        "fps": 30.0,
        "audio_codec": "aac-lc",
        "audio_sample_rate": 32000,
        "audio_channels": 1,
    }


@pytest.fixture
def mock_config_entry(
    hass: HomeAssistant,
    hass_storage: dict[str, Any],
    with_doorbell: bool,
    entry_options: dict[str, Any],
    known_source: dict[str, Any] | None,
) -> MockConfigEntry:
    """Return an hksv entry bound to 127.0.0.1 on a free port."""
    # The archive writes under the first media dir: keep it in this test's config dir.
    hass.config.media_dirs = {"local": hass.config.path("media")}
    data = {
        CONF_CAMERA: CAMERA_ID,
        CONF_MOTION: MOTION_ID,
        CONF_PORT: free_port(),
        CONF_ADDRESS: "127.0.0.1",
    }
    if with_doorbell:
        data[CONF_DOORBELL] = DOORBELL_ID
    entry = MockConfigEntry(
        domain=DOMAIN,
        title="Front door",
        data=data,
        options=entry_options,
        unique_id="front-door-camera",
        entry_id="01HKSVTESTENTRY",
    )
    if known_source is not None:
        hass_storage[f"{DOMAIN}.{entry.entry_id}"] = {
            "version": 1,
            "key": f"{DOMAIN}.{entry.entry_id}",
            "data": {"source": known_source},
        }
    entry.add_to_hass(hass)
    return entry


@pytest.fixture
async def init_integration(
    hass: HomeAssistant,
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: FakeCamera,
    mock_config_entry: MockConfigEntry,
) -> AsyncGenerator[MockConfigEntry]:
    """Set up hksv with a real HAP server on 127.0.0.1; unload it afterwards."""
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    yield mock_config_entry
    if mock_config_entry.state is ConfigEntryState.LOADED:
        await hass.config_entries.async_unload(mock_config_entry.entry_id)
        await hass.async_block_till_done()


@pytest.fixture
def session_keys() -> Generator[None]:
    """Let controllers capture their pair-verify secret (for HDS keys)."""
    with capture_session_keys():
        yield


@pytest.fixture
async def hub(
    hass: HomeAssistant, init_integration: MockConfigEntry, session_keys: None
) -> AsyncGenerator[HubController]:
    """Return a home hub (aiohomekit) paired with the accessory as admin."""
    bridge = init_integration.runtime_data
    controller = HubController(bridge.port)
    await controller.pair(bridge.setup_code)
    yield controller
    await controller.close()
