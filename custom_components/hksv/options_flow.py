"""The options flow: recording, live view, archive and network settings of one camera."""

from __future__ import annotations

from typing import Any, Final

from homeassistant.config_entries import ConfigFlowResult, OptionsFlowWithReload
from homeassistant.data_entry_flow import section
from homeassistant.helpers.selector import (
    BooleanSelector,
    NumberSelector,
    NumberSelectorConfig,
    NumberSelectorMode,
    SelectSelector,
    SelectSelectorConfig,
    SelectSelectorMode,
)
import voluptuous as vol

from .const import (
    ADDRESS_ALL,
    CONF_ADDRESS,
    CONF_PORT,
    DEFAULT_OPTIONS,
    DOMAIN,
    MAX_BITRATE,
    MAX_LIVE_BITRATE,
    MAX_LIVE_SLOTS,
    MAX_PREBUFFER,
    MIN_BITRATE,
    MIN_LIVE_BITRATE,
    MIN_LIVE_SLOTS,
    MIN_PREBUFFER,
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
    RESOLUTION_HEIGHT,
    VIDEO_MODES,
)
from .flow_schemas import PORT_SELECTOR, archive_selector, async_address_schema
from .ports import port_is_free

# The collapsed options section for network settings most installations leave alone.
SECTION_ADVANCED: Final = "advanced"


def _bitrate_field(low: int, high: int) -> NumberSelector:
    """Return a kbit/s box in steps of 100 (recording and live view caps)."""
    return NumberSelector(
        NumberSelectorConfig(
            min=low, max=high, step=100, unit_of_measurement="kbit/s", mode=NumberSelectorMode.BOX
        )
    )


# Typed loosely (Any), as every schema here: voluptuous is probatio at runtime since 2026.6.
OPTIONS_SCHEMA: Final[Any] = vol.Schema(
    {
        vol.Required(OPT_MAX_RESOLUTION): SelectSelector(
            SelectSelectorConfig(
                options=list(RESOLUTION_HEIGHT),
                mode=SelectSelectorMode.DROPDOWN,
                translation_key=OPT_MAX_RESOLUTION,
            )
        ),
        vol.Required(OPT_MAX_BITRATE): _bitrate_field(MIN_BITRATE, MAX_BITRATE),
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
        vol.Optional(OPT_LIVE_MAX_BITRATE): _bitrate_field(MIN_LIVE_BITRATE, MAX_LIVE_BITRATE),
        vol.Optional(OPT_LIVE_SHORT_PARTS): BooleanSelector(),
        vol.Optional(OPT_LIVE_DIRECT): BooleanSelector(),
        # Local archive (docs/local-clips.md): optional so a form without them keeps defaults.
        vol.Optional(OPT_ARCHIVE): BooleanSelector(),
        vol.Optional(OPT_ARCHIVE_DAYS): archive_selector(OPT_ARCHIVE_DAYS),
        vol.Optional(OPT_ARCHIVE_MAX_GB): archive_selector(OPT_ARCHIVE_MAX_GB),
        vol.Optional(OPT_ARCHIVE_MIN_FREE_GB): archive_selector(OPT_ARCHIVE_MIN_FREE_GB),
    }
)


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
                    await async_address_schema(self.hass, address), {"collapsed": True}
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
        if not await self.hass.async_add_executor_job(port_is_free, port):
            return "port_in_use"
        # The reload that follows the options listens (and announces) on it.
        self.hass.config_entries.async_update_entry(entry, data={**entry.data, CONF_PORT: port})
        self._port_moved = True
        return None
