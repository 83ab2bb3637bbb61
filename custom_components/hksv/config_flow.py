"""Config, options and reconfigure flows for HomeKit Secure Video."""

from __future__ import annotations

import asyncio
import socket
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components import network
from homeassistant.components.camera import async_get_stream_source
from homeassistant.config_entries import (
    ConfigEntry,
    ConfigFlow,
    ConfigFlowResult,
    OptionsFlowWithReload,
)
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import AbortFlow, section
from homeassistant.exceptions import HomeAssistantError
from homeassistant.helpers import entity_registry as er
from homeassistant.helpers.entityfilter import (
    CONF_EXCLUDE_DOMAINS,
    CONF_EXCLUDE_ENTITIES,
    CONF_EXCLUDE_ENTITY_GLOBS,
    CONF_INCLUDE_DOMAINS,
    CONF_INCLUDE_ENTITIES,
    CONF_INCLUDE_ENTITY_GLOBS,
    convert_filter,
)
from homeassistant.helpers.selector import (
    BooleanSelector,
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
    CONF_PORT,
    DEFAULT_OPTIONS,
    DOMAIN,
    LOGGER,
    MAX_ARCHIVE_DAYS,
    MAX_ARCHIVE_MAX_GB,
    MAX_ARCHIVE_MIN_FREE_GB,
    MAX_BITRATE,
    MAX_LIVE_BITRATE,
    MAX_LIVE_SLOTS,
    MAX_PREBUFFER,
    MIN_ARCHIVE_DAYS,
    MIN_ARCHIVE_MAX_GB,
    MIN_ARCHIVE_MIN_FREE_GB,
    MIN_BITRATE,
    MIN_LIVE_BITRATE,
    MIN_LIVE_SLOTS,
    MIN_PREBUFFER,
    MOTION_DEVICE_CLASSES,
    OPT_ARCHIVE,
    OPT_ARCHIVE_DAYS,
    OPT_ARCHIVE_MAX_GB,
    OPT_ARCHIVE_MIN_FREE_GB,
    OPT_AUDIO,
    OPT_LIVE_DIRECT,
    OPT_LIVE_MAX_BITRATE,
    OPT_LIVE_MODE,
    OPT_LIVE_SHORT_PARTS,
    OPT_LIVE_SLOTS,
    OPT_MAX_BITRATE,
    OPT_MAX_RESOLUTION,
    OPT_PREBUFFER,
    OPT_VIDEO_MODE,
    PORT_RANGE_END,
    PORT_RANGE_START,
    RESOLUTION_HEIGHT,
    VIDEO_MODES,
)

STREAM_SOURCE_TIMEOUT: Final = 10.0
# The collapsed options section for network settings most installations leave alone.
SECTION_ADVANCED: Final = "advanced"

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
OPTIONS_SCHEMA: Final[Any] = vol.Schema(
    {
        vol.Required(OPT_MAX_RESOLUTION): SelectSelector(
            SelectSelectorConfig(
                options=list(RESOLUTION_HEIGHT),
                mode=SelectSelectorMode.DROPDOWN,
                translation_key=OPT_MAX_RESOLUTION,
            )
        ),
        vol.Required(OPT_MAX_BITRATE): NumberSelector(
            NumberSelectorConfig(
                min=MIN_BITRATE,
                max=MAX_BITRATE,
                step=100,
                unit_of_measurement="kbit/s",
                mode=NumberSelectorMode.BOX,
            )
        ),
        vol.Required(OPT_AUDIO): BooleanSelector(),
        vol.Required(OPT_VIDEO_MODE): SelectSelector(
            SelectSelectorConfig(
                options=list(VIDEO_MODES),
                mode=SelectSelectorMode.DROPDOWN,
                translation_key=OPT_VIDEO_MODE,
            )
        ),
        vol.Required(OPT_PREBUFFER): NumberSelector(
            NumberSelectorConfig(
                min=MIN_PREBUFFER,
                max=MAX_PREBUFFER,
                step=1,
                unit_of_measurement="s",
                mode=NumberSelectorMode.SLIDER,
            )
        ),
        # Live view (docs/live-view.md): viewers at once, copy/transcode, per-viewer cap;
        # optional so a form without them keeps the defaults.
        vol.Optional(OPT_LIVE_SLOTS): NumberSelector(
            NumberSelectorConfig(
                min=MIN_LIVE_SLOTS, max=MAX_LIVE_SLOTS, step=1, mode=NumberSelectorMode.SLIDER
            )
        ),
        vol.Optional(OPT_LIVE_MODE): SelectSelector(
            SelectSelectorConfig(
                options=list(VIDEO_MODES),
                mode=SelectSelectorMode.DROPDOWN,
                translation_key=OPT_LIVE_MODE,
            )
        ),
        vol.Optional(OPT_LIVE_MAX_BITRATE): NumberSelector(
            NumberSelectorConfig(
                min=MIN_LIVE_BITRATE,
                max=MAX_LIVE_BITRATE,
                step=100,
                unit_of_measurement="kbit/s",
                mode=NumberSelectorMode.BOX,
            )
        ),
        vol.Optional(OPT_LIVE_SHORT_PARTS): BooleanSelector(),
        vol.Optional(OPT_LIVE_DIRECT): BooleanSelector(),
        # Local archive (docs/local-clips.md): optional so a form without them keeps defaults.
        vol.Optional(OPT_ARCHIVE): BooleanSelector(),
        vol.Optional(OPT_ARCHIVE_DAYS): NumberSelector(
            NumberSelectorConfig(
                min=MIN_ARCHIVE_DAYS,
                max=MAX_ARCHIVE_DAYS,
                step=1,
                unit_of_measurement="d",
                mode=NumberSelectorMode.BOX,
            )
        ),
        vol.Optional(OPT_ARCHIVE_MAX_GB): NumberSelector(
            NumberSelectorConfig(
                min=MIN_ARCHIVE_MAX_GB,
                max=MAX_ARCHIVE_MAX_GB,
                step=0.5,
                unit_of_measurement="GiB",
                mode=NumberSelectorMode.BOX,
            )
        ),
        vol.Optional(OPT_ARCHIVE_MIN_FREE_GB): NumberSelector(
            NumberSelectorConfig(
                min=MIN_ARCHIVE_MIN_FREE_GB,
                max=MAX_ARCHIVE_MIN_FREE_GB,
                step=0.5,
                unit_of_measurement="GiB",
                mode=NumberSelectorMode.BOX,
            )
        ),
    }
)


def _entities_schema(defaults: dict[str, Any]) -> Any:
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


async def _async_address_schema(hass: HomeAssistant, current: str) -> Any:
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


class CameraNotFound(HomeAssistantError):
    """The selected camera does not exist."""


class NoStreamSource(HomeAssistantError):
    """The camera has no stream to record from."""


class InvalidEntity(HomeAssistantError):
    """A selected entity is missing or of the wrong kind."""

    def __init__(self, field: str) -> None:
        """Name the form field at fault."""
        super().__init__(field)
        self.field = field


async def _validate_entities(hass: HomeAssistant, data: dict[str, Any]) -> None:
    """Check the camera has a stream and the sensors exist with the right domains."""
    camera_id = data[CONF_CAMERA]
    if not camera_id.startswith("camera.") or hass.states.get(camera_id) is None:
        raise CameraNotFound
    try:
        async with asyncio.timeout(STREAM_SOURCE_TIMEOUT):
            source = await async_get_stream_source(hass, camera_id)
    except (HomeAssistantError, TimeoutError) as err:
        raise NoStreamSource from err
    if not source:
        raise NoStreamSource
    for field, filters in ((CONF_MOTION, MOTION_FILTERS), (CONF_DOORBELL, DOORBELL_FILTERS)):
        entity_id = data.get(field)
        if entity_id is None and field == CONF_DOORBELL:
            continue
        if not isinstance(entity_id, str) or not _matches(hass, entity_id, filters):
            raise InvalidEntity(field)


def _matches(hass: HomeAssistant, entity_id: str, filters: list[dict[str, Any]]) -> bool:
    """Return True if the entity exists and passes one of the selector's filters."""
    state = hass.states.get(entity_id)
    if state is None:
        return False
    device_class = state.attributes.get("device_class")
    return any(
        state.domain == rule["domain"]
        and ("device_class" not in rule or device_class in rule["device_class"])
        for rule in filters
    )


def _camera_name(hass: HomeAssistant, camera_id: str) -> str:
    """Return the camera's friendly name (the accessory's default name)."""
    state = hass.states.get(camera_id)
    return state.name if state is not None else camera_id


def _homekit_bridge_exposing(hass: HomeAssistant, camera_id: str) -> str | None:
    """Return the title of a HomeKit Bridge entry that already exposes the camera, if any."""
    for entry in hass.config_entries.async_entries("homekit"):
        if entry.disabled_by is not None:
            continue
        options = entry.options.get("filter") or {}
        entity_filter = convert_filter(
            {
                CONF_INCLUDE_DOMAINS: options.get(CONF_INCLUDE_DOMAINS, []),
                CONF_INCLUDE_ENTITIES: options.get(CONF_INCLUDE_ENTITIES, []),
                CONF_EXCLUDE_DOMAINS: options.get(CONF_EXCLUDE_DOMAINS, []),
                CONF_EXCLUDE_ENTITIES: options.get(CONF_EXCLUDE_ENTITIES, []),
                CONF_INCLUDE_ENTITY_GLOBS: [],
                CONF_EXCLUDE_ENTITY_GLOBS: [],
            }
        )
        # An empty filter means HomeKit Bridge exposes every supported entity.
        if entity_filter.empty_filter or entity_filter(camera_id):
            return entry.title
    return None


def _camera_unique_id(hass: HomeAssistant, camera_id: str) -> str:
    """Return the camera's registry id (stable across renames), else its entity id."""
    entry = er.async_get(hass).async_get(camera_id)
    return entry.id if entry else camera_id


def _port_is_free(port: int) -> bool:
    """Return True if ``port`` can be bound (run in an executor)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("", port))
        except OSError:
            return False
    return True


async def async_find_port(hass: HomeAssistant, also_skip: set[int] | None = None) -> int:
    """Return the first free port of hksv's range not used by an entry (nor in also_skip)."""
    used = {e.data.get(CONF_PORT) for e in hass.config_entries.async_entries(DOMAIN)}
    used |= also_skip or set()
    for port in range(PORT_RANGE_START, PORT_RANGE_END + 1):
        if port not in used and await hass.async_add_executor_job(_port_is_free, port):
            return port
    raise AbortFlow("no_free_port")


class HksvConfigFlow(ConfigFlow, domain=DOMAIN):
    """Add a camera as a HomeKit Secure Video accessory."""

    VERSION = 1

    _pending: dict[str, Any] | None = None

    async def async_step_user(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Pick the camera, motion source, optional doorbell and a name."""
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = await self._async_check(user_input)
            if not errors:
                await self.async_set_unique_id(
                    _camera_unique_id(self.hass, user_input[CONF_CAMERA])
                )
                self._abort_if_unique_id_configured()
                self._pending = user_input
                if _homekit_bridge_exposing(self.hass, user_input[CONF_CAMERA]):
                    return await self.async_step_exposed_by_homekit()
                return await self._async_create(user_input)
        return self.async_show_form(
            step_id="user", data_schema=_entities_schema(user_input or {}), errors=errors
        )

    async def async_step_exposed_by_homekit(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Warn that HomeKit Bridge already shows this camera in the Home app."""
        if TYPE_CHECKING:
            assert self._pending is not None
        if user_input is not None:
            return await self._async_create(self._pending)
        camera_id = self._pending[CONF_CAMERA]
        return self.async_show_form(
            step_id="exposed_by_homekit",
            data_schema=EMPTY_SCHEMA,
            description_placeholders={
                "camera": _camera_name(self.hass, camera_id),
                "bridge": _homekit_bridge_exposing(self.hass, camera_id) or "HomeKit Bridge",
            },
        )

    async def _async_create(self, user_input: dict[str, Any]) -> ConfigFlowResult:
        """Create the entry on a free port; the name defaults to the camera's."""
        data = {k: v for k, v in user_input.items() if k != CONF_NAME}
        data[CONF_PORT] = await async_find_port(self.hass)
        title = user_input.get(CONF_NAME) or _camera_name(self.hass, user_input[CONF_CAMERA])
        return self.async_create_entry(title=title, data=data, options=dict(DEFAULT_OPTIONS))

    async def async_step_reconfigure(
        self, user_input: dict[str, Any] | None = None
    ) -> ConfigFlowResult:
        """Change the camera, sensors or name; the pairing and port stay."""
        entry = self._get_reconfigure_entry()
        errors: dict[str, str] = {}
        if user_input is not None:
            errors = await self._async_check(user_input)
            if not errors:
                unique_id = _camera_unique_id(self.hass, user_input[CONF_CAMERA])
                await self.async_set_unique_id(unique_id)
                if unique_id != entry.unique_id:
                    self._abort_if_unique_id_configured()
                data = {k: v for k, v in user_input.items() if k != CONF_NAME}
                data[CONF_PORT] = entry.data[CONF_PORT]
                title = user_input.get(CONF_NAME) or _camera_name(
                    self.hass, user_input[CONF_CAMERA]
                )
                return self.async_update_reload_and_abort(
                    entry, unique_id=unique_id, title=title, data=data
                )
        defaults = {**entry.data, CONF_NAME: entry.title, **(user_input or {})}
        return self.async_show_form(
            step_id="reconfigure", data_schema=_entities_schema(defaults), errors=errors
        )

    async def _async_check(self, user_input: dict[str, Any]) -> dict[str, str]:
        """Validate the form; return errors by field."""
        try:
            await _validate_entities(self.hass, user_input)
        except AbortFlow:
            raise
        except CameraNotFound:
            return {CONF_CAMERA: "camera_not_found"}
        except NoStreamSource:
            return {CONF_CAMERA: "no_stream_source"}
        except InvalidEntity as err:
            return {err.field: "invalid_entity"}
        except Exception:  # noqa: BLE001 - the one catch-all: anything else is a bug to report
            LOGGER.exception("Unexpected error validating %s", user_input)
            return {"base": "unknown"}
        return {}

    @staticmethod
    @callback
    def async_get_options_flow(config_entry: ConfigEntry) -> HksvOptionsFlow:
        """Return the options flow."""
        return HksvOptionsFlow()


class HksvOptionsFlow(OptionsFlowWithReload):
    """Per-camera recording options; saving reloads the accessory (pairing kept)."""

    _port_moved = False

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> ConfigFlowResult:
        """Show and store the recording options."""
        errors: dict[str, str] = {}
        if user_input is not None:
            user_input = dict(user_input)
            port = user_input.pop(CONF_PORT, None)
            if port is not None and (error := await self._async_move_port(int(port))):
                errors[CONF_PORT] = error
            else:
                options = {**DEFAULT_OPTIONS, **user_input}
                # Number selectors hand back floats; store whole kbit/s and seconds.
                options[OPT_MAX_BITRATE] = int(options[OPT_MAX_BITRATE])
                options[OPT_PREBUFFER] = int(options[OPT_PREBUFFER])
                for whole in (OPT_LIVE_SLOTS, OPT_LIVE_MAX_BITRATE, OPT_ARCHIVE_DAYS):
                    options[whole] = int(options[whole])
                for size in (OPT_ARCHIVE_MAX_GB, OPT_ARCHIVE_MIN_FREE_GB):
                    options[size] = float(options[size])
                advanced = options.pop(SECTION_ADVANCED, None)
                if advanced is not None:
                    options.update(advanced)
                elif CONF_ADDRESS in self.config_entry.options:
                    options[CONF_ADDRESS] = self.config_entry.options[CONF_ADDRESS]
                if self._port_moved and options == dict(self.config_entry.options):
                    # HA reloads only for changed options; a new port needs one too.
                    self.hass.config_entries.async_schedule_reload(self.config_entry.entry_id)
                return self.async_create_entry(data=options)
        current = {
            **DEFAULT_OPTIONS,
            **self.config_entry.options,
            CONF_PORT: self.config_entry.data[CONF_PORT],
            **(user_input or {}),
        }
        address = current.pop(CONF_ADDRESS, None) or ADDRESS_ALL
        current.pop(SECTION_ADVANCED, None)
        schema = OPTIONS_SCHEMA.extend(
            {
                vol.Optional(CONF_PORT): PORT_SELECTOR,
                vol.Optional(SECTION_ADVANCED): section(
                    await _async_address_schema(self.hass, address), {"collapsed": True}
                ),
            }
        )
        return self.async_show_form(
            step_id="init",
            data_schema=self.add_suggested_values_to_schema(schema, current),
            errors=errors,
        )

    async def _async_move_port(self, port: int) -> str | None:
        """Give the accessory another HAP port (pairings stay); return an error key or None."""
        entry = self.config_entry
        if port == entry.data[CONF_PORT]:
            return None
        others = self.hass.config_entries.async_entries(DOMAIN)
        if any(e.data.get(CONF_PORT) == port for e in others if e.entry_id != entry.entry_id):
            return "port_used_by_camera"
        if not await self.hass.async_add_executor_job(_port_is_free, port):
            return "port_in_use"
        # The reload that follows the options listens (and announces) on it.
        self.hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_PORT: port})
        self._port_moved = True
        return None
