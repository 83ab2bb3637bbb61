"""Copy or transcode, per viewer: a pure decision with the reason shown in diagnostics.

iOS's requested size and bitrate are hints on the LAN: iPhones, iPads and Macs play the camera's
own H.264 up to level 4.0 and 1080p at several Mbit/s (docs/live-view.md §2.5). What needs a
re-encode: a codec other than H.264, a level above 4.0 that cannot be relabelled, a picture
above 1080p, a watch-sized request, a remote or cellular viewer with a source above what the
relay carries, and a source above the user's per-viewer cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
import ipaddress
from typing import Final

from .h264_rtp import fits_level_4_0

MAX_COPY_WIDTH: Final = 1920
MAX_COPY_HEIGHT: Final = 1088
LEVEL_4_0_IDC: Final = 40
# Requests narrower than this come from an Apple Watch (Scrypted uses <= 640; iPhones on
# cellular ask for 640x360, which the remote rule below handles).
WATCH_MAX_WIDTH: Final = 480
# Hub relays and cellular links (Scrypted README; pi4cam#47): about 1-1.5 Mbit/s.
REMOTE_MAX_BITRATE_KBPS: Final = 1500
# Scrypted's heuristic: iOS asks for 60 ms audio packets when the viewer is not local.
REMOTE_PACKET_TIME_MS: Final = 60


class LiveMode(StrEnum):
    """How a viewer's video is made."""

    COPY = "copy"
    TRANSCODE = "transcode"


class LiveModeOption(StrEnum):
    """The per-camera option."""

    AUTO = "auto"
    COPY = "copy"
    TRANSCODE = "transcode"


@dataclass(frozen=True, slots=True)
class SourceVideoInfo:
    """What the camera sends, from the init and recent GOPs."""

    codec: str  # sample-entry fourcc: "avc1", "hvc1"...
    width: int
    height: int
    level_idc: int | None
    fps: float | None
    bitrate_kbps: float | None


@dataclass(frozen=True, slots=True)
class ViewerRequest:
    """What the viewer selected, and where it is."""

    width: int
    height: int
    fps: int
    max_bitrate_kbps: int
    audio_packet_time_ms: int | None
    address: str


def is_remote(request: ViewerRequest) -> bool:
    """Return True if the viewer looks remote (hub relay or cellular)."""
    if request.audio_packet_time_ms is not None and (
        request.audio_packet_time_ms >= REMOTE_PACKET_TIME_MS
    ):
        return True
    try:
        address = ipaddress.ip_address(request.address.split("%")[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return not (address.is_private or address.is_loopback or address.is_link_local)


def choose_live_mode(
    source: SourceVideoInfo, request: ViewerRequest, option: LiveModeOption, max_bitrate_kbps: int
) -> tuple[LiveMode, str]:
    """Return copy or transcode for one viewer, and why."""
    if not source.codec.startswith("avc"):
        return LiveMode.TRANSCODE, f"camera sends {source.codec}, not H.264"
    if option is LiveModeOption.TRANSCODE:
        return LiveMode.TRANSCODE, "live view mode is transcode"
    if option is LiveModeOption.COPY:
        return LiveMode.COPY, "live view mode is copy"
    if source.width > MAX_COPY_WIDTH or source.height > MAX_COPY_HEIGHT:
        return LiveMode.TRANSCODE, f"camera sends {source.width}x{source.height}, above 1080p"
    if source.level_idc is not None and source.level_idc > LEVEL_4_0_IDC:
        fps = source.fps or 30.0
        if not fits_level_4_0(source.width, source.height, fps):
            return LiveMode.TRANSCODE, f"H.264 level {source.level_idc / 10:.1f} above 4.0"
    if request.width <= WATCH_MAX_WIDTH:
        return LiveMode.TRANSCODE, f"watch-sized request ({request.width}x{request.height})"
    bitrate = source.bitrate_kbps
    if is_remote(request) and (bitrate is None or bitrate > REMOTE_MAX_BITRATE_KBPS):
        return LiveMode.TRANSCODE, "remote viewer; the camera's bitrate is too high to relay"
    if bitrate is not None and bitrate > max_bitrate_kbps:
        return (
            LiveMode.TRANSCODE,
            f"camera sends {bitrate:.0f} kbit/s, above the {max_bitrate_kbps} kbit/s cap",
        )
    if source.level_idc is not None and source.level_idc > LEVEL_4_0_IDC:
        return LiveMode.COPY, "copied; SPS level relabelled 4.0 (size and rate fit it)"
    return LiveMode.COPY, "camera fits (H.264, level <= 4.0, <= 1080p)"


def copy_fits(source: SourceVideoInfo) -> bool:
    """Return whether any local viewer can play the camera's own stream (H.264 within 4.0)."""
    if not source.codec.startswith("avc"):
        return False
    if source.width > MAX_COPY_WIDTH or source.height > MAX_COPY_HEIGHT:
        return False
    if source.level_idc is not None and source.level_idc > LEVEL_4_0_IDC:
        return fits_level_4_0(source.width, source.height, source.fps or 30.0)
    return True


def transcode_target(
    source: SourceVideoInfo, request: ViewerRequest, max_bitrate_kbps: int
) -> tuple[int, int, int, int]:
    """Return (width, height, fps, kbit/s) for a transcoder serving ``request``."""
    width = min(request.width, source.width)
    height = min(request.height, source.height)
    width -= width % 2
    height -= height % 2
    # iOS's "299 kbps" is a floor in practice (HAP-NodeJS#959); peers use 500-1000 kbps floors.
    floor = 300 if request.width <= WATCH_MAX_WIDTH else 600
    cap = REMOTE_MAX_BITRATE_KBPS if is_remote(request) else max_bitrate_kbps
    bitrate = max(floor, min(cap, max(request.max_bitrate_kbps, floor)))
    return width, height, max(1, min(request.fps, 30)), bitrate
