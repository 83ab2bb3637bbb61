"""Waiting for the camera's first keyframe when a hub opens a recording on an empty prebuffer."""

from __future__ import annotations

import asyncio
from typing import Any, Final

from ..hds import DataSendCloseReason, HDSProtocolError
from ..source.prebuffer import Prebuffer

# How long an open with an empty prebuffer waits for the camera's next keyframe (the hub wants
# data within ~5 s).
FIRST_KEYFRAME_TIMEOUT: Final = 4.0


async def async_first_keyframe(prebuffer: Prebuffer) -> None:
    """Wait briefly for the camera's next keyframe (the prebuffer was empty at the open)."""
    if not prebuffer.running:
        await prebuffer.async_start()
    else:
        await prebuffer.async_attach_now()  # e.g. the camera appeared since setup
    arrived = asyncio.Event()

    def on_part(*_part: Any) -> None:
        if prebuffer.has_keyframe:
            arrived.set()

    live = prebuffer.open_live(on_part=on_part)
    try:
        async with asyncio.timeout(FIRST_KEYFRAME_TIMEOUT):
            await arrived.wait()
    except TimeoutError as err:
        raise HDSProtocolError(
            DataSendCloseReason.UNEXPECTED_FAILURE, no_video_message(prebuffer)
        ) from err
    finally:
        live.unsubscribe()


def no_video_message(prebuffer: Prebuffer) -> str:
    """Say why there is no video, with Home Assistant's worker error when there is one."""
    error = prebuffer.worker_error
    if error is None:
        return "the camera stream has no video yet"
    return f"the camera stream has no video: Home Assistant's stream worker failed: {error}"
