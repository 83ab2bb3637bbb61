"""Fix flows for hksv's repairs: move the accessory to a free port, or switch to Auto."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from homeassistant.components.repairs import RepairsFlow
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import AbortFlow
import voluptuous as vol

from .archive.manager import FIX_ARCHIVE_FREE_SPACE
from .const import (
    CONF_PORT,
    DEFAULT_ARCHIVE_MIN_FREE_GB,
    DOMAIN,
    OPT_ARCHIVE_MIN_FREE_GB,
    OPT_VIDEO_MODE,
    VIDEO_MODE_AUTO,
)
from .flow_schemas import EMPTY_SCHEMA, archive_selector
from .issues import FIX_VIDEO_MODE_AUTO, async_clear_copy_problems
from .ports import async_find_port

if TYPE_CHECKING:
    from homeassistant.components.repairs.models import RepairsFlowResult as FlowResult


async def async_create_fix_flow(
    hass: HomeAssistant, issue_id: str, data: dict[str, str | int | float | None] | None
) -> RepairsFlow:
    """Return the fix flow of an hksv issue."""
    entry_id = str((data or {}).get("entry_id"))
    if (data or {}).get("fix") == FIX_ARCHIVE_FREE_SPACE:
        return ArchiveFreeSpaceFlow()
    if (data or {}).get("fix") == FIX_VIDEO_MODE_AUTO:
        return VideoModeAutoFlow(entry_id)
    return MovePortFlow(entry_id)


class _EntryFlow(RepairsFlow):
    """A fix flow about one config entry."""

    def __init__(self, entry_id: str) -> None:
        """Remember the entry."""
        self._entry_id = entry_id

    def _entry(self) -> ConfigEntry[Any]:
        """Return the entry, or abort if it was removed meanwhile."""
        entry = self.hass.config_entries.async_get_entry(self._entry_id)
        if entry is None or entry.domain != DOMAIN:
            raise AbortFlow("entry_removed")
        return entry


class MovePortFlow(_EntryFlow):
    """Move the accessory to a free port; pairings are kept and hubs follow through mDNS."""

    _new_port: int | None = None

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Propose a free port."""
        return await self.async_step_confirm()

    async def async_step_confirm(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Move on confirmation."""
        entry = self._entry()
        if self._new_port is None:
            self._new_port = await async_find_port(self.hass, also_skip={entry.data[CONF_PORT]})
        if user_input is not None:
            self.hass.config_entries.async_update_entry(
                entry, data={**entry.data, CONF_PORT: self._new_port}
            )
            self.hass.config_entries.async_schedule_reload(entry.entry_id)
            return self.async_create_entry(data={})
        return self.async_show_form(
            step_id="confirm",
            data_schema=EMPTY_SCHEMA,
            description_placeholders={
                "name": entry.title,
                "port": str(entry.data[CONF_PORT]),
                "new_port": str(self._new_port),
            },
        )


class VideoModeAutoFlow(_EntryFlow):
    """Switch a copy-only camera to Auto: re-encode the recordings that do not fit."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Ask first."""
        return await self.async_step_confirm()

    async def async_step_confirm(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Switch on confirmation."""
        entry = self._entry()
        if user_input is not None:
            self.hass.config_entries.async_update_entry(
                entry, options={**entry.options, OPT_VIDEO_MODE: VIDEO_MODE_AUTO}
            )
            async_clear_copy_problems(self.hass, entry.entry_id)
            self.hass.config_entries.async_schedule_reload(entry.entry_id)
            return self.async_create_entry(data={})
        return self.async_show_form(
            step_id="confirm",
            data_schema=EMPTY_SCHEMA,
            description_placeholders={"name": entry.title},
        )


class ArchiveFreeSpaceFlow(RepairsFlow):
    """Lower the free space the archive keeps, for every camera (the largest value counts)."""

    async def async_step_init(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Ask for the new minimum."""
        return await self.async_step_confirm()

    async def async_step_confirm(self, user_input: dict[str, Any] | None = None) -> FlowResult:
        """Store it in every camera's options and reload them (the repair clears itself)."""
        entries = self.hass.config_entries.async_entries(DOMAIN)
        if user_input is not None:
            minimum = float(user_input[OPT_ARCHIVE_MIN_FREE_GB])
            for entry in entries:
                self.hass.config_entries.async_update_entry(
                    entry, options={**entry.options, OPT_ARCHIVE_MIN_FREE_GB: minimum}
                )
                self.hass.config_entries.async_schedule_reload(entry.entry_id)
            return self.async_create_entry(data={})
        current = max(
            (
                float(e.options.get(OPT_ARCHIVE_MIN_FREE_GB, DEFAULT_ARCHIVE_MIN_FREE_GB))
                for e in entries
            ),
            default=DEFAULT_ARCHIVE_MIN_FREE_GB,
        )
        # Typed loosely, as in flow_schemas.py: voluptuous is probatio at runtime since 2026.6.
        schema: Any = vol.Schema(
            {
                vol.Required(
                    OPT_ARCHIVE_MIN_FREE_GB, default=max(current / 2, 0.5)
                ): archive_selector(OPT_ARCHIVE_MIN_FREE_GB)
            }
        )
        return self.async_show_form(
            step_id="confirm",
            data_schema=schema,
            description_placeholders={"minimum": f"{current:g}"},
        )
