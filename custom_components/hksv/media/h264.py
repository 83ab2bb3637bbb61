"""H.264 facts both recording and live view rely on: HAP's profile and level numbers, level limits.

HAP numbers profiles and levels its own way in the recording and RTP configurations
(docs/hksv-protocol.md §2.2); the limits are those of H.264 Table A-1.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Final, NamedTuple


class H264Profile(IntEnum):
    """H.264 profiles as HAP numbers them."""

    BASELINE = 0
    MAIN = 1
    HIGH = 2


class H264Level(IntEnum):
    """H.264 levels as HAP numbers them."""

    LEVEL3_1 = 0
    LEVEL3_2 = 1
    LEVEL4_0 = 2


# Level enum → level_idc, for comparing with a camera's SPS.
H264_LEVEL_IDC: Final = {H264Level.LEVEL3_1: 31, H264Level.LEVEL3_2: 32, H264Level.LEVEL4_0: 40}


class LevelLimits(NamedTuple):
    """Limits of one H.264 level (H.264 Table A-1; rates for Baseline/Main)."""

    name: str
    max_mbps: int
    max_fs: int
    max_br_kbps: int
    max_cpb_kbits: int


LEVEL_LIMITS: Final = {
    H264Level.LEVEL3_1: LevelLimits("3.1", 108_000, 3_600, 14_000, 14_000),
    H264Level.LEVEL3_2: LevelLimits("3.2", 216_000, 5_120, 20_000, 20_000),
    H264Level.LEVEL4_0: LevelLimits("4.0", 245_760, 8_192, 20_000, 25_000),
}
