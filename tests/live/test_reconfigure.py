"""RECONFIGURE of a copied viewer: when it moves to a transcoder, and when it keeps copying."""

from __future__ import annotations

from hypothesis import given, strategies as st

from custom_components.hksv.live.policy import LiveModeOption, SourceVideoInfo, ViewerRequest
from custom_components.hksv.live.reconfigure import (
    LOWER_BITRATE_FACTOR,
    copy_reconfigure_reason,
    reconfigured_request,
)

CAMERA = SourceVideoInfo("avc1", 1920, 1080, 40, 25.0, 2000.0)
LAN_START = ViewerRequest(1280, 720, 30, 299, 20, "192.168.1.20")
CAP = 6000


def _reason(request: ViewerRequest, option: LiveModeOption = LiveModeOption.AUTO) -> str | None:
    return copy_reconfigure_reason(CAMERA, LAN_START, request, option, CAP)


def test_same_request_keeps_copying() -> None:
    """iOS repeating its start hint is no reason to transcode (it plays the camera's stream)."""
    assert _reason(reconfigured_request(LAN_START, 1280, 720, 30, 299)) is None


def test_lower_bitrate_than_the_camera_sends_moves() -> None:
    """A viewer that lowers its bitrate far below the camera's is moved, with the numbers."""
    reason = _reason(reconfigured_request(LAN_START, 640, 360, 30, 132))
    assert reason == (
        "reconfigured: viewer lowered its bitrate to 132 kbit/s; the camera sends 2000 kbit/s"
    )


def test_watch_size_moves_and_user_choice_is_kept() -> None:
    """What the policy transcodes for moves; a user's forced copy mode never does."""
    small = reconfigured_request(LAN_START, 320, 240, 15, 299)
    assert (_reason(small) or "").startswith("reconfigured: watch-sized request")
    assert _reason(small, LiveModeOption.COPY) is None
    lower = reconfigured_request(LAN_START, None, None, None, 100)
    assert _reason(lower, LiveModeOption.COPY) is None


def test_absent_values_are_kept() -> None:
    """A RECONFIGURE without attributes keeps the size and rate of the request."""
    assert reconfigured_request(LAN_START, None, None, None, 150) == ViewerRequest(
        1280, 720, 30, 150, 20, "192.168.1.20"
    )


@given(
    start_kbps=st.integers(100, 8000),
    new_kbps=st.integers(1, 8000),
    camera_kbps=st.floats(10, 8000),
)
def test_bitrate_rule(start_kbps: int, new_kbps: int, camera_kbps: float) -> None:
    """Moves exactly when the viewer asked for less than at START and much less than sent."""
    camera = SourceVideoInfo("avc1", 1280, 720, 31, 25.0, camera_kbps)
    start = ViewerRequest(1280, 720, 30, start_kbps, 20, "192.168.1.20")
    new = reconfigured_request(start, None, None, None, new_kbps)
    reason = copy_reconfigure_reason(camera, start, new, LiveModeOption.AUTO, 10_000)
    lowered = new_kbps < start_kbps and camera_kbps > LOWER_BITRATE_FACTOR * new_kbps
    assert (reason is not None) == lowered
