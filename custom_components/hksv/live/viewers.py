"""One viewer's route from the camera (copy or a shared transcoder), and the shared media.

A ``Viewer`` is the feed listener of one session: on the first media it decides copy or
transcode (``policy.py``) and from then on either hands parts to its session or leaves them
to the shared transcoder it joined. ``SharedMedia`` keeps one transcoder per distinct target
and one Opus encoder per (rate, packet time), and closes each with its last viewer.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
import logging
from typing import TYPE_CHECKING, Any

from ..hap.rtp_stream import (
    RtpAudioCodec,
    RtpSampleRate,
    SelectedRTPStreamConfiguration,
)
from ..media.budget import shared_budget, transcode_cost
from ..media.h264 import H264Level, H264Profile
from .audio import PACKET_TIMES_MS
from .audio_sender import AudioSender
from .opus_feed import OpusFeed
from .policy import (
    LiveMode,
    LiveModeOption,
    SourceVideoInfo,
    ViewerRequest,
    choose_live_mode,
    copy_fits,
    transcode_target,
)
from .session import DEFAULT_CATCHUP_SECONDS, LiveSession
from .transcode_codec import LiveVideoTarget
from .transcoded_feed import TranscodedFeed

if TYPE_CHECKING:
    from ..media.fmp4 import InitSegment
    from ..source.gop import Gop
    from ..source.part import MediaPart
    from .source import LiveFeed
    from .transport import MediaEndpoint

_LOGGER = logging.getLogger(__name__)

OPUS_BITRATE_KBPS = 24  # what iOS selects (docs/live-view.md §1.3)


@dataclass(frozen=True, slots=True)
class LiveOptions:
    """The user's live-view options for this camera."""

    mode: LiveModeOption = LiveModeOption.AUTO
    max_bitrate_kbps: int = 6000
    address: str | None = None  # advertise this address instead of the HAP connection's


class SharedMedia:
    """Transcoders and Opus encoders of one camera, shared by the viewers that match."""

    def __init__(
        self,
        feed: LiveFeed,
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
        log_name: str,
        *,
        on_video_failed: Callable[[LiveSession, str], None] = lambda session, error: None,
        on_audio_failed: Callable[[AudioSender, str], None] = lambda sender, error: None,
    ) -> None:
        """Start with nothing running.

        A transcoder or Opus encoder that fails is detached at once; its sessions are
        handed to ``on_video_failed`` (they get no video) and its senders to
        ``on_audio_failed``, each with the reason.
        """
        self._feed = feed
        self._spawn = spawn
        self._log_name = log_name
        self._on_video_failed = on_video_failed
        self._on_audio_failed = on_audio_failed
        self._transcoded: dict[LiveVideoTarget, TranscodedFeed] = {}
        self._opus: dict[tuple[int, int], OpusFeed] = {}
        self.budget = shared_budget()  # shared with recording (media/budget.py)

    def transcoded_feed(self, target: LiveVideoTarget) -> tuple[TranscodedFeed, bool] | None:
        """Return the transcoder serving ``target`` (one per distinct target) and if it is new.

        None when a new one does not fit the transcode budget.
        """
        shared = self._transcoded.get(target)
        if shared is not None:
            return shared, False
        if self.budget.capacity is None:
            self._spawn(self._measure(), f"{self._log_name} transcode capacity")
        size = f"{target.width}x{target.height}@{target.fps}"
        reservation = self.budget.try_reserve(
            transcode_cost(target.width, target.height, target.fps),
            f"{self._log_name} live view {size}",
        )
        if reservation is None:
            return None
        shared = TranscodedFeed(
            target,
            catchup_seconds=DEFAULT_CATCHUP_SECONDS,
            log_name=self._log_name,
            spawn=self._spawn,
            on_failed=self._transcoder_failed,
            reservation=reservation,
        )
        self._transcoded[target] = shared
        self._feed.add_listener(shared)
        return shared, True

    def attach_audio(self, sender: AudioSender) -> None:
        """Attach ``sender`` to the Opus encoder of its rate and packet time."""
        key = (sender.sample_rate, round(sender.packet_seconds * 1000))
        shared = self._opus.get(key)
        if shared is None:
            shared = self._opus[key] = OpusFeed(
                sample_rate=key[0],
                packet_time_ms=key[1],
                bitrate_kbps=OPUS_BITRATE_KBPS,
                log_name=self._log_name,
                on_failed=self._opus_failed,
            )
            self._feed.add_listener(shared)
        shared.senders.append(sender)

    def _transcoder_failed(self, shared: TranscodedFeed) -> None:
        """Detach a failed transcoder and end the sessions it fed."""
        if self._transcoded.get(shared.target) is shared:
            del self._transcoded[shared.target]
        self._feed.remove(shared)
        self._spawn(shared.async_close(), f"{self._log_name} live transcoder stop")
        for session in list(shared.sessions):
            self._on_video_failed(session, shared.failed or "live transcoder failed")

    def _opus_failed(self, shared: OpusFeed) -> None:
        """Detach a failed Opus encoder; its viewers go on without audio."""
        for key, opus in list(self._opus.items()):
            if opus is shared:
                del self._opus[key]
        self._feed.remove(shared)
        self._spawn(shared.async_close(), f"{self._log_name} live opus stop")
        reason = shared.failed or "Opus encoder failed"
        for sender in list(shared.senders):
            sender.fail(reason)

    def leave(self, viewer: Viewer) -> None:
        """Detach a viewer from shared transcoders and encoders; close what nobody uses."""
        shared = viewer.transcoded
        if shared is not None:
            shared.remove(viewer.session)
            if not shared.sessions and self._transcoded.get(shared.target) is shared:
                del self._transcoded[shared.target]
                self._feed.remove(shared)
                shared.release()
                self._spawn(shared.async_close(), f"{self._log_name} live transcoder stop")
        sender = viewer.audio
        if sender is not None:
            self._spawn(sender.async_stop(), f"{self._log_name} live audio stop")
            for key, opus in list(self._opus.items()):
                if sender in opus.senders:
                    opus.senders.remove(sender)
                if not opus.senders:
                    del self._opus[key]
                    self._feed.remove(opus)
                    self._spawn(opus.async_close(), f"{self._log_name} live opus stop")

    @property
    def running(self) -> tuple[int, int]:
        """Return how many transcoders and Opus encoders are attached."""
        return len(self._transcoded), len(self._opus)

    async def _measure(self) -> None:
        """Measure the transcode capacity (once per process) for the next admissions."""
        await self.budget.async_measure()

    def diagnostics(self) -> dict[str, Any]:
        """Return the running transcoders and encoders."""
        return {
            "transcoders": [t.stats() for t in self._transcoded.values()],
            "audio_encoders": [
                {"rate": k[0], "packet_time_ms": k[1], "packets": o.packets, "failed": o.failed}
                for k, o in self._opus.items()
            ],
        }


@dataclass(slots=True)
class Viewer:
    """Routes the feed to one session once copy or transcode is decided, and records it."""

    media: SharedMedia
    options: LiveOptions
    source_info: Callable[[InitSegment], SourceVideoInfo]
    session: LiveSession
    request: ViewerRequest
    profile: tuple[H264Profile, H264Level]
    record: dict[str, Any]
    audio: AudioSender | None = None
    mode: LiveMode | None = None
    transcoded: TranscodedFeed | None = None
    direct: bool = False  # video comes from live/direct.py, not from these parts
    on_copy: Callable[[], None] | None = None  # called once copy is decided

    def on_part(self, part: MediaPart) -> None:
        """Forward a part (FeedListener): copied viewers take it, transcoded ones ignore it."""
        if self.mode is None:
            self.decide(part.init, None, part)
        elif self.mode is LiveMode.COPY and not self.direct:
            self.session.on_part(part)

    def decide(self, init: InitSegment, pending: Gop | None, part: MediaPart | None) -> None:
        """Choose copy or transcode for this viewer from what the camera sends."""
        self.decide_for(self.source_info(init), pending, part)

    def decide_for(
        self, source: SourceVideoInfo, pending: Gop | None, part: MediaPart | None
    ) -> None:
        """Choose copy or transcode for this viewer, for a camera that sends ``source``."""
        options = self.options
        mode, reason = choose_live_mode(
            source, self.request, options.mode, options.max_bitrate_kbps
        )
        admitted = None
        if mode is LiveMode.TRANSCODE:
            width, height, fps, kbps = transcode_target(
                source, self.request, options.max_bitrate_kbps
            )
            target = LiveVideoTarget(width, height, fps, kbps, *self.profile)
            self.record["transcode_target"] = f"{width}x{height}@{fps} {kbps} kbit/s"
            admitted = self.media.transcoded_feed(target)
            if admitted is None:
                # Over the transcode budget: copy where the viewer can play the camera's own
                # stream, else refuse (no video, the reason in diagnostics).
                why = self.media.budget.explain(transcode_cost(width, height, fps))
                if copy_fits(source):
                    mode, reason = LiveMode.COPY, f"{reason}; copied instead: {why}"
                else:
                    reason = f"{reason}; refused: {why}"
                _LOGGER.warning("%s: live view %s", self.record.get("viewer"), reason)
        self.mode = mode
        if admitted is not None:
            shared, created = admitted
            self.transcoded = shared
            shared.add(self.session, pending)
            if part is not None and created:
                shared.on_part(part)  # the feed is handing this part out right now
        elif mode is LiveMode.COPY:
            self.session.patch_level = source.level_idc is not None and source.level_idc > 40
            if part is not None:
                self.session.on_part(part)
            if self.on_copy is not None:
                self.on_copy()
        self.record["mode"] = mode.value
        self.record["reason"] = reason
        self.record["source"] = {
            "codec": source.codec,
            "size": f"{source.width}x{source.height}",
            "level_idc": source.level_idc,
            "bitrate_kbps": None if source.bitrate_kbps is None else round(source.bitrate_kbps),
        }


def selected_profile(selection: SelectedRTPStreamConfiguration) -> tuple[H264Profile, H264Level]:
    """Return the H.264 profile and level the viewer selected (main 3.1 when unknown)."""
    video = selection.video
    codec = video.codec_parameters if video is not None else None
    profiles = {int(p) for p in H264Profile}
    levels = {int(level) for level in H264Level}
    profile = H264Profile(codec.profile) if codec and codec.profile in profiles else None
    level = H264Level(codec.level) if codec and codec.level in levels else None
    return profile or H264Profile.MAIN, level or H264Level.LEVEL3_1


def audio_sender_for(
    selection: SelectedRTPStreamConfiguration,
    *,
    endpoint: MediaEndpoint,
    ssrc: int,
    muted: Callable[[], bool],
    record: dict[str, Any],
    log_name: str,
) -> AudioSender | None:
    """Return an Opus sender when the viewer selected Opus (it sends nothing while muted)."""
    audio = selection.audio
    params = audio.codec_parameters if audio is not None else None
    if (
        audio is None
        or params is None
        or audio.codec_type != RtpAudioCodec.OPUS
        or params.sample_rate not in (RtpSampleRate.KHZ_16, RtpSampleRate.KHZ_24)
        or params.packet_time not in PACKET_TIMES_MS
    ):
        record["audio"] = "none selected"
        return None
    rtp = audio.rtp
    rate = RtpSampleRate(params.sample_rate).hertz
    record["audio"] = f"opus {rate} Hz {params.packet_time} ms"
    return AudioSender(
        endpoint=endpoint,
        ssrc=ssrc,
        payload_type=rtp.payload_type if rtp and rtp.payload_type is not None else 110,
        sample_rate=rate,
        packet_time_ms=params.packet_time,
        rtcp_interval=rtp.rtcp_interval if rtp and rtp.rtcp_interval else 5.0,
        log_name=log_name,
        muted=muted,
    )


def video_summary(selection: SelectedRTPStreamConfiguration) -> dict[str, Any]:
    """Return the requested video parameters for diagnostics."""
    video = selection.video
    summary: dict[str, Any] = {}
    if video is None:
        return summary
    if video.attributes is not None:
        attributes = video.attributes
        summary["size"] = f"{attributes.width}x{attributes.height}@{attributes.frame_rate}"
    if video.codec_parameters is not None:
        summary["profile"] = video.codec_parameters.profile
        summary["level"] = video.codec_parameters.level
    if video.rtp is not None:
        summary["max_bitrate_kbps"] = video.rtp.max_bitrate
        summary["rtcp_interval"] = video.rtp.rtcp_interval
        summary["max_mtu"] = video.rtp.max_mtu
    audio = selection.audio
    if audio is not None and audio.codec_parameters is not None:
        params = audio.codec_parameters
        summary["audio"] = (
            f"codec {audio.codec_type} rate {params.sample_rate} {params.packet_time} ms"
        )
    return summary
