"""The soak cameras: each streams one of the harness's feeds."""

from __future__ import annotations

from typing import Any

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
    """Add one camera per configured feed."""
    cameras: list[dict[str, Any]] = hass.data[DOMAIN].cameras
    async_add_entities([SoakCamera(index, camera["url"]) for index, camera in enumerate(cameras)])


class SoakCamera(Camera):
    """A camera whose stream is a harness feed (paced, joined mid-GOP)."""

    _attr_supported_features = CameraEntityFeature.STREAM

    def __init__(self, index: int, url: str) -> None:
        """Create camera ``index``."""
        super().__init__()
        self._url = url
        self._attr_name = f"Soak {index}"
        self._attr_unique_id = f"hksv_soak_camera_{index}"
        self.entity_id = f"camera.soak_{index}"

    async def stream_source(self) -> str:
        """Return the feed's URL."""
        return self._url

    async def async_camera_image(
        self, width: int | None = None, height: int | None = None
    ) -> bytes | None:
        """No stills: the soak does not ask for snapshots."""
        return None
