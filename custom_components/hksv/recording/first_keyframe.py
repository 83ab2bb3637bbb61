"""Waiting for the camera's next keyframe when a hub opens a recording with nothing to send.

Either the prebuffer is empty (the stream is starting), or what it holds is stale: the camera
has sent nothing for a while, and minutes-old pictures must not reach the hub as the moments
before the event.
"""

from __future__ import annotations

import asyncio
from typing import Final

from ..hds import DataSendCloseReason, HDSProtocolError
from ..source.part import MediaPart
from ..source.prebuffer import Prebuffer

# How long an open with nothing to send waits for the camera's next keyframe (the hub wants
# data within ~5 s).
FIRST_KEYFRAME_TIMEOUT: Final = 4.0

type KeyframeId = tuple[int, int]  # (epoch, decode time) of a keyframe


async def async_first_keyframe(prebuffer: Prebuffer, *, fresh: bool = False) -> KeyframeId | None:
    """Wait briefly for the camera's next keyframe.

    Without ``fresh`` (the prebuffer was empty), any buffered keyframe will do; with it (the
    buffered media is stale), only one that arrives from now on, which is returned.
    """
    if not prebuffer.running:
        await prebuffer.async_start()
    else:
        await prebuffer.async_attach_now()  # e.g. the camera appeared since setup
    arrived = asyncio.Event()
    keyframe: KeyframeId | None = None

    def on_part(part: MediaPart) -> None:
        nonlocal keyframe
        if not fresh:
            if prebuffer.has_keyframe:
                arrived.set()
            return
        if keyframe is None:
            sync = next((sample for sample in part.video if sample.is_sync), None)
            if sync is not None:
                keyframe = (part.epoch, sync.decode_time)
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
    return keyframe


def no_video_message(prebuffer: Prebuffer) -> str:
    """Say why there is no video, with Home Assistant's worker error when there is one."""
    error = prebuffer.worker_error
    if error is not None:
        return f"the camera stream has no video: Home Assistant's stream worker failed: {error}"
    if prebuffer.stale and (age := prebuffer.seconds_since_media) is not None:
        return f"the camera has sent no video for {age:.0f} s"
    return "the camera stream has no video yet"
