"""Copy or transcode per viewer: the decision table and the transcode target."""

from __future__ import annotations

import pytest

from custom_components.hksv.live.policy import (
    LiveMode,
    LiveModeOption,
    SourceVideoInfo,
    ViewerRequest,
    choose_live_mode,
    is_remote,
    transcode_target,
)

CAMERA_1080P = SourceVideoInfo("avc1", 1920, 1080, 40, 25.0, 4000.0)
IPHONE_LAN = ViewerRequest(1280, 720, 30, 299, 20, "192.168.1.30")
CAP = 6000


@pytest.mark.parametrize(
    ("source", "request_", "option", "mode", "reason"),
    [
        (CAMERA_1080P, IPHONE_LAN, LiveModeOption.AUTO, LiveMode.COPY, "camera fits"),
        (
            SourceVideoInfo("hvc1", 1920, 1080, None, 25.0, 2000.0),
            IPHONE_LAN,
            LiveModeOption.COPY,
            LiveMode.TRANSCODE,
            "camera sends hvc1",
        ),
        (
            SourceVideoInfo("avc1", 1920, 1080, 41, 25.0, 4000.0),
            IPHONE_LAN,
            LiveModeOption.AUTO,
            LiveMode.COPY,
            "copied; SPS level relabelled",
        ),
        (
            SourceVideoInfo("avc1", 1920, 1080, 42, 60.0, 4000.0),
            IPHONE_LAN,
            LiveModeOption.AUTO,
            LiveMode.TRANSCODE,
            "H.264 level 4.2 above 4.0",
        ),
        (
            SourceVideoInfo("avc1", 2560, 1440, 50, 25.0, 4000.0),
            IPHONE_LAN,
            LiveModeOption.AUTO,
            LiveMode.TRANSCODE,
            "camera sends 2560x1440, above 1080p",
        ),
        (
            CAMERA_1080P,
            ViewerRequest(320, 240, 15, 150, 20, "192.168.1.31"),
            LiveModeOption.AUTO,
            LiveMode.TRANSCODE,
            "watch-sized request",
        ),
        (
            CAMERA_1080P,
            ViewerRequest(640, 360, 30, 132, 60, "192.168.1.30"),
            LiveModeOption.AUTO,
            LiveMode.TRANSCODE,
            "remote viewer",
        ),
        (
            SourceVideoInfo("avc1", 1280, 720, 31, 25.0, 900.0),
            ViewerRequest(640, 360, 30, 132, 60, "17.5.7.1"),
            LiveModeOption.AUTO,
            LiveMode.COPY,
            "camera fits",
        ),
        (
            SourceVideoInfo("avc1", 1920, 1080, 40, 25.0, 9000.0),
            IPHONE_LAN,
            LiveModeOption.AUTO,
            LiveMode.TRANSCODE,
            "above the 6000 kbit/s cap",
        ),
        (CAMERA_1080P, IPHONE_LAN, LiveModeOption.TRANSCODE, LiveMode.TRANSCODE, "mode is"),
        (
            SourceVideoInfo("avc1", 1920, 1080, 40, 25.0, 9000.0),
            IPHONE_LAN,
            LiveModeOption.COPY,
            LiveMode.COPY,
            "mode is copy",
        ),
    ],
    ids=[
        "lan_copy",
        "hevc_even_in_copy_mode",
        "level_4_1_relabelled",
        "level_4_2_60fps",
        "above_1080p",
        "watch",
        "cellular_packet_time",
        "remote_low_bitrate_copy",
        "above_cap",
        "transcode_option",
        "copy_option",
    ],
)
def test_choose_live_mode(
    source: SourceVideoInfo,
    request_: ViewerRequest,
    option: LiveModeOption,
    mode: LiveMode,
    reason: str,
) -> None:
    """Each row: the decision and the reason a user sees."""
    got_mode, got_reason = choose_live_mode(source, request_, option, CAP)
    assert got_mode is mode
    assert reason in got_reason


@pytest.mark.parametrize(
    ("address", "packet_time", "remote"),
    [
        ("192.168.1.2", 20, False),
        ("10.0.0.2", 20, False),
        ("fe80::1%en0", 20, False),
        ("::ffff:192.168.1.2", 20, False),
        ("127.0.0.1", 20, False),
        ("17.5.7.1", 20, True),
        ("192.168.1.2", 60, True),
        ("not an address", None, False),
    ],
)
def test_is_remote(address: str, packet_time: int | None, remote: bool) -> None:
    """Public addresses and 60 ms audio packets mean a remote viewer."""
    assert is_remote(ViewerRequest(1280, 720, 30, 299, packet_time, address)) is remote


def test_transcode_target() -> None:
    """Never upscale; even sizes; the bitrate floor and the remote cap apply."""
    assert transcode_target(
        CAMERA_1080P, ViewerRequest(320, 240, 15, 100, 20, "10.0.0.2"), CAP
    ) == (
        320,
        240,
        15,
        300,
    )
    small = SourceVideoInfo("hvc1", 640, 360, None, 25.0, 500.0)
    assert transcode_target(small, IPHONE_LAN, CAP) == (640, 360, 30, 600)
    remote = ViewerRequest(1280, 720, 30, 5000, 60, "10.0.0.2")
    assert transcode_target(CAMERA_1080P, remote, CAP)[3] == 1500
