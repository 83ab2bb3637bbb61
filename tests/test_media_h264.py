"""H.264 facts in media/h264.py: HAP's numbers and the level limits, one copy for both sides."""

from __future__ import annotations

from custom_components.hksv.hap import recording_config
from custom_components.hksv.media.h264 import H264_LEVEL_IDC, LEVEL_LIMITS, H264Level, H264Profile


def test_hap_numbers() -> None:
    """HAP's profile and level numbers (docs/hksv-protocol.md §2.2) and their level_idc."""
    assert [int(p) for p in H264Profile] == [0, 1, 2]
    assert [(int(level), H264_LEVEL_IDC[level]) for level in H264Level] == [
        (0, 31),
        (1, 32),
        (2, 40),
    ]
    assert [LEVEL_LIMITS[level].name for level in H264Level] == ["3.1", "3.2", "4.0"]


def test_recording_config_names_the_same_enums() -> None:
    """The HKSV recording TLVs use the media enums, not copies (one type for both sides)."""
    assert recording_config.H264Level is H264Level
    assert recording_config.H264Profile is H264Profile
