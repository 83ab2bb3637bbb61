"""The copy path of a recording: the camera's own H.264/AAC, reshaped into HKSV fragments."""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
import logging

from ..hap.recording_config import SelectedCameraRecordingConfiguration
from ..hds import DataSendCloseReason, HDSProtocolError, RecordingPacket
from ..source.gop import Gop
from ..source.prebuffer import Prebuffer
from .clip_media import copy_invariants
from .feed import CameraStreamLost, LiveFeed, MediaClock
from .mode import AudioPlan, ModeDecision
from .shaper import FragmentShaper

_LOGGER = logging.getLogger(__name__)


async def copied_fragments(
    start: Gop,
    first: Sequence[Gop],
    live: LiveFeed[Gop],
    *,
    prebuffer: Prebuffer,
    media: MediaClock,
    selection: SelectedCameraRecordingConfiguration,
    decision: ModeDecision,
    max_seconds: float,
    stall_limit: Callable[[float], float],
    log_name: str,
) -> AsyncGenerator[tuple[RecordingPacket, float]]:
    """Send the camera's own H.264/AAC, reshaped into HKSV fragments."""
    include_audio = decision.audio is AudioPlan.COPY
    init = start.init if include_audio else start.init.without_audio()
    yield RecordingPacket(init.data, False), 0.0
    fragment_ms = selection.recording.media_container_configuration.parameters.fragment_length
    shaper = FragmentShaper(fragment_ms, include_audio)
    video_config = copy_invariants(start)
    total_ms = 0.0

    async def gops() -> AsyncIterator[Gop | None]:
        """Yield the GOPs to send; None when the camera went quiet with GOPs held back."""
        for gop in first:
            yield gop
        while True:
            # Halfway to the stall limit, send the GOPs held for the next fragment: if the
            # camera is gone, the hub then waits only for the clip's last fragment, the
            # GOP in progress, which stays behind to end the clip on real media.
            quiet = (
                media.limit / 2
                if shaper.holding and prebuffer.open_live().pending is not None
                else None
            )
            yield await live.next(media, quiet=quiet)

    oversize_noted = False
    try:
        async for gop in gops():
            if gop is None:
                fragments = shaper.flush()
            else:
                if copy_invariants(gop) != video_config:
                    raise HDSProtocolError(
                        DataSendCloseReason.UNEXPECTED_FAILURE,
                        "the camera's video format changed during the recording",
                    )
                fragments = shaper.push(gop)
            for fragment in fragments:
                if fragment.oversize:
                    # A GOP longer than the fragment length after the decision to copy:
                    # it goes out whole, as copying peers send every GOP (a keyframe-first
                    # fragment decodes alone); a clip whose prebuffer holds such a GOP
                    # transcodes. The stall limit grows with the camera's GOP.
                    media.limit = max(media.limit, stall_limit(fragment.duration_ms))
                    if not oversize_noted:
                        oversize_noted = True
                        _LOGGER.warning(
                            "%s: a keyframe group of %.2f s is longer than the %d ms "
                            "fragments; sending it as one fragment",
                            log_name,
                            fragment.duration_ms / 1000,
                            fragment_ms,
                        )
                total_ms += fragment.duration_ms
                last = total_ms >= max_seconds * 1000
                yield RecordingPacket(fragment.data, last), fragment.duration_ms
                if last:
                    return
    except CameraStreamLost:
        pass
    # The camera stopped: end on what it sent, the GOP in progress included.
    in_progress = prebuffer.open_live().pending
    tail = []
    if in_progress is not None and copy_invariants(in_progress) == video_config:
        tail = shaper.push(in_progress)
    tail += shaper.flush()
    if not tail:
        raise HDSProtocolError(DataSendCloseReason.UNEXPECTED_FAILURE, "camera stream lost")
    for index, fragment in enumerate(tail, 1):
        yield RecordingPacket(fragment.data, index == len(tail)), fragment.duration_ms
