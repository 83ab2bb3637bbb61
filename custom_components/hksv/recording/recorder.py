"""The recording delegate: from a hub's dataSend open to init + prebuffer + live fragments.

The HDS layer asks for an async iterator of packets (HAP-NodeJS handleRecordingStreamRequest):
the init segment first, then one fragment per packet, each starting with a keyframe and
lasting at most the selected fragment length. Fragments come from the prebuffer (starting at
the keyframe at or before now − prebuffer length) and then live, until the hub closes the
stream; a 3-minute ceiling ends on a real fragment marked ``is_last``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing
import logging
import time
from typing import Any, Final

from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback
from homeassistant.util import dt as dt_util

from ..const import (
    DOMAIN,
    OPT_AUDIO,
    OPT_LIVE_SHORT_PARTS,
    OPT_MAX_BITRATE,
    OPT_PREBUFFER,
    OPT_VIDEO_MODE,
    VIDEO_MODE_COPY,
)
from ..hap.recording_config import (
    FRAGMENT_LENGTH_MS,
    SelectedCameraRecordingConfiguration,
    SourceVideo,
)
from ..hds import DataSendCloseReason, HDSProtocolError, HDSSendStalledError, RecordingPacket
from ..media.budget import Reservation, TranscodeBudget, shared_budget, transcode_cost
from ..media.encoders import EncoderChooser
from ..source.gop import Gop, profile_source
from ..source.gop_buffer import LiveView
from ..source.part import MediaPart
from ..source.prebuffer import SHORT_PART_SECONDS, Prebuffer
from .clip_media import SendState
from .clip_sink import ClipCopy, ClipSink
from .copy_clip import copied_fragments
from .feed import LiveFeed, MediaClock
from .first_keyframe import KeyframeId, async_first_keyframe, no_video_message
from .mode import ModeDecision, choose_mode, copy_instead
from .profile_report import SourceProfileReporter
from .reports import RecordingReports
from .shaper import select_prebuffer
from .summary import (
    ACCESSORY_CLOSES,
    FINAL_OUTCOMES,
    RecordingOutcome,
    RecordingSummary,
    outcome_of_close,
)
from .transcode_clip import transcoded_fragments

_LOGGER = logging.getLogger(__name__)

# Scrypted and the HA peer end a clip after 3 minutes: hubs sometimes never close.
MAX_RECORDING_SECONDS: Final = 180.0
# A hub this far behind live is not reading; end the clip rather than buffer without bound.
MAX_QUEUED_GOPS: Final = 32
MAX_QUEUED_PARTS: Final = 120
# Keep this much more than the selected prebuffer: the keyframe at or before the start
# point may be up to a GOP earlier.
PREBUFFER_MARGIN_SECONDS: Final = FRAGMENT_LENGTH_MS / 1000
# No media from the camera for this long (or 1.5 keyframe intervals, if longer) ends the clip
# on its last real fragment; a worker that reconnects sooner continues the clip, re-timed.
# Hubs close a stream about 8 s after its last fragment (docs/architecture.md, Recording):
# the clip must end well before that, not as late.
MEDIA_STALL_SECONDS: Final = 5.0
# How long a recording that needs a video transcode waits for room in the transcode budget
# before it copies instead (or, where copying cannot work, is refused): the clip starts from
# the prebuffer either way, and hubs want data within about 5 s.
ADMISSION_WAIT_SECONDS: Final = 1.5


class RecordingController:
    """Run the prebuffer while recording is possible and serve recording streams."""

    def __init__(
        self,
        hass: HomeAssistant,
        *,
        camera_entity_id: str,
        name: str,
        entry: ConfigEntry,
        options: dict[str, Any],
        on_update: Callable[[], None],
        on_source_profile: Callable[[SourceVideo], None],
        clip_sink: ClipSink | None = None,
    ) -> None:
        """Prepare; the prebuffer starts with async_set_enabled(True)."""
        self._hass = hass
        self._name = name
        # Tasks are the entry's: unload and Home Assistant's stop cancel or await them.
        self._entry = entry
        self._entry_id = entry.entry_id
        self._camera_entity_id = camera_entity_id
        self._options = options
        self._on_update = on_update
        self._clip_sink = clip_sink
        self._clips: dict[int, ClipCopy] = {}
        keep = int(options[OPT_PREBUFFER]) + PREBUFFER_MARGIN_SECONDS
        self.prebuffer = Prebuffer(
            hass,
            camera_entity_id,
            keep_seconds=keep,
            log_name=name,
            part_target_seconds=(
                SHORT_PART_SECONDS if options.get(OPT_LIVE_SHORT_PARTS, True) else None
            ),
        )
        self._enabled = False
        self._active: dict[int, RecordingSummary] = {}
        self._source_report = SourceProfileReporter(
            hass,
            buffered_gops=lambda: self.prebuffer.gops,
            on_source_profile=on_source_profile,
        )
        self._profile_unsub = self.prebuffer.subscribe(self._source_report.on_gop)
        self.prebuffer.on_worker_health = self._on_worker_health
        self.reports = RecordingReports(
            hass, entry_id=entry.entry_id, name=name, camera_entity_id=camera_entity_id
        )
        self.recordings = 0
        # Shared with every camera and with live view (media/budget.py).
        self.budget: TranscodeBudget = shared_budget()
        self.encoders: EncoderChooser | None = None  # None: the process's shared chooser

    @property
    def streaming(self) -> bool:
        """Return True while a hub is receiving a recording."""
        return bool(self._active)

    async def async_set_enabled(
        self, enabled: bool, selection: SelectedCameraRecordingConfiguration | None
    ) -> None:
        """Run the prebuffer only while a recording is possible (and while one streams)."""
        self._enabled = enabled
        if selection is not None:
            wanted = selection.recording.prebuffer_length / 1000 + PREBUFFER_MARGIN_SECONDS
            self.prebuffer.keep_seconds = max(self.prebuffer.keep_seconds, wanted)
        if enabled:
            await self.prebuffer.async_start()
        elif not self._active:
            await self.prebuffer.async_stop()

    async def async_probe(self, timeout: float) -> None:
        """Run the stream briefly to learn the camera's format for the offer."""
        if self.prebuffer.running:
            return
        first_gop = asyncio.Event()
        unsubscribe = self.prebuffer.subscribe(lambda _gop: first_gop.set())
        try:
            await self.prebuffer.async_start()
            async with asyncio.timeout(timeout):
                await first_gop.wait()
            self._source_report.report(self.prebuffer.gops)
        except TimeoutError:
            _LOGGER.info("%s: no video from the camera yet; offering defaults", self._name)
        finally:
            unsubscribe()
            if not self._enabled and not self._active:
                await self.prebuffer.async_stop()

    async def async_stop(self) -> None:
        """Stop the prebuffer for good (unload or Home Assistant stopping)."""
        self._profile_unsub()
        self._source_report.cancel()
        await self.prebuffer.async_close()

    # -- recording streams ----------------------------------------------------------------

    def open_stream(
        self, stream_id: int, selection: SelectedCameraRecordingConfiguration, audio_on: bool
    ) -> AsyncIterator[RecordingPacket]:
        """Start a recording for the hub."""
        summary = RecordingSummary(stream_id=stream_id, started_at=dt_util.utcnow())
        self.reports.opened()
        self._active[stream_id] = summary
        if self._clip_sink is not None:
            clip = self._clip_sink.open_clip(stream_id, summary.started_at)
            if clip is not None:
                self._clips[stream_id] = clip
        self.recordings += 1
        self._on_update()
        return self._record(summary, selection, audio_on and bool(self._options[OPT_AUDIO]))

    def stream_acknowledged(self, stream_id: int) -> None:
        """Finish a stream the hub acknowledged after its end."""
        summary = self._active.get(stream_id)
        if summary is not None and summary.outcome is None:
            summary.outcome = RecordingOutcome.COMPLETED
        self.stream_closed(stream_id, DataSendCloseReason.NORMAL)

    def stream_closed(self, stream_id: int, reason: DataSendCloseReason | None) -> None:
        """Finish the summary of a stream the HDS layer closed."""
        summary = self._active.pop(stream_id, None)
        if summary is None:
            return
        summary.ended_at = dt_util.utcnow()
        if summary.outcome is None or (
            summary.outcome not in FINAL_OUTCOMES and reason in ACCESSORY_CLOSES
        ):
            summary.outcome = outcome_of_close(reason)
        if reason is not None:
            summary.hub_close_reason = reason.name
        self.reports.closed(summary, self._clips.pop(stream_id, None))
        if not self._enabled and not self._active:
            self._entry.async_create_task(
                self._hass, self.prebuffer.async_stop(), f"{DOMAIN} prebuffer stop", False
            )
        self._on_update()

    def stream_refused(self, stream_id: int, reason: DataSendCloseReason) -> None:
        """Show an open refused for want of a selection; a repair once it repeats.

        Other refusals (recording off, a second open) follow what the user or the hub
        chose; they are logged by the HDS layer only.
        """
        if reason is not DataSendCloseReason.INVALID_CONFIGURATION:
            return
        self.reports.refused(stream_id, reason)
        self._on_update()

    @property
    def last_recording(self) -> RecordingSummary | None:
        """Return the summary of the recording that ended last."""
        return self.reports.last_recording

    async def _record(
        self,
        summary: RecordingSummary,
        selection: SelectedCameraRecordingConfiguration,
        audio: bool,
    ) -> AsyncIterator[RecordingPacket]:
        """Yield init, prebuffer and live fragments for one recording."""
        started = time.monotonic()
        gops: LiveFeed[Gop] = LiveFeed(MAX_QUEUED_GOPS)
        parts: LiveFeed[MediaPart] = LiveFeed(MAX_QUEUED_PARTS)
        media = MediaClock(MEDIA_STALL_SECONDS)
        live: LiveView | None = None
        reservation: Reservation | None = None
        sending = SendState()

        def on_part(part: MediaPart) -> None:
            media.touch()
            parts.put(part)

        def on_media_error(err: Exception) -> None:
            # Our own consumer raised in the prebuffer and was dropped: this clip lost media.
            reason = f"hksv failed to take the camera's media: {err!r}"
            gops.fail(reason)
            parts.fail(reason)

        try:
            # A camera that froze (nothing for a while, its connection open) left pictures
            # that are not the moments before this event: start at its next keyframe instead.
            stale = self.prebuffer.stale
            waited = stale or not self.prebuffer.has_keyframe
            fresh = None
            if waited:
                fresh = await async_first_keyframe(self.prebuffer, fresh=stale)
            live = self.prebuffer.open_live(gops.put, on_part, on_error=on_media_error)
            media.touch()  # the stall limit counts from here, not from before the first keyframe
            history, pending = list(live.history), live.pending
            if fresh is not None:
                history = _since_keyframe(history, fresh)
            # The clip starts at the buffered GOP holding the selected prebuffer length; with
            # no complete GOP yet (a long GOP after a (re)start), at the GOP in progress.
            first = select_prebuffer(history, selection.recording.prebuffer_length)
            start = first[0] if first else pending
            if start is None:
                raise HDSProtocolError(
                    DataSendCloseReason.UNEXPECTED_FAILURE, no_video_message(self.prebuffer)
                )
            profile = profile_source(history) if history else self._source_report.profile_for(start)
            media.limit = _stall_limit(profile.keyframe_interval_ms or 0)
            decision = choose_mode(
                profile,
                selection,
                video_mode=str(self._options[OPT_VIDEO_MODE]),
                max_bitrate_kbps=int(self._options[OPT_MAX_BITRATE]),
                audio_on=audio,
            )
            self._note_copy_problems(decision)
            if not decision.copy_video:
                decision, reservation = await self._admit(decision, selection, summary)
            summary.mode = decision.label
            summary.mode_reasons = [str(reason) for reason in decision.reasons]
            summary.mode_reason_codes = [reason.as_dict() for reason in decision.reasons]
            _LOGGER.debug("%s: recording %s: %s", self._name, summary.stream_id, decision)
            if decision.transcoding:
                # Parts, not whole GOPs, feed the encoder: a fragment leaves as soon as the next
                # keyframe is encoded, instead of one camera GOP later.
                gops.enabled = False
                packets = transcoded_fragments(
                    self._hass,
                    self._entry,
                    first,
                    pending=pending,
                    parts=parts,
                    media=media,
                    init=start.init,
                    selection=selection,
                    decision=decision,
                    summary=summary,
                    sending=sending,
                    max_bitrate_kbps=int(self._options[OPT_MAX_BITRATE]),
                    encoders=self.encoders,
                    max_seconds=MAX_RECORDING_SECONDS,
                    log_name=self._name,
                )
            else:
                parts.enabled = False
                packets = copied_fragments(
                    start,
                    first,
                    gops,
                    prebuffer=self.prebuffer,
                    media=media,
                    selection=selection,
                    decision=decision,
                    max_seconds=MAX_RECORDING_SECONDS,
                    stall_limit=_stall_limit,
                    log_name=self._name,
                )
            # Pre-roll is what the clip holds from before the open: the buffered GOPs sent
            # and the part of the GOP in progress that had arrived.
            summary.prebuffer_seconds = (
                0.0
                if waited
                else sum(g.duration_seconds for g in [*first, *([pending] if pending else [])])
            )
            copy = self._clips.get(summary.stream_id)
            async with aclosing(packets):
                async for packet, duration_ms in packets:
                    if copy is not None:
                        copy.write(packet.data)  # queued; never waits for the disk
                    if summary.first_data_ms is None:
                        summary.first_data_ms = round((time.monotonic() - started) * 1000, 1)
                    summary.bytes += len(packet.data)
                    if duration_ms:
                        summary.fragments += 1
                        summary.media_seconds += duration_ms / 1000
                    if packet.is_last:
                        summary.outcome = (
                            RecordingOutcome.CAMERA_STREAM_LOST
                            if media.lost
                            else RecordingOutcome.MAX_DURATION
                        )
                        if media.lost:
                            summary.error = self._stream_lost(summary, media)
                    # Suspended here while HomeKit Data Stream waits for the hub to read.
                    sending.active = True
                    yield packet
                    sending.active = False
        except HDSSendStalledError as err:
            summary.error = str(err)
            summary.outcome = RecordingOutcome.HUB_NOT_READING
            _LOGGER.warning(
                "%s: recording %s: %s; closing the stream", self._name, summary.stream_id, err
            )
            raise
        except HDSProtocolError as err:
            summary.error = str(err)
            if media.lost:
                summary.error = self._stream_lost(summary, media)
            summary.outcome = (
                RecordingOutcome.CAMERA_STREAM_LOST if media.lost else RecordingOutcome.FAILED
            )
            raise
        finally:
            if reservation is not None:
                reservation.release()
            if live is not None:
                live.unsubscribe()

    async def _admit(
        self,
        decision: ModeDecision,
        selection: SelectedCameraRecordingConfiguration,
        summary: RecordingSummary,
    ) -> tuple[ModeDecision, Reservation | None]:
        """Reserve room for a video transcode; copy instead, or refuse, when none comes."""
        attrs = selection.video.attributes[0]
        cost = transcode_cost(attrs.width, attrs.height, attrs.frame_rate)
        label = f"{self._name} recording {summary.stream_id}"
        reservation = await self.budget.reserve(cost, label, wait=ADMISSION_WAIT_SECONDS)
        if reservation is not None:
            return decision, reservation
        why = self.budget.explain(cost)
        copied = copy_instead(decision, why)
        if copied is None:
            message = f"not transcoded: {why}"
            _LOGGER.warning("%s: recording %s %s", self._name, summary.stream_id, message)
            raise HDSProtocolError(DataSendCloseReason.UNEXPECTED_FAILURE, message)
        _LOGGER.warning(
            "%s: recording %s copied instead of transcoded: %s", self._name, summary.stream_id, why
        )
        return copied, None

    def _stream_lost(self, summary: RecordingSummary, media: MediaClock) -> str:
        """Log and return why a clip ended early: the camera stopped sending."""
        message = f"camera stream lost: no video for {media.limit:g} s"
        _LOGGER.warning(
            "%s: recording %s: %s; ending the clip on its last fragment",
            self._name,
            summary.stream_id,
            message,
        )
        return message

    def _note_copy_problems(self, decision: ModeDecision) -> None:
        """Raise (or clear) the repairs that explain why copy-only cannot work."""
        copy_only = self._options[OPT_VIDEO_MODE] == VIDEO_MODE_COPY
        self.reports.copy_problems(decision.copy_problems if copy_only else ())

    @callback
    def _on_worker_health(self) -> None:
        """Follow whether HA's stream worker can start the camera stream (reports.py)."""
        self.reports.worker_health(self.prebuffer.worker_error)

    def diagnostics(self) -> dict[str, Any]:
        """Return prebuffer and recording counters."""
        return {
            "enabled": self._enabled,
            "recordings": self.recordings,
            "active_streams": list(self._active),
            "not_configured_in_a_row": self.reports.refused_in_a_row,
            "prebuffer": self.prebuffer.diagnostics(),
            # Per process: the encoder choice and the transcodes running for every camera.
            "transcoding": self.budget.diagnostics(),
        }


def _since_keyframe(history: list[Gop], keyframe: KeyframeId) -> list[Gop]:
    """Return the buffered GOPs from ``keyframe`` on (none: it starts the GOP in progress)."""
    for index, gop in enumerate(history):
        if (gop.epoch, gop.start) == keyframe:
            return history[index:]
    return []


def _stall_limit(keyframe_interval_ms: float) -> float:
    """Return how long a recording waits for the camera's media before ending the clip."""
    return max(MEDIA_STALL_SECONDS, 1.5 * keyframe_interval_ms / 1000)
