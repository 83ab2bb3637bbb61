"""The offer's rules on their own: frame rates never shape it, other changes must last."""

from __future__ import annotations

from hypothesis import given, strategies as st
import pytest

from custom_components.hksv.hap.recording_config import (
    OFFERED_FPS,
    LastingChange,
    SourceVideo,
    build_offer,
)

# The offers of versions that followed the measured frame rate, for a camera measured at 30
# fps (computed with that code): a 30 fps camera's offer must stay byte for byte the same,
# so every stored selection and fingerprint of such a camera stays valid as it is.
PRE_UPGRADE_30_FPS = {
    (1080, True, False): "c9cf8c4403f4d75d49f4d660b76f9c86c08e63a597114c99144c633af931b225",
    (720, True, False): "1348bef2e05a23227a9ab7c6fe19da108701881bc150d0add558862af3156ebc",
    (None, False, True): "6a3056ff45ec2a4a8963d6a0583d5ffb701e180381730cb8670997e2ebf55b11",
}

frame_rates = st.one_of(
    st.none(), st.floats(min_value=0.1, max_value=240.0, allow_nan=False, allow_infinity=False)
)


@pytest.mark.parametrize(("height", "audio", "doorbell"), list(PRE_UPGRADE_30_FPS))
@given(fps=frame_rates)
def test_the_offer_is_what_a_30_fps_camera_was_offered(
    height: int | None, audio: bool, doorbell: bool, fps: float | None
) -> None:
    """Whatever the camera measures, the offer is the old 30 fps offer, fingerprint and all."""
    source = SourceVideo(
        width=None if height is None else height * 16 // 9,
        height=height,
        fps=fps,
        audio_codec="aac-lc" if audio else None,
        audio_sample_rate=32000 if audio else None,
        audio_channels=1 if audio else None,
    )
    offer = build_offer(source, max_height=1080, prebuffer_ms=4000, doorbell=doorbell)
    assert offer.fingerprint == PRE_UPGRADE_30_FPS[(height, audio, doorbell)]
    attributes = offer.video.codec_configurations[0].attributes
    assert {a.frame_rate for a in attributes} == {OFFERED_FPS}


@given(
    reports=st.lists(
        st.tuples(frame_rates, st.floats(min_value=0.0, max_value=3600.0)), max_size=60
    ),
    height=st.sampled_from([360, 720, 1080, 1440]),
)
def test_no_frame_rate_sequence_changes_the_offer(
    reports: list[tuple[float | None, float]], height: int
) -> None:
    """Reports as the bridge gets them, any rates at any pace: the offer never changes."""
    source = SourceVideo(height * 16 // 9, height, 30.0, "aac-lc", 32000, 1)
    current = build_offer(source, max_height=1080, prebuffer_ms=4000, doorbell=False).fingerprint
    change = LastingChange()
    now = 0.0
    for fps, pause in reports:
        now += pause
        measured = SourceVideo(source.width, height, fps, "aac-lc", 32000, 1)
        proposed = build_offer(measured, max_height=1080, prebuffer_ms=4000, doorbell=False)
        assert proposed.fingerprint == current
        assert not change.observe(proposed.fingerprint, current, now)


@given(
    reports=st.lists(
        st.tuples(st.sampled_from(["old", "new", "other"]), st.floats(0.0, 200.0)), max_size=40
    )
)
def test_a_change_is_adopted_only_once_it_lasted(reports: list[tuple[str, float]]) -> None:
    """Adopted exactly when one proposal came back, uninterrupted, long and often enough."""
    change = LastingChange(settle_seconds=300.0, min_reports=3)
    current = "old"
    now = 0.0
    run: list[float] = []  # times of the uninterrupted run of the current proposal
    proposal = None
    for proposed, pause in reports:
        now += pause
        if proposed == current:
            run, proposal = [], None
        elif proposed != proposal:
            run, proposal = [now], proposed
        else:
            run.append(now)
        expected = proposal is not None and len(run) >= 3 and run[-1] - run[0] >= 300.0
        assert change.observe(proposed, current, now) is expected
        if expected:
            current, run, proposal = proposed, [], None
