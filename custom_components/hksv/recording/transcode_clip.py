"""The transcode path of a recording: re-encoded from the prebuffer on, then live parts."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant

from ..const import DOMAIN
from ..hap.recording_config import SelectedCameraRecordingConfiguration
from ..hds import DataSendCloseReason, HDSProtocolError, RecordingPacket
from ..media.encoders import EncoderChooser
from ..media.fmp4 import InitSegment, parse_init
from ..source.gop import Gop
from ..source.part import MediaPart
from .clip_media import (
    SendState,
    gop_fragment,
    transcode_target,
    video_duration_ms,
    who_fell_behind,
)
from .feed import CameraStreamLost, LiveFeed, MediaClock
from .mode import ModeDecision
from .summary import RecordingSummary
from .transcode import Transcoder


async def transcoded_fragments(
    hass: HomeAssistant,
    entry: ConfigEntry,
    first: Sequence[Gop],
    *,
    pending: Gop | None,
    parts: LiveFeed[MediaPart],
    media: MediaClock,
    init: InitSegment,
    selection: SelectedCameraRecordingConfiguration,
    decision: ModeDecision,
    summary: RecordingSummary,
    sending: SendState,
    max_bitrate_kbps: int,
    encoders: EncoderChooser | None,
    max_seconds: float,
    log_name: str,
) -> AsyncGenerator[tuple[RecordingPacket, float]]:
    """Re-encode from the prebuffer on: the clip still starts before the event."""
    target = transcode_target(selection, decision, max_bitrate_kbps)
    transcoder = Transcoder(target, log_name=log_name, encoders=encoders)
    overflow: list[HDSProtocolError] = []

    def on_overflow() -> None:
        # Live media piled up: the clip has failed. Stop encoding now, rather than once
        # the feeder (blocked on a full encoder) reads again or the backlog is worked off.
        overflow.append(
            HDSProtocolError(DataSendCloseReason.UNEXPECTED_FAILURE, parts.overflow_reason)
        )
        transcoder.stop()

    parts.describe_overflow = lambda: who_fell_behind(transcoder, sending)
    parts.on_overflow = on_overflow
    await transcoder.start(init.data)

    async def feed() -> None:
        """Hand the prebuffer GOPs, the GOP in progress and then live parts to PyAV."""
        current = init.fingerprint
        try:
            for sequence, gop in enumerate([*first, *([pending] if pending else [])], 1):
                if gop.init.fingerprint != current:
                    current = gop.init.fingerprint
                    await transcoder.new_source_init(gop.init.data)
                await transcoder.feed(gop_fragment(gop, sequence))
            async for part in parts.items(media):
                # Parsed once by the prebuffer: the fingerprint comes with the part.
                if part.init.fingerprint != current:
                    current = part.init.fingerprint
                    await transcoder.new_source_init(part.init.data)
                await transcoder.feed(part.data)
        except CameraStreamLost:
            pass  # the encoder flushes what it has: the clip's last fragment
        except HDSProtocolError:
            pass  # the overflow, already handled by on_overflow
        finally:
            transcoder.end_of_input()

    feeder = entry.async_create_background_task(hass, feed(), f"{DOMAIN} transcode feed")
    try:
        output_init = await transcoder.read()
        if output_init is None:
            raise HDSProtocolError(
                DataSendCloseReason.UNEXPECTED_FAILURE,
                f"transcoder failed: {transcoder.stats.last_error}",
            )
        summary.encoder = transcoder.stats.encoder
        yield RecordingPacket(output_init, False), 0.0
        parsed_init = parse_init(output_init)
        total_ms = 0.0
        # Once the camera is lost, each fragment waits for the next: the last one is marked.
        held: tuple[bytes, float] | None = None
        while (data := await transcoder.read()) is not None:
            if overflow:
                break
            duration_ms = video_duration_ms(data, parsed_init)
            total_ms += duration_ms
            last = total_ms >= max_seconds * 1000
            if media.lost and not last:
                if held is not None:
                    yield RecordingPacket(held[0], False), held[1]
                held = (data, duration_ms)
                continue
            yield RecordingPacket(data, last), duration_ms
            if last:
                return
        if media.lost:
            if held is None:
                raise HDSProtocolError(DataSendCloseReason.UNEXPECTED_FAILURE, "camera stream lost")
            yield RecordingPacket(held[0], True), held[1]
            return
        if overflow:
            raise overflow[0]
        if feeder.done() and not feeder.cancelled() and feeder.exception():
            raise HDSProtocolError(
                DataSendCloseReason.UNEXPECTED_FAILURE,
                f"recording feed failed: {feeder.exception()}",
            )
        if transcoder.stats.last_error:
            raise HDSProtocolError(
                DataSendCloseReason.UNEXPECTED_FAILURE,
                f"transcoder failed: {transcoder.stats.last_error}",
            )
    finally:
        feeder.cancel()
        await transcoder.close()
