"""Where an entry keeps its state: the camera state (a private Store) and HAP-python's file."""

from __future__ import annotations

import os
import stat
from typing import Final

from homeassistant.core import HomeAssistant

from .const import DOMAIN

STORAGE_VERSION: Final = 1
# Changes within this many seconds of each other are written once.
SAVE_DELAY: Final = 2.0


def persist_file_path(hass: HomeAssistant, entry_id: str) -> str:
    """Return the HAP-python state file (pairings and keys) of an entry."""
    return hass.config.path(".storage", f"{DOMAIN}.{entry_id}.state")


def storage_key(entry_id: str) -> str:
    """Return the Store key of an entry's camera state."""
    return f"{DOMAIN}.{entry_id}"


def readable_by_others(path: str) -> bool:
    """Return True if ``path`` exists with group or world permissions (executor)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o077 != 0
    except FileNotFoundError:
        return False
