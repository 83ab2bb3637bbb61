"""Form fields the config, options and repair flows share: entity pickers, numbers, address."""

from __future__ import annotations

from typing import Any, Final

from homeassistant.components import network
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant
from homeassistant.helpers.selector import (
    EntitySelector,
    EntitySelectorConfig,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
    TextSelector,
)
import voluptuous as vol

from .const import (
    ADDRESS_ALL,
    CONF_ADDRESS,
    CONF_CAMERA,
    CONF_DOORBELL,
    CONF_MOTION,
    MAX_ARCHIVE_DAYS,
    MAX_ARCHIVE_MAX_GB,
    MAX_ARCHIVE_MIN_FREE_GB,
    MIN_ARCHIVE_DAYS,
    MIN_ARCHIVE_MAX_GB,
    MIN_ARCHIVE_MIN_FREE_GB,
    MOTION_DEVICE_CLASSES,
    OPT_ARCHIVE_DAYS,
    OPT_ARCHIVE_MAX_GB,
    OPT_ARCHIVE_MIN_FREE_GB,
)

CAMERA_SELECTOR: Final = EntitySelector(EntitySelectorConfig(filter=[{"domain": "camera"}]))
# The same rules for both kinds: any event entity (a doorbell's, or a button's) and any
# binary sensor that turns on while pressed; binary sensors have no doorbell device class.
DOORBELL_FILTERS: Final[Any] = [{"domain": "event"}, {"domain": "binary_sensor"}]
DOORBELL_SELECTOR: Final = EntitySelector(EntitySelectorConfig(filter=DOORBELL_FILTERS))
MOTION_FILTERS: Final[Any] = [
    {"domain": "binary_sensor", "device_class": list(MOTION_DEVICE_CLASSES)},
    {"domain": "event"},
]
MOTION_SELECTOR: Final = EntitySelector(EntitySelectorConfig(filter=MOTION_FILTERS))
PORT_SELECTOR: Final = NumberSelector(
    NumberSelectorConfig(min=1024, max=65535, step=1, mode=NumberSelectorMode.BOX)
)
# Since HA 2026.6 `voluptuous` is probatio at runtime; schemas are typed loosely (Any) so the
# same code type-checks against either package.
EMPTY_SCHEMA: Final[Any] = vol.Schema({})
# Archive retention (docs/local-clips.md): minimum, maximum, step and unit of each number.
ARCHIVE_FIELDS: Final[dict[str, tuple[float, float, float, str]]] = {
    OPT_ARCHIVE_DAYS: (MIN_ARCHIVE_DAYS, MAX_ARCHIVE_DAYS, 1, "d"),
    OPT_ARCHIVE_MAX_GB: (MIN_ARCHIVE_MAX_GB, MAX_ARCHIVE_MAX_GB, 0.5, "GiB"),
    OPT_ARCHIVE_MIN_FREE_GB: (MIN_ARCHIVE_MIN_FREE_GB, MAX_ARCHIVE_MIN_FREE_GB, 0.5, "GiB"),
}


def archive_selector(option: str) -> NumberSelector:
    """Return the number field of an archive retention option (options form and repair)."""
    minimum, maximum, step, unit = ARCHIVE_FIELDS[option]
    return NumberSelector(
        NumberSelectorConfig(
            min=minimum,
            max=maximum,
            step=step,
            unit_of_measurement=unit,
            mode=NumberSelectorMode.BOX,
        )
    )


def entities_schema(defaults: dict[str, Any]) -> Any:
    """Return the camera/motion/doorbell/name form."""
    doorbell = defaults.get(CONF_DOORBELL)
    return vol.Schema(
        {
            vol.Optional(
                CONF_NAME, description={"suggested_value": defaults.get(CONF_NAME)}
            ): TextSelector(),
            vol.Required(CONF_CAMERA, default=defaults.get(CONF_CAMERA, vol.UNDEFINED)): (
                CAMERA_SELECTOR
            ),
            vol.Required(CONF_MOTION, default=defaults.get(CONF_MOTION, vol.UNDEFINED)): (
                MOTION_SELECTOR
            ),
            vol.Optional(
                CONF_DOORBELL, description={"suggested_value": doorbell} if doorbell else None
            ): DOORBELL_SELECTOR,
        }
    )


async def async_address_schema(hass: HomeAssistant, current: str) -> Any:
    """Return the advanced listen-address field: every interface or one address HA knows."""
    addresses: list[str] = []
    for adapter in await network.async_get_adapters(hass):
        addresses += [ip["address"] for ip in adapter["ipv4"]]
        # Link-local IPv6 needs a zone to bind; hubs reach the accessory on other addresses.
        addresses += [ip["address"] for ip in adapter["ipv6"] if not ip["scope_id"]]
    if current != ADDRESS_ALL and current not in addresses:
        addresses.append(current)  # keep a configured address selectable while it is down
    return vol.Schema(
        {
            vol.Required(CONF_ADDRESS, default=current): SelectSelector(
                SelectSelectorConfig(
                    options=[ADDRESS_ALL, *dict.fromkeys(addresses)],
                    mode=SelectSelectorMode.DROPDOWN,
                    translation_key=CONF_ADDRESS,
                )
            )
        }
    )
