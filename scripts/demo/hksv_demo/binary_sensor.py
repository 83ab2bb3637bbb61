"""The demo motion sensor: motion for 15 s every minute."""

from __future__ import annotations

from datetime import datetime, timedelta

from homeassistant.components.binary_sensor import BinarySensorDeviceClass, BinarySensorEntity
from homeassistant.core import HomeAssistant, callback
from homeassistant.helpers.entity_platform import AddEntitiesCallback
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.helpers.typing import ConfigType, DiscoveryInfoType
from homeassistant.util import dt as dt_util

PERIOD = timedelta(seconds=60)
ACTIVE = timedelta(seconds=15)


async def async_setup_platform(
    hass: HomeAssistant,
    config: ConfigType,
    async_add_entities: AddEntitiesCallback,
    discovery_info: DiscoveryInfoType | None = None,
) -> None:
    """Add the motion sensor."""
    async_add_entities([DemoMotion()])


class DemoMotion(BinarySensorEntity):
    """Motion that comes and goes, to exercise recordings."""

    _attr_name = "hksv demo motion"
    _attr_unique_id = "hksv_demo_motion"
    _attr_device_class = BinarySensorDeviceClass.MOTION
    _attr_should_poll = False
    _attr_is_on = False

    async def async_added_to_hass(self) -> None:
        """Tick every few seconds."""
        self._started = dt_util.utcnow()
        self.async_on_remove(async_track_time_interval(self.hass, self._tick, timedelta(seconds=5)))

    @callback
    def _tick(self, now: datetime) -> None:
        """On during the first ACTIVE of every PERIOD."""
        on = (now - self._started) % PERIOD < ACTIVE
        if on != self._attr_is_on:
            self._attr_is_on = on
            self.async_write_ha_state()
