"""How the driver reads and writes one characteristic, and the value codecs services share.

Every characteristic a controller may write goes through a policy (docs/architecture.md
"HAP side"): admin-only writes, validation before anything is stored, and per-connection
reads where HAP needs them (live view's SetupEndpoints).
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .definitions import HapStatus, HapStatusError

if TYPE_CHECKING:
    from .driver import ClientAddress, HapClient


@dataclass(slots=True)
class Policy:
    """Read/write behaviour of one characteristic, for HksvDriver."""

    admin_write: bool
    read: Callable[[], Any]
    write: Callable[[Any, HapClient], Any]
    read_as: Callable[[ClientAddress | None], Any] | None = None  # per-connection reads


def uint8_bool(value: Any) -> bool:
    """Return a 0/1 characteristic write as bool, refusing anything else."""
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, f"{value!r} is not 0 or 1")


def b64(data: bytes) -> str:
    """Return base64 text."""
    return base64.b64encode(data).decode()
