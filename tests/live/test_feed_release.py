"""The live feed's lingering release is owned by the feed: stopping waits for it."""

from __future__ import annotations

import asyncio
from typing import Any

from custom_components.hksv.live.source import LiveFeed
from custom_components.hksv.source.gop_buffer import LiveView


class _SlowStopPrebuffer:
    """A prebuffer whose stop waits until the test lets it finish."""

    def __init__(self) -> None:
        self.running = False
        self.stale = False
        self.holders: set[str] = set()
        self.stop_entered = asyncio.Event()
        self.stop_may_finish = asyncio.Event()
        self.stopping = 0
        self.most_stopping_at_once = 0
        self.stops = 0

    def hold(self, holder: str) -> None:
        self.holders.add(holder)

    def release(self, holder: str) -> None:
        self.holders.discard(holder)

    async def async_start(self) -> None:
        self.running = True

    async def async_stop(self) -> None:
        self.stopping += 1
        self.most_stopping_at_once = max(self.most_stopping_at_once, self.stopping)
        self.stop_entered.set()
        try:
            await self.stop_may_finish.wait()
            self.running = False
            self.stops += 1
        finally:
            self.stopping -= 1

    def open_live(self, on_gop: None = None, on_part: Any = None, on_error: Any = None) -> LiveView:
        return LiveView(history=(), pending=None, unsubscribe=lambda: None)


class _Viewer:
    def on_part(self, part: Any) -> None:
        pass


def _feed_tasks() -> list[asyncio.Task[Any]]:
    return [
        task
        for task in asyncio.all_tasks()
        if not task.done()
        and getattr(task.get_coro(), "__qualname__", "") == "LiveFeed.async_release"
    ]


async def test_stop_waits_for_a_release_under_way() -> None:
    """The last viewer left, the linger ran out and the release is stopping the stream: an
    unload now waits for that release instead of stopping the stream a second time beside it,
    and leaves no task behind."""
    prebuffer = _SlowStopPrebuffer()
    feed = LiveFeed(
        prebuffer,  # type: ignore[arg-type]
        recording_wants_stream=lambda: False,
        linger_seconds=0.01,
        log_name="test",
    )
    viewer = _Viewer()
    await feed.async_add(viewer)
    feed.remove(viewer)
    async with asyncio.timeout(10):
        await prebuffer.stop_entered.wait()
    assert len(_feed_tasks()) == 1

    stop = asyncio.create_task(feed.async_stop())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not stop.done()
    prebuffer.stop_may_finish.set()
    await stop

    assert prebuffer.most_stopping_at_once == 1
    assert not prebuffer.running
    assert not feed.holding
    assert _feed_tasks() == []
