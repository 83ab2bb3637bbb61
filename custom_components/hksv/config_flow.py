"""Config and reconfigure flows for HomeKit Secure Video (the options flow: options_flow.py)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Final

from homeassistant.components.camera import async_get_stream_source
from homeassistant.config_entries import ConfigEntry, ConfigFlow, ConfigFlowResult
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant, callback
from homeassistant.data_entry_flow import AbortFlow
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

from .const import (
    CONF_CAMERA,
    CONF_DOORBELL,
    CONF_MOTION,
    CONF_PORT,
    DEFAULT_OPTIONS,
    DOMAIN,
    LOGGER,
)
from .flow_schemas import DOORBELL_FILTERS, EMPTY_SCHEMA, MOTION_FILTERS, entities_schema
from .options_flow import HksvOptionsFlow
from .ports import async_find_port

STREAM_SOURCE_TIMEOUT: Final = 10.0


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
            step_id="user", data_schema=entities_schema(user_input or {}), errors=errors
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
            step_id="reconfigure", data_schema=entities_schema(defaults), errors=errors
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
