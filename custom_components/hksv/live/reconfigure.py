"""RECONFIGURE of a copied viewer: move it to the shared transcoder when it asks for much less.

iOS starts every LAN viewer with a hint of about 299 kbit/s and plays the camera's own stream
anyway, so the start's bitrate says little (docs/live-view.md §2.5). A RECONFIGURE is
different: iOS sends it when the link changed (a viewer gone cellular, the hub relay, a weak
Wi-Fi), and a copied stream cannot follow it. When the new request is one the policy would
transcode for (a watch size, a remote viewer), or asks for less than at START and the camera
sends more than ``LOWER_BITRATE_FACTOR`` times that, the viewer moves to the transcoder of its
new target. The copied stream plays on until the transcoder's first keyframe; from it on the
session sends the transcoded stream with the same SSRC, sequence numbers and a continuous RTP
clock (docs/live-view.md §2.10).
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Final

from .policy import LiveMode, LiveModeOption, choose_live_mode, transcode_target
from .session import SOURCE_TRANSCODER
from .transcode_codec import LiveVideoTarget

if TYPE_CHECKING:
    from ..hap.rtp_stream import SelectedRTPStreamConfiguration
    from ..media.fmp4 import InitSegment
    from .policy import SourceVideoInfo, ViewerRequest
    from .source import LiveFeed
    from .viewers import Viewer

# "Much less than the camera sends": the camera's bitrate above this multiple of the request.
LOWER_BITRATE_FACTOR: Final = 2.0


def reconfigured_request(
    request: ViewerRequest, width: int | None, height: int | None, fps: int | None, kbps: int | None
) -> ViewerRequest:
    """Return ``request`` with what a RECONFIGURE changed (absent values are kept)."""
    return replace(
        request,
        width=width or request.width,
        height=height or request.height,
        fps=fps or request.fps,
        max_bitrate_kbps=kbps or request.max_bitrate_kbps,
    )


def copy_reconfigure_reason(
    source: SourceVideoInfo,
    started: ViewerRequest,
    reconfigured: ViewerRequest,
    option: LiveModeOption,
    max_bitrate_kbps: int,
) -> str | None:
    """Return why a copied viewer should now be transcoded, or None to keep copying."""
    if option is not LiveModeOption.AUTO:
        return None  # the user chose copy (or transcode, which is not a copied viewer)
    mode, reason = choose_live_mode(source, reconfigured, option, max_bitrate_kbps)
    if mode is LiveMode.TRANSCODE:
        return f"reconfigured: {reason}"
    wanted = reconfigured.max_bitrate_kbps
    sends = source.bitrate_kbps
    if (
        wanted
        and wanted < started.max_bitrate_kbps
        and sends is not None
        and sends > LOWER_BITRATE_FACTOR * wanted
    ):
        return (
            f"reconfigured: viewer lowered its bitrate to {wanted} kbit/s;"
            f" the camera sends {sends:.0f} kbit/s"
        )
    return None


def move_to_transcoder(
    viewer: Viewer, init: InitSegment, request: ViewerRequest, reason: str
) -> bool:
    """Move a copied viewer to the shared transcoder of ``request`` from its next keyframe.

    Return False (the viewer keeps its copy) when a new transcoder does not fit the machine's
    transcode budget (media/budget.py).
    """
    source = viewer.source_info(init)
    width, height, fps, kbps = transcode_target(source, request, viewer.options.max_bitrate_kbps)
    target = LiveVideoTarget(width, height, fps, kbps, *viewer.profile)
    viewer.request = request
    feed = viewer.media.transcoded_feed(target)
    if feed is None:
        return False
    shared, _created = feed
    viewer.transcoded = shared

    def switched() -> None:
        # The transcoder's first keyframe is queued: copied parts stop reaching the session.
        viewer.mode = LiveMode.TRANSCODE

    viewer.session.switch_source(
        source=SOURCE_TRANSCODER,
        request_keyframe=shared.force_keyframe,
        on_switched=switched,
        # The direct path has the camera's own clock, not the timeline of HA's parts.
        same_timeline=not viewer.direct,
    )
    # No replay of the GOP in progress: the viewer has seen it copied, and goes on from now.
    shared.add(viewer.session, None)
    viewer.record["mode"] = LiveMode.TRANSCODE.value
    viewer.record["reason"] = reason
    viewer.record["transcode_target"] = f"{width}x{height}@{fps} {kbps} kbit/s"
    return True


def reconfigure_copied_viewer(
    viewer: Viewer, selection: SelectedRTPStreamConfiguration, feed: LiveFeed
) -> str | None:
    """Apply a RECONFIGURE to a copied viewer; return the reason if it moved, else None."""
    video = selection.video
    if viewer.mode is not LiveMode.COPY or video is None:
        return None
    attributes, rtp = video.attributes, video.rtp
    request = reconfigured_request(
        viewer.request,
        attributes.width if attributes is not None else None,
        attributes.height if attributes is not None else None,
        attributes.frame_rate if attributes is not None else None,
        rtp.max_bitrate if rtp is not None else None,
    )
    pending = feed.gop_in_progress()
    if pending is None:
        return None  # nothing known about the camera yet: the next RECONFIGURE decides
    options = viewer.options
    reason = copy_reconfigure_reason(
        viewer.source_info(pending.init),
        viewer.request,
        request,
        options.mode,
        options.max_bitrate_kbps,
    )
    if reason is None:
        viewer.request = request
        return None
    if not move_to_transcoder(viewer, pending.init, request, reason):
        return None  # no room for a transcoder: the viewer keeps the copy
    return reason
