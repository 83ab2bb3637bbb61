"""Constants for the HomeKit Secure Video integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "hksv"
LOGGER: Final = logging.getLogger(__package__)

CONF_CAMERA: Final = "camera_entity_id"
CONF_MOTION: Final = "motion_entity_id"
CONF_DOORBELL: Final = "doorbell_entity_id"
CONF_PORT: Final = "port"
# Advanced: bind HAP and HDS to one address instead of all (tests bind 127.0.0.1). Set in
# the options flow (advanced mode); ADDRESS_ALL listens on every interface.
CONF_ADDRESS: Final = "address"
ADDRESS_ALL: Final = "all"

OPT_MAX_RESOLUTION: Final = "max_resolution"
OPT_MAX_BITRATE: Final = "max_bitrate"
OPT_AUDIO: Final = "audio"
OPT_VIDEO_MODE: Final = "video_mode"
OPT_PREBUFFER: Final = "prebuffer_seconds"
OPT_LIVE_SLOTS: Final = "live_view_slots"
OPT_LIVE_MODE: Final = "live_view_mode"
OPT_LIVE_MAX_BITRATE: Final = "live_view_max_bitrate"
OPT_LIVE_SHORT_PARTS: Final = "live_view_short_parts"
OPT_LIVE_DIRECT: Final = "live_view_direct"

RESOLUTION_720P: Final = "720p"
RESOLUTION_1080P: Final = "1080p"
RESOLUTION_HEIGHT: Final = {RESOLUTION_720P: 720, RESOLUTION_1080P: 1080}

VIDEO_MODE_AUTO: Final = "auto"
VIDEO_MODE_COPY: Final = "copy"
VIDEO_MODE_TRANSCODE: Final = "transcode"
VIDEO_MODES: Final = (VIDEO_MODE_AUTO, VIDEO_MODE_COPY, VIDEO_MODE_TRANSCODE)

DEFAULT_MAX_RESOLUTION: Final = RESOLUTION_1080P
# "Anything above 2000 kbps quickly degrades home hub performance" (docs/peers.md §4).
DEFAULT_MAX_BITRATE: Final = 2000
MIN_BITRATE: Final = 300
MAX_BITRATE: Final = 8000
DEFAULT_AUDIO: Final = True
DEFAULT_VIDEO_MODE: Final = VIDEO_MODE_AUTO
DEFAULT_PREBUFFER: Final = 4
MIN_PREBUFFER: Final = 4
MAX_PREBUFFER: Final = 8

# Live view: concurrent viewers (CameraRTPStreamManagement services), copy/transcode, and the
# bitrate above which a LAN viewer gets a transcoded stream (docs/live-view.md §2.5).
DEFAULT_LIVE_SLOTS: Final = 3
MIN_LIVE_SLOTS: Final = 1
MAX_LIVE_SLOTS: Final = 5
DEFAULT_LIVE_MODE: Final = VIDEO_MODE_AUTO
DEFAULT_LIVE_MAX_BITRATE: Final = 6000
MIN_LIVE_BITRATE: Final = 500
MAX_LIVE_BITRATE: Final = 20000
# Short LL-HLS parts on the camera's stream (source/prebuffer.py): live view lags less.
DEFAULT_LIVE_SHORT_PARTS: Final = True

# Local archive (archive/, docs/local-clips.md): per camera on/off and days; the size cap
# and free-space minimum hold for the whole archive (the strictest camera's values).
OPT_ARCHIVE: Final = "archive"
OPT_ARCHIVE_DAYS: Final = "archive_days"
OPT_ARCHIVE_MAX_GB: Final = "archive_max_size_gb"
OPT_ARCHIVE_MIN_FREE_GB: Final = "archive_min_free_gb"
DEFAULT_ARCHIVE: Final = True
DEFAULT_ARCHIVE_DAYS: Final = 10
MIN_ARCHIVE_DAYS: Final = 1
MAX_ARCHIVE_DAYS: Final = 365
DEFAULT_ARCHIVE_MAX_GB: Final = 5.0
MIN_ARCHIVE_MAX_GB: Final = 0.5
MAX_ARCHIVE_MAX_GB: Final = 10000.0
DEFAULT_ARCHIVE_MIN_FREE_GB: Final = 2.0
MIN_ARCHIVE_MIN_FREE_GB: Final = 0.0
MAX_ARCHIVE_MIN_FREE_GB: Final = 1000.0

# "Lowest latency live view": a second camera connection for live view (live/direct.py).
DEFAULT_LIVE_DIRECT: Final = False

DEFAULT_OPTIONS: Final = {
    OPT_MAX_RESOLUTION: DEFAULT_MAX_RESOLUTION,
    OPT_MAX_BITRATE: DEFAULT_MAX_BITRATE,
    OPT_AUDIO: DEFAULT_AUDIO,
    OPT_VIDEO_MODE: DEFAULT_VIDEO_MODE,
    OPT_PREBUFFER: DEFAULT_PREBUFFER,
    OPT_LIVE_SLOTS: DEFAULT_LIVE_SLOTS,
    OPT_LIVE_MODE: DEFAULT_LIVE_MODE,
    OPT_LIVE_MAX_BITRATE: DEFAULT_LIVE_MAX_BITRATE,
    OPT_LIVE_SHORT_PARTS: DEFAULT_LIVE_SHORT_PARTS,
    OPT_LIVE_DIRECT: DEFAULT_LIVE_DIRECT,
    OPT_ARCHIVE: DEFAULT_ARCHIVE,
    OPT_ARCHIVE_DAYS: DEFAULT_ARCHIVE_DAYS,
    OPT_ARCHIVE_MAX_GB: DEFAULT_ARCHIVE_MAX_GB,
    OPT_ARCHIVE_MIN_FREE_GB: DEFAULT_ARCHIVE_MIN_FREE_GB,
}

# hksv's own HAP port range, clear of HA's homekit (21063/21064+) and the ephemeral range.
PORT_RANGE_START: Final = 21300
PORT_RANGE_END: Final = 21499

MOTION_DEVICE_CLASSES: Final = ("motion", "occupancy", "moving", "presence")
# How long an `event` entity's event counts as motion: the hub records while motion lasts.
EVENT_MOTION_SECONDS: Final = 10.0

MANUFACTURER: Final = "Home Assistant"
MODEL: Final = "HomeKit Secure Video Camera"
