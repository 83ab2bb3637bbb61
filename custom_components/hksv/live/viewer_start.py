"""A Selected START turned into what the viewer's session is made of (docs/live-view.md §1.4).

The selection must name H.264 with its attributes and RTP parameters; from it and the setup
come the session's video parameters, the request the copy-or-transcode policy decides on, and
the record that diagnostics and the Live viewers sensor show of this viewer.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Final

from ..hap.definitions import HapStatus, HapStatusError
from ..hap.rtp_stream import IPVersion
from .h264_rtp import payload_budget
from .policy import ViewerRequest
from .session import VideoConfig
from .viewers import video_summary

if TYPE_CHECKING:
    from ..hap.rtp_stream import SelectedRTPStreamConfiguration
    from .endpoint_setup import PendingSetup

_H264: Final = 0


def negotiated_video(setup: PendingSetup, selection: SelectedRTPStreamConfiguration) -> VideoConfig:
    """Return the session's video parameters (INVALID_VALUE_IN_REQUEST if incomplete)."""
    video = selection.video
    if (
        video is None
        or video.codec_type not in (None, _H264)
        or video.attributes is None
        or video.rtp is None
        or video.rtp.payload_type is None
    ):
        raise HapStatusError(HapStatus.INVALID_VALUE_IN_REQUEST, "incomplete video selection")
    rtp = video.rtp
    ipv6 = setup.request.address.ip_version == IPVersion.IPV6
    return VideoConfig(
        payload_type=rtp.payload_type or 99,
        ssrc=setup.video_ssrc,
        max_payload=payload_budget(rtp.max_mtu, ipv6),
        rtcp_interval=rtp.rtcp_interval or 0.5,
        width=video.attributes.width,
        height=video.attributes.height,
        fps=video.attributes.frame_rate,
        max_bitrate_kbps=rtp.max_bitrate or 0,
    )


def viewer_request(
    setup: PendingSetup, selection: SelectedRTPStreamConfiguration, config: VideoConfig
) -> ViewerRequest:
    """Return what the viewer asked for, and where it is."""
    audio = selection.audio
    packet_time = (
        audio.codec_parameters.packet_time
        if audio is not None and audio.codec_parameters is not None
        else None
    )
    return ViewerRequest(
        config.width,
        config.height,
        config.fps,
        config.max_bitrate_kbps,
        packet_time,
        setup.request.address.address,
    )


def viewer_address(setup: PendingSetup) -> str:
    """Return where the viewer receives video, as the records show it."""
    return f"{setup.request.address.address}:{setup.request.address.video_port}"


def start_record(
    slot: int, setup: PendingSetup, selection: SelectedRTPStreamConfiguration
) -> dict[str, Any]:
    """Return the record of a viewer that starts now (its mode follows with the first media)."""
    return {
        "slot": slot,
        "session_id": setup.session_id.hex(),
        "viewer": viewer_address(setup),
        "hap_connection": f"{setup.client[0]}:{setup.client[1]}",
        "requested": video_summary(selection),
        "started_at": time.time(),
        "mode": None,
        "reason": "waiting for the camera",
    }
