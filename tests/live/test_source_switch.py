"""A session's move between sources (docs/live-view.md §2.10), through ``LiveSession.push``."""

from __future__ import annotations

from hypothesis import given, strategies as st

from custom_components.hksv.live.session import (
    SOURCE_PARTS,
    SOURCE_TRANSCODER,
    AccessUnit,
    LiveSession,
)
from tests.live.test_session import FRAME, IDR, P_FRAME, PARAMS, _session


def _unit(source: str, index: int, *, key: bool = False) -> AccessUnit:
    return AccessUnit(
        IDR if key else P_FRAME, index * FRAME, index * FRAME, key, 0, 100.0, PARAMS, source=source
    )


class _Calls:
    """Counts the session's calls back to the sources."""

    def __init__(self) -> None:
        self.switched = 0
        self.keyframes_asked = 0

    def switch(self, session: LiveSession, *, same_timeline: bool = True) -> None:
        session.switch_source(
            source=SOURCE_TRANSCODER,
            request_keyframe=self._ask,
            on_switched=self._switched,
            same_timeline=same_timeline,
        )

    def _ask(self) -> None:
        self.keyframes_asked += 1

    def _switched(self) -> None:
        self.switched += 1


def _queued(session: LiveSession) -> list[tuple[str, int]]:
    return [(unit.source, unit.dts // FRAME) for unit in session._queue]


def test_old_source_plays_until_the_new_one_has_a_keyframe() -> None:
    """The copy goes on while the transcoder warms up; its first keyframe stops the copy."""
    session, calls = _session(), _Calls()
    session.push(_unit(SOURCE_PARTS, 0, key=True))
    calls.switch(session)
    session.push(_unit(SOURCE_TRANSCODER, 1))  # not a keyframe: the copy goes on
    session.push(_unit(SOURCE_PARTS, 1))
    assert calls.switched == 0
    session.push(_unit(SOURCE_TRANSCODER, 2, key=True))
    session.push(_unit(SOURCE_PARTS, 3))  # the copy has stopped
    session.push(_unit(SOURCE_TRANSCODER, 3))
    assert calls.switched == 1
    assert _queued(session) == [
        (SOURCE_PARTS, 0),
        (SOURCE_PARTS, 1),
        (SOURCE_TRANSCODER, 2),
        (SOURCE_TRANSCODER, 3),
    ]


def test_a_keyframe_the_viewer_has_seen_is_skipped_for_a_newer_one() -> None:
    """On the same timeline the new source starts only past the last copied frame."""
    session, calls = _session(), _Calls()
    session.push(_unit(SOURCE_PARTS, 0, key=True))
    session.push(_unit(SOURCE_PARTS, 5))
    calls.switch(session)
    session.push(_unit(SOURCE_TRANSCODER, 4, key=True))  # seen copied: ask for a newer one
    session.push(_unit(SOURCE_TRANSCODER, 6))
    session.push(_unit(SOURCE_TRANSCODER, 7, key=True))
    assert calls.switched == 1
    assert calls.keyframes_asked == 2
    assert _queued(session) == [(SOURCE_PARTS, 0), (SOURCE_PARTS, 5), (SOURCE_TRANSCODER, 7)]


def test_another_timeline_starts_at_its_first_keyframe() -> None:
    """A source on its own clock (the direct path) is taken at its first keyframe."""
    session, calls = _session(), _Calls()
    session.push(_unit(SOURCE_PARTS, 0, key=True))
    session.push(_unit(SOURCE_PARTS, 50))
    calls.switch(session, same_timeline=False)
    session.push(_unit(SOURCE_TRANSCODER, 3, key=True))
    assert calls.keyframes_asked == 0
    assert _queued(session)[-1] == (SOURCE_TRANSCODER, 3)
    assert session.stats.epochs == 0  # a new source, not a worker restart


def test_a_cancelled_switch_keeps_the_old_source() -> None:
    """A new source that never delivered a keyframe is forgotten; the copy goes on."""
    session, calls = _session(), _Calls()
    session.push(_unit(SOURCE_PARTS, 0, key=True))
    calls.switch(session)
    session.push(_unit(SOURCE_TRANSCODER, 1))
    session.cancel_switch()
    session.push(_unit(SOURCE_PARTS, 1))
    session.push(_unit(SOURCE_PARTS, 2))
    assert calls.switched == 0
    assert _queued(session) == [(SOURCE_PARTS, 0), (SOURCE_PARTS, 1), (SOURCE_PARTS, 2)]


@given(
    st.lists(
        st.tuples(st.booleans(), st.booleans()),  # (from the new source, keyframe)
        min_size=1,
        max_size=60,
    )
)
def test_the_picture_never_steps_back(arrivals: list[tuple[bool, bool]]) -> None:
    """Any interleaving: old frames, then new ones from a keyframe past the last old frame."""
    session, calls = _session(), _Calls()
    session.push(_unit(SOURCE_PARTS, 0, key=True))
    calls.switch(session)
    clocks = {SOURCE_PARTS: 1, SOURCE_TRANSCODER: 1}
    for new, key in arrivals:
        source = SOURCE_TRANSCODER if new else SOURCE_PARTS
        session.push(_unit(source, clocks[source], key=key))
        clocks[source] += 1
    queued = _queued(session)
    sources = [source for source, _ in queued]
    first_new = sources.index(SOURCE_TRANSCODER) if SOURCE_TRANSCODER in sources else None
    assert calls.switched <= 1
    if first_new is None:
        assert sources == [SOURCE_PARTS] * len(sources)
        return
    assert calls.switched == 1
    assert sources[first_new:] == [SOURCE_TRANSCODER] * (len(sources) - first_new)
    assert session._queue[first_new].keyframe
    last_old = queued[first_new - 1][1]
    assert queued[first_new][1] > last_old
    assert [index for _, index in queued[first_new:]] == sorted(
        index for _, index in queued[first_new:]
    )
