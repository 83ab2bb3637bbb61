"""Snapshots over HAP ``/resource``: the request checks, the camera-state rules, a bounded wait."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import json
import logging
from typing import Any, Final, TypeIs

from pyhap.hap_handler import HAPResponse

from .camera_state import CameraState, snapshot_refusal
from .definitions import HapStatus

_LOGGER = logging.getLogger(__name__)

# HAP-NodeJS gives up on a snapshot after 25 s; hubs ask again every ~10 s, so a shorter wait
# frees the connection sooner without losing anything.
SNAPSHOT_TIMEOUT: Final = 10.0
MAX_SNAPSHOT_EDGE: Final = 4096


class SnapshotUnavailable(Exception):
    """The camera could not provide a picture."""


async def answer_snapshot(
    request: dict[str, Any],
    response: HAPResponse,
    state: CameraState,
    take: Callable[[int, int], Awaitable[bytes]],
    name: str,
) -> bytes:
    """Serve a snapshot, or set a 207 HAP status on ``response`` (§6.1)."""
    reason = request.get("reason")
    if reason is not None and (not isinstance(reason, int) or isinstance(reason, bool)):
        return _refuse(response, HapStatus.INVALID_VALUE_IN_REQUEST)
    width = request.get("image-width")
    height = request.get("image-height")
    if not (_edge(width) and _edge(height)):
        return _refuse(response, HapStatus.INVALID_VALUE_IN_REQUEST)
    refusal = snapshot_refusal(state, reason)
    if refusal is not None:
        return _refuse(response, refusal)
    try:
        async with asyncio.timeout(SNAPSHOT_TIMEOUT):
            image = await take(width, height)
    except TimeoutError:
        _LOGGER.warning("%s: snapshot timed out", name)
        return _refuse(response, HapStatus.OPERATION_TIMED_OUT)
    except SnapshotUnavailable as err:
        _LOGGER.warning("%s: snapshot failed: %s", name, err)
        return _refuse(response, HapStatus.SERVICE_COMMUNICATION_FAILURE)
    if not image:
        return _refuse(response, HapStatus.SERVICE_COMMUNICATION_FAILURE)
    return image


def _edge(value: object) -> TypeIs[int]:
    """Return True for an image edge a controller may ask for."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_SNAPSHOT_EDGE


def _refuse(response: HAPResponse, status: HapStatus) -> bytes:
    """Turn a pending image response into HTTP 207 with a HAP status."""
    response.status_code = 207
    response.reason = "Multi-Status"
    response.headers = [("Content-Type", "application/hap+json")]
    return json.dumps({"status": int(status)}).encode()
