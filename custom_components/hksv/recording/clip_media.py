"""What the recording pipeline computes per clip: the transcode target, copy checks, fragments.

Stateless helpers for recorder.py's copy and transcode paths.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from ..hap.recording_config import SelectedCameraRecordingConfiguration
from ..media.fmp4 import InitSegment, build_fragment, parse_fragments
from ..source.gop import Gop
from .encoding import AudioTarget, TranscodeTarget
from .mode import AudioPlan, ModeDecision
from .transcode import Transcoder

DEFAULT_AUDIO_BITRATE_KBPS: Final = 64


def transcode_target(
    selection: SelectedCameraRecordingConfiguration,
    decision: ModeDecision,
    max_bitrate_kbps: int,
) -> TranscodeTarget:
    """Map the hub's selection and the user's cap onto the transcoder's target."""
    video = selection.video
    attrs = video.attributes[0]
    params = video.parameters
    audio = None
    if decision.audio is not AudioPlan.NONE:
        wanted = selection.audio.parameters
        audio = AudioTarget(
            sample_rate=wanted.sample_rates[0].hertz,
            channels=wanted.channels,
            bitrate_kbps=wanted.max_bitrate or DEFAULT_AUDIO_BITRATE_KBPS,
        )
    return TranscodeTarget(
        width=attrs.width,
        height=attrs.height,
        fps=attrs.frame_rate,
        profile=params.profiles[0],
        level=params.levels[0],
        bitrate_kbps=min(params.bitrate or max_bitrate_kbps, max_bitrate_kbps),
        fragment_length_ms=selection.recording.media_container_configuration.parameters.fragment_length,
        audio=audio,
        copy_video=decision.copy_video,
    )


@dataclass(slots=True)
class SendState:
    """Whether a recording is waiting for HomeKit Data Stream to take its last packet."""

    active: bool = False


def who_fell_behind(transcoder: Transcoder, sending: SendState) -> str:
    """Say whether the hub or the local encoder let live video pile up, from where it waits.

    The hub: the encoder waits for room to put its output (the recording is not taking it
    because HomeKit Data Stream's send waits for the hub), or encoded fragments wait while the
    recording is suspended in that send. The encoder: neither, yet camera parts wait for it.
    """
    stats = transcoder.stats
    waiting = transcoder.output_backlog
    if transcoder.waiting_for_output or (sending.active and waiting > 0):
        return (
            f"the hub is not keeping up with live video ({waiting} encoded fragments wait "
            "to be sent; HomeKit Data Stream's send queue is full)"
        )
    encoder = stats.encoder or "the encoder"
    return (
        f"the local encoder is not keeping up with live video ({encoder} codes "
        f"{stats.width}x{stats.height}@{stats.fps} at {stats.speed:.2f}x real time; "
        f"{transcoder.input_backlog} camera parts wait for it)"
    )


def copy_invariants(gop: Gop) -> tuple[Any, ...]:
    """Return what must not change within a copied recording."""
    video = gop.init.video
    return (video.codec, video.width, video.height, video.avcc) if video else ()


def video_duration_ms(fragment: bytes, init: InitSegment) -> float:
    """Return the video duration of one moof+mdat."""
    video = init.video
    if video is None:
        return 0.0
    samples = parse_fragments(fragment, init).get(video.track_id, [])
    return sum(sample.duration for sample in samples) * 1000 / video.timescale


def gop_fragment(gop: Gop, sequence: int) -> bytes:
    """Return one GOP as a moof+mdat for the transcoder's demuxer."""
    tracks: list[tuple[int, int, Sequence[Any]]] = []
    if gop.init.video is not None and gop.video:
        tracks.append((gop.init.video.track_id, gop.video[0].decode_time, gop.video))
    if gop.init.audio is not None and gop.audio:
        tracks.append((gop.init.audio.track_id, gop.audio[0].decode_time, gop.audio))
    return build_fragment(sequence, tracks)
