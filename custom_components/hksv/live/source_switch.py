"""Which source a session takes its access units from, and a move to another one.

A viewer moves between copy, a shared transcoder and the direct path at a keyframe
(docs/live-view.md §2.10): the current source plays on until the new one delivers its first
keyframe, and on the same timeline the session goes on only at a keyframe newer than the last
frame it queued, so the picture never steps back.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .session import AccessUnit


class SwitchStep(Enum):
    """What a session does with one access unit while it follows its source."""

    TAKE = auto()
    DROP = auto()
    TAKE_NEW_SOURCE = auto()  # the first keyframe of the new source: start it like a new epoch


@dataclass(slots=True)
class _PendingSwitch:
    """A move to another source, under way."""

    source: str  # the source moved to
    request_keyframe: Callable[[], None]
    on_switched: Callable[[], None]
    same_timeline: bool
    old_source_stopped: bool = False
    last_old_pts: int | None = None


class SourceSwitch:
    """Follow one session's source: take any until a move, then only the source moved to."""

    def __init__(self) -> None:
        """Take access units from any source."""
        self._pending: _PendingSwitch | None = None
        self._source: str | None = None  # the source taken; None: take any

    def begin(
        self,
        *,
        source: str,
        request_keyframe: Callable[[], None],
        on_switched: Callable[[], None],
        same_timeline: bool,
    ) -> None:
        """Start moving to ``source`` (see ``LiveSession.switch_source``)."""
        self._pending = _PendingSwitch(source, request_keyframe, on_switched, same_timeline)

    def cancel(self) -> None:
        """Forget a move whose new source never delivered a keyframe."""
        if self._pending is not None and not self._pending.old_source_stopped:
            self._pending = None

    def step(self, unit: AccessUnit, last_pushed_pts: int | None) -> SwitchStep:
        """Return what to do with ``unit``, given the PTS of the last unit queued."""
        switch = self._pending
        if switch is None:
            if self._source is None or unit.source == self._source:
                return SwitchStep.TAKE
            return SwitchStep.DROP  # the source this viewer left
        if unit.source != switch.source:
            # The old source plays until the new one is there.
            return SwitchStep.DROP if switch.old_source_stopped else SwitchStep.TAKE
        if not switch.old_source_stopped:
            if not unit.keyframe:
                return SwitchStep.DROP
            switch.old_source_stopped = True
            switch.last_old_pts = last_pushed_pts if switch.same_timeline else None
            switch.on_switched()
        if not unit.keyframe or (
            switch.last_old_pts is not None and unit.pts <= switch.last_old_pts
        ):
            if switch.last_old_pts is not None and unit.pts > switch.last_old_pts:
                switch.request_keyframe()  # past the old source: start at the next frame
            elif unit.keyframe:
                switch.request_keyframe()  # a keyframe the viewer has seen copied
            return SwitchStep.DROP
        self._pending = None
        self._source = unit.source
        return SwitchStep.TAKE_NEW_SOURCE
