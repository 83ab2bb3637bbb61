"""A viewer of a camera that froze starts on its next keyframe, not on an old picture."""

from __future__ import annotations

from typing import Any

from custom_components.hksv.live.source import LiveFeed
from custom_components.hksv.source.gop_buffer import LiveView

IN_PROGRESS: Any = object()  # stands for the GOP in progress


class _Prebuffer:
    """A running prebuffer with a GOP in progress whose camera may have gone quiet."""

    def __init__(self, *, stale: bool) -> None:
        self.running = True
        self.stale = stale

    def hold(self, holder: str) -> None:
        pass

    def release(self, holder: str) -> None:
        pass

    def open_live(self, on_gop: None = None, on_part: Any = None, on_error: Any = None) -> LiveView:
        return LiveView(history=(), pending=IN_PROGRESS, unsubscribe=lambda: None)


class _Viewer:
    def on_part(self, part: Any) -> None:
        pass


def _feed(prebuffer: _Prebuffer) -> LiveFeed:
    return LiveFeed(
        prebuffer,  # type: ignore[arg-type]
        recording_wants_stream=lambda: True,
        linger_seconds=10,
        log_name="test",
    )


async def test_a_viewer_starts_on_the_gop_in_progress_of_a_live_camera() -> None:
    """The camera sends: the viewer gets the GOP in progress to start at once."""
    feed = _feed(_Prebuffer(stale=False))
    assert await feed.async_add(_Viewer()) is IN_PROGRESS
    assert feed.gop_in_progress() is IN_PROGRESS


async def test_a_viewer_of_a_frozen_camera_waits_for_its_next_keyframe() -> None:
    """The camera sent nothing for a while: what is buffered is not shown as live."""
    prebuffer = _Prebuffer(stale=True)
    feed = _feed(prebuffer)
    assert await feed.async_add(_Viewer()) is None
    assert feed.gop_in_progress() is None
    prebuffer.stale = False  # the camera is back
    assert feed.gop_in_progress() is IN_PROGRESS
