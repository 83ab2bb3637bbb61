"""Copy or transcode: a pure decision from what the camera sends and what the hub selected.

Copy first (docs/DESIGN.md): H.264 at level ≤ 4.0, no larger than the selection, within the
bitrate cap, with a keyframe interval that divides the fragment length, is sent as it is.
Audio is judged separately: re-encoding audio (or making silence) is cheap, so a camera whose
video fits keeps copied video even when its audio needs work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from ..const import VIDEO_MODE_COPY, VIDEO_MODE_TRANSCODE
from ..hap.recording_config import H264_LEVEL_IDC, H264Level, SelectedCameraRecordingConfiguration
from .gop import SourceProfile
from .shaper import LENGTH_SLACK_MS

# Allow a little measurement noise before calling a bitrate "over the cap".
BITRATE_TOLERANCE: Final = 1.15
_H264_SAMPLE_ENTRIES: Final = frozenset({"avc1", "avc3"})
_AAC_LC: Final = 2


class AudioPlan(StrEnum):
    """What happens to audio in a recording."""

    NONE = "none"  # RecordingAudioActive is off: no audio track
    COPY = "copy"
    ENCODE = "encode"  # decode the camera's audio and encode AAC-LC at the selected rate
    SILENT = "silent"  # the camera has no usable audio: a silent AAC-LC track


@dataclass(frozen=True, slots=True)
class ModeDecision:
    """How one recording is produced, and why."""

    copy_video: bool
    audio: AudioPlan
    reasons: tuple[str, ...] = ()
    # Set when copy-only mode was asked for but the camera does not fit.
    copy_problems: tuple[VideoProblem, ...] = field(default=())

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


@dataclass(frozen=True, slots=True)
class VideoProblem:
    """One way the camera's video does not fit: English text plus a key and values for repairs."""

    problem: str
    fix: str
    key: str = ""
    values: dict[str, str] = field(default_factory=dict)


def video_problems(
    source: SourceProfile, selection: SelectedCameraRecordingConfiguration, max_bitrate_kbps: int
) -> list[VideoProblem]:
    """Return every way the video does not fit, with how to fix it on the camera."""
    problems: list[VideoProblem] = []
    video = source.video
    fragment_ms = selection.recording.media_container_configuration.parameters.fragment_length
    chosen = selection.video.attributes[0]
    if video is None:
        return [VideoProblem("the stream has no video", "check the camera's stream", "no_video")]
    if video.codec not in _H264_SAMPLE_ENTRIES:
        problems.append(
            VideoProblem(
                f"the video is {video.codec}, not H.264",
                "set the camera's video codec to H.264",
                "codec",
                {"codec": video.codec},
            )
        )
        return problems
    if video.level_idc is not None and video.level_idc > H264_LEVEL_IDC[H264Level.LEVEL4_0]:
        problems.append(
            VideoProblem(
                f"the H.264 level is {video.level_idc / 10:.1f}, above 4.0",
                "lower the camera's resolution, frame rate or H.264 level to 4.0",
                "level",
                {"level": f"{video.level_idc / 10:.1f}"},
            )
        )
    if video.width > chosen.width or video.height > chosen.height:
        problems.append(
            VideoProblem(
                f"the video is {video.width}x{video.height}, larger than the hub's "
                f"{chosen.width}x{chosen.height}",
                f"use a stream of at most {chosen.width}x{chosen.height}",
                "resolution",
                {"size": f"{video.width}x{video.height}", "max": f"{chosen.width}x{chosen.height}"},
            )
        )
    interval = source.keyframe_interval_ms
    if not _divides(interval, fragment_ms) or not source.keyframe_interval_constant:
        seconds = fragment_ms / 1000
        shown = f"{interval / 1000:g} s" if interval else "irregular"
        problems.append(
            VideoProblem(
                f"the keyframe interval ({shown}) does not divide {seconds:g} s",
                f"set the camera's keyframe interval (I-frame interval, GOP) to {seconds:g} s "
                f"or to a whole fraction of it",
                "keyframe_interval",
                {"interval": shown, "fragment": f"{seconds:g} s"},
            )
        )
    cap = min(max_bitrate_kbps, selection.video.parameters.bitrate or max_bitrate_kbps)
    if source.video_bitrate_kbps and source.video_bitrate_kbps > cap * BITRATE_TOLERANCE:
        problems.append(
            VideoProblem(
                f"the bitrate ({source.video_bitrate_kbps:.0f} kbit/s) is above {cap} kbit/s",
                f"set the camera's bitrate to at most {cap} kbit/s",
                "bitrate",
                {"bitrate": f"{source.video_bitrate_kbps:.0f} kbit/s", "max": f"{cap} kbit/s"},
            )
        )
    return problems


def _divides(interval_ms: int | None, fragment_ms: int) -> bool:
    """Return True if whole GOPs of ``interval_ms`` fill a fragment (within the shaper's slack).

    29.97 fps cameras with 60-frame GOPs make 2002 ms GOPs and 4004 ms fragments, as real
    HKSV cameras send (shared/fixtures/hksv-spec-examples).
    """
    if not interval_ms or interval_ms > fragment_ms + LENGTH_SLACK_MS:
        return False
    count = max(1, round(fragment_ms / interval_ms))
    return abs(count * interval_ms - fragment_ms) <= LENGTH_SLACK_MS


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
    reasons = [problem.problem for problem in problems]
    if audio is AudioPlan.SILENT:
        reasons.append("the camera sends no usable audio: adding a silent track")
    elif audio is AudioPlan.ENCODE:
        reasons.append("the camera's audio is not AAC-LC at the selected rate")
    if video_mode == VIDEO_MODE_TRANSCODE:
        return ModeDecision(False, _encode_audio(audio), ("always transcode is set", *reasons))
    if video_mode == VIDEO_MODE_COPY:
        # Copy only: never touch video; audio is dropped rather than re-encoded.
        plan = audio if audio in (AudioPlan.NONE, AudioPlan.COPY) else AudioPlan.NONE
        return ModeDecision(True, plan, tuple(reasons), tuple(problems))
    return ModeDecision(
        not problems, audio if not problems else _encode_audio(audio), tuple(reasons)
    )


def _encode_audio(plan: AudioPlan) -> AudioPlan:
    """Return the audio plan when video is re-encoded anyway (audio goes through PyAV)."""
    return AudioPlan.ENCODE if plan is AudioPlan.COPY else plan
