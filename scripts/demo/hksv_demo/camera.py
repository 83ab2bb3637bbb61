"""The demo camera: the looping clip served by scripts/develop."""

from __future__ import annotations

from homeassistant.components.camera import Camera, CameraEntityFeature
from homeassistant.core import HomeAssistant
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.helpers.typing import ConfigType, DiscoveryInfoType

from . import DOMAIN


async def async_setup_platform(
    hass: HomeAssistant,
    config: ConfigType,
    async_add_entities: AddEntitiesCallback,
    discovery_info: DiscoveryInfoType | None = None,
) -> None:
    """Add the camera."""
    async_add_entities([DemoCamera(hass.data[DOMAIN])])


class DemoCamera(Camera):
    """A camera whose stream is the paced demo clip."""

    _attr_name = "hksv demo camera"
    _attr_unique_id = "hksv_demo_camera"
    _attr_supported_features = CameraEntityFeature.STREAM

    def __init__(self, source: str) -> None:
        """Create the camera."""
        super().__init__()
        self._source = source

    async def stream_source(self) -> str:
        """Return the stream URL."""
        return self._source

    async def async_camera_image(
        self, width: int | None = None, height: int | None = None
    ) -> bytes | None:
        """Return a still from the stream's last keyframe."""
        stream = await self.async_create_stream()
        if stream is None:
            return None
        return await stream.async_get_image(width, height)
