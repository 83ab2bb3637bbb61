"""Copy or transcode: a pure decision from what the camera sends and what the hub selected.

Copy first: H.264 at level ≤ 4.0, no larger than the selection, within the bitrate cap, is
sent as it is whenever every fragment can be cut on a keyframe within the selected fragment
length, that is whenever no single keyframe group (GOP) is longer than it: the shaper packs
whole GOPs up to the length and closes a fragment early when the next GOP does not fit
(docs/architecture.md, Recording). GOP lengths are judged from steady state
(gop.profile_source); how much they vary does not matter. Every reason carries
a code and the measured values, so that a translation can use them as placeholders.
Audio is judged separately: re-encoding audio (or making silence) is cheap, so a camera whose
video fits keeps copied video even when its audio needs work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from ..const import VIDEO_MODE_COPY, VIDEO_MODE_TRANSCODE
from ..hap.recording_config import SelectedCameraRecordingConfiguration
from ..media.h264 import H264_LEVEL_IDC, H264Level
from ..source.gop import SourceProfile
from .shaper import fits_fragment

# Allow a little measurement noise before calling a bitrate "over the cap".
BITRATE_TOLERANCE: Final = 1.15
# Sizes whose shapes differ by less than this (1920x1088 vs 16:9) count as the same shape.
_ASPECT_TOLERANCE: Final = 0.02
_H264_SAMPLE_ENTRIES: Final = frozenset({"avc1", "avc3"})
_AAC_LC: Final = 2


class AudioPlan(StrEnum):
    """What happens to audio in a recording."""

    NONE = "none"  # RecordingAudioActive is off: no audio track
    COPY = "copy"
    ENCODE = "encode"  # decode the camera's audio and encode AAC-LC at the selected rate
    SILENT = "silent"  # the camera has no usable audio: a silent AAC-LC track


class ReasonCode(StrEnum):
    """Why a recording is not a plain copy: stable codes for translations and diagnostics."""

    NO_VIDEO = "no_video"
    VIDEO_CODEC = "video_codec"
    H264_LEVEL = "h264_level"
    VIDEO_LARGER = "video_larger"
    ASPECT_RATIO = "aspect_ratio"
    KEYFRAME_INTERVAL = "keyframe_interval"
    KEYFRAME_IRREGULAR = "keyframe_irregular"
    # No complete keyframe interval yet: its own code, as it has none of the measured values.
    KEYFRAME_UNMEASURED = "keyframe_unmeasured"
    BITRATE = "bitrate"
    AUDIO_MISSING = "audio_missing"
    AUDIO_FORMAT = "audio_format"
    ALWAYS_TRANSCODE = "always_transcode"
    # The transcode budget (media/budget.py) was full: copied although a transcode was wanted.
    TRANSCODE_CAPACITY = "transcode_capacity"


# What a hub still plays when copied: the user's bitrate cap and "always transcode" are
# preferences, the other reasons make a copy the hub cannot use.
_COPYABLE: Final = frozenset({ReasonCode.BITRATE, ReasonCode.ALWAYS_TRANSCODE})
_AUDIO_REASONS: Final = frozenset({ReasonCode.AUDIO_MISSING, ReasonCode.AUDIO_FORMAT})


@dataclass(frozen=True, slots=True)
class ModeReason:
    """One reason, with what was measured: ``values`` fill the placeholders of a translation.

    ``problem`` and ``fix`` are the same facts as English sentences (log, attributes); ``fix``
    is empty for reasons the camera cannot change (the user's own "always transcode").
    """

    code: ReasonCode
    values: tuple[tuple[str, str], ...]
    problem: str
    fix: str = ""

    def __str__(self) -> str:
        """Return the problem sentence."""
        return self.problem

    def as_dict(self) -> dict[str, str]:
        """Return the code and the measured values (for attributes and repairs)."""
        return {"code": self.code.value, **dict(self.values)}


def _reason(code: ReasonCode, problem: str, fix: str = "", **values: object) -> ModeReason:
    """Build a reason; every value is kept as the text shown in ``problem``."""
    return ModeReason(code, tuple((key, str(value)) for key, value in values.items()), problem, fix)


@dataclass(frozen=True, slots=True)
class ModeDecision:
    """How one recording is produced, and why."""

    copy_video: bool
    audio: AudioPlan
    reasons: tuple[ModeReason, ...] = ()
    # Set when copy-only mode was asked for but the camera does not fit.
    copy_problems: tuple[ModeReason, ...] = field(default=())

    @property
    def transcoding(self) -> bool:
        """Return True if PyAV has to run (video or audio)."""
        return not self.copy_video or self.audio in (AudioPlan.ENCODE, AudioPlan.SILENT)

    @property
    def label(self) -> str:
        """Return "copy", "transcode" or "copy video, encode audio"."""
        if not self.transcoding:
            return "copy"
        return "transcode" if not self.copy_video else "copy video, encode audio"


def _seconds(milliseconds: float) -> str:
    """Return a duration as people read it: "2 s", "1.96 s"."""
    return f"{milliseconds / 1000:.3g} s"


def video_problems(
    source: SourceProfile, selection: SelectedCameraRecordingConfiguration, max_bitrate_kbps: int
) -> list[ModeReason]:
    """Return every way the video does not fit, each with what was measured and the fix."""
    problems: list[ModeReason] = []
    video = source.video
    fragment_ms = selection.recording.media_container_configuration.parameters.fragment_length
    chosen = selection.video.attributes[0]
    if video is None:
        return [
            _reason(ReasonCode.NO_VIDEO, "the stream has no video", "check the camera's stream")
        ]
    if video.codec not in _H264_SAMPLE_ENTRIES:
        problems.append(
            _reason(
                ReasonCode.VIDEO_CODEC,
                f"the video is {video.codec}, not H.264",
                "set the camera's video codec to H.264",
                codec=video.codec,
            )
        )
        return problems
    if video.level_idc is not None and video.level_idc > H264_LEVEL_IDC[H264Level.LEVEL4_0]:
        level = f"{video.level_idc / 10:.1f}"
        problems.append(
            _reason(
                ReasonCode.H264_LEVEL,
                f"the H.264 level is {level}, above 4.0",
                "lower the camera's resolution, frame rate or H.264 level to 4.0",
                level=level,
            )
        )
    size = f"{video.width}x{video.height}"
    selected = f"{chosen.width}x{chosen.height}"
    if video.width > chosen.width or video.height > chosen.height:
        problems.append(
            _reason(
                ReasonCode.VIDEO_LARGER,
                f"the video is {size}, larger than the hub's {selected}",
                f"use a stream of {selected}",
                size=size,
                selected=selected,
            )
        )
    elif abs(video.width * chosen.height - video.height * chosen.width) > (
        _ASPECT_TOLERANCE * video.height * chosen.width
    ):
        # A copied picture of another shape would be shown stretched or cut: re-encode to
        # the selected size, with bars.
        problems.append(
            _reason(
                ReasonCode.ASPECT_RATIO,
                f"the video is {size}, not the shape of the hub's {selected}",
                f"use a 16:9 stream such as {selected}",
                size=size,
                selected=selected,
            )
        )
    interval = source.keyframe_interval_ms
    fragment = _seconds(fragment_ms)
    fix = (
        f"set the camera's keyframe interval (I-frame interval, GOP) to {fragment} "
        f"or to a whole fraction of it"
    )
    shortest, longest = source.keyframe_interval_min_ms, source.keyframe_interval_max_ms
    if not interval:
        problems.append(
            _reason(
                ReasonCode.KEYFRAME_UNMEASURED,
                f"no complete keyframe interval was measured yet; it must not exceed {fragment}",
                fix,
                fragment=fragment,
            )
        )
    elif not fits_fragment(longest or interval, fragment_ms):
        if not source.keyframe_interval_constant and shortest and longest:
            problems.append(
                _reason(
                    ReasonCode.KEYFRAME_IRREGULAR,
                    f"the keyframe interval varies from {_seconds(shortest)} to "
                    f"{_seconds(longest)} (median {_seconds(interval)}); a keyframe group of "
                    f"{_seconds(longest)} does not fit in a {fragment} fragment",
                    fix,
                    shortest=_seconds(shortest),
                    longest=_seconds(longest),
                    median=_seconds(interval),
                    fragment=fragment,
                )
            )
        else:
            problems.append(
                _reason(
                    ReasonCode.KEYFRAME_INTERVAL,
                    f"the keyframe interval ({_seconds(interval)}) is longer than a {fragment} "
                    f"fragment",
                    fix,
                    interval=_seconds(interval),
                    fragment=fragment,
                )
            )
    cap = min(max_bitrate_kbps, selection.video.parameters.bitrate or max_bitrate_kbps)
    if source.video_bitrate_kbps and source.video_bitrate_kbps > cap * BITRATE_TOLERANCE:
        bitrate = f"{source.video_bitrate_kbps:.0f}"
        problems.append(
            _reason(
                ReasonCode.BITRATE,
                f"the bitrate ({bitrate} kbit/s) is above {cap} kbit/s",
                f"set the camera's bitrate to at most {cap} kbit/s",
                bitrate=bitrate,
                cap=cap,
            )
        )
    return problems


def audio_plan(
    source: SourceProfile, selection: SelectedCameraRecordingConfiguration, audio_on: bool
) -> AudioPlan:
    """Decide the audio track."""
    if not audio_on:
        return AudioPlan.NONE
    audio = source.audio
    if audio is None:
        return AudioPlan.SILENT
    wanted = selection.audio.parameters
    rate = wanted.sample_rates[0].hertz if wanted.sample_rates else None
    if (
        audio.codec == "mp4a"
        and audio.object_type == _AAC_LC
        and audio.sample_rate == rate
        and audio.channels == wanted.channels
    ):
        return AudioPlan.COPY
    return AudioPlan.ENCODE


def choose_mode(
    source: SourceProfile,
    selection: SelectedCameraRecordingConfiguration,
    *,
    video_mode: str,
    max_bitrate_kbps: int,
    audio_on: bool,
) -> ModeDecision:
    """Return how to produce a recording of ``source`` for ``selection``."""
    problems = video_problems(source, selection, max_bitrate_kbps)
    audio = audio_plan(source, selection, audio_on)
    reasons = list(problems)
    if audio is AudioPlan.SILENT:
        reasons.append(
            _reason(
                ReasonCode.AUDIO_MISSING,
                "the camera sends no usable audio: adding a silent track",
            )
        )
    elif audio is AudioPlan.ENCODE and source.audio is not None:
        have = f"{source.audio.codec} {source.audio.sample_rate} Hz x{source.audio.channels}"
        wanted = selection.audio.parameters
        rate = wanted.sample_rates[0].hertz if wanted.sample_rates else 0
        want = f"AAC-LC {rate} Hz x{wanted.channels}"
        reasons.append(
            _reason(
                ReasonCode.AUDIO_FORMAT,
                f"the camera's audio is {have}, not the selected {want}",
                audio=have,
                selected=want,
            )
        )
    if video_mode == VIDEO_MODE_TRANSCODE:
        always = _reason(ReasonCode.ALWAYS_TRANSCODE, "always transcode is set")
        return ModeDecision(False, _encode_audio(audio), (always, *reasons))
    if video_mode == VIDEO_MODE_COPY:
        # Copy only: never touch video; audio is dropped rather than re-encoded.
        plan = audio if audio in (AudioPlan.NONE, AudioPlan.COPY) else AudioPlan.NONE
        return ModeDecision(True, plan, tuple(reasons), tuple(problems))
    return ModeDecision(
        not problems, audio if not problems else _encode_audio(audio), tuple(reasons)
    )


def copy_instead(decision: ModeDecision, why: str) -> ModeDecision | None:
    """Return ``decision`` with copied video when a hub can still use the copy, else None.

    Audio keeps its plan: re-encoding audio alone is cheap and takes no transcode budget.
    """
    video_reasons = {r.code for r in decision.reasons} - _AUDIO_REASONS
    if decision.copy_video or not video_reasons <= _COPYABLE:
        return None
    full = _reason(ReasonCode.TRANSCODE_CAPACITY, f"copied instead of transcoded: {why}", why=why)
    return ModeDecision(True, decision.audio, (*decision.reasons, full), decision.copy_problems)


def _encode_audio(plan: AudioPlan) -> AudioPlan:
    """Return the audio plan when video is re-encoded anyway (audio goes through PyAV)."""
    return AudioPlan.ENCODE if plan is AudioPlan.COPY else plan
