"""HAP ports: which port of hksv's range a new or moved accessory gets."""

from __future__ import annotations

import socket

from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import AbortFlow

from .const import CONF_PORT, DOMAIN, PORT_RANGE_END, PORT_RANGE_START


def port_is_free(port: int) -> bool:
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
        if port not in used and await hass.async_add_executor_job(port_is_free, port):
            return port
    raise AbortFlow("no_free_port")
