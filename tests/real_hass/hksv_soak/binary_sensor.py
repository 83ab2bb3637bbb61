"""The soak motion sensors: switched by the harness over the control socket."""

from __future__ import annotations

from homeassistant.components.binary_sensor import BinarySensorDeviceClass, BinarySensorEntity
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
    """Add one motion sensor per camera."""
    helper = hass.data[DOMAIN]
    sensors = [SoakMotion(index) for index in range(len(helper.cameras))]
    helper.motion = sensors
    async_add_entities(sensors)


class SoakMotion(BinarySensorEntity):
    """Motion on camera ``index``, on when the harness says so."""

    _attr_device_class = BinarySensorDeviceClass.MOTION
    _attr_should_poll = False
    _attr_is_on = False

    def __init__(self, index: int) -> None:
        """Create the sensor of camera ``index``."""
        self._attr_name = f"Soak {index} motion"
        self._attr_unique_id = f"hksv_soak_motion_{index}"
        self.entity_id = f"binary_sensor.soak_{index}_motion"

    def set_motion(self, on: bool) -> None:
        """Switch motion and write the state."""
        self._attr_is_on = on
        self.async_write_ha_state()
