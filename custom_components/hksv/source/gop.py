"""Keyframe-started GOPs from Home Assistant stream parts, and a profile of the source.

HA's stream worker cuts LL-HLS parts by time (about 0.9 s), so a part may start mid-GOP and
hold zero, one or several keyframes anywhere inside it (docs/home-assistant.md §1.3-§1.4). The
assembler regroups the samples into GOPs, each from one keyframe up to the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import median
from typing import Final

from ..media.fmp4 import AudioTrackInfo, Fmp4Error, InitSegment, Sample, VideoTrackInfo
from .part import MediaPart

# A GOP still open after this long is closed anyway, so a stream that stops sending keyframes
# cannot grow the assembler without bound (HA itself only restarts after a 30 s DTS gap).
MAX_GOP_SECONDS: Final = 30.0
# Audio samples waiting for their GOP: minutes of AAC, far more than a GOP's worth.
MAX_PENDING_AUDIO: Final = 8192


@dataclass(slots=True)
class Gop:
    """One group of pictures: a keyframe and the samples up to the next keyframe."""

    epoch: int  # HA stream_id, or any discontinuity counter
    init: InitSegment  # the epoch's first init; later ones share its fingerprint
    video: list[Sample]  # starts with a sync sample
    # Audio whose decode time falls in the GOP's video span; a sample muxed after the GOP had
    # already closed joins the next GOP instead, so the audio never has a hole.
    audio: list[Sample]
    start: int  # decode time of the keyframe, video timescale
    duration: int  # video timescale; equals the sum of the video sample durations
    ended_by_keyframe: bool = True  # False when a discontinuity or flush closed it
    # The first GOP after a (re)connect or discontinuity: HA's worker re-stamps its keyframe
    # (docs/home-assistant.md), so its length says nothing about the camera's GOP.
    first_in_epoch: bool = False

    @property
    def timescale(self) -> int:
        """Return the video timescale."""
        return self.init.video.timescale if self.init.video else 1

    @property
    def end(self) -> int:
        """Return the decode time just past the GOP, video timescale."""
        return self.start + self.duration

    @property
    def start_seconds(self) -> float:
        """Return the keyframe's decode time in seconds."""
        return self.start / self.timescale

    @property
    def duration_seconds(self) -> float:
        """Return the video duration in seconds."""
        return self.duration / self.timescale

    @property
    def nbytes(self) -> int:
        """Return the media bytes held (video and audio)."""
        return sum(s.size for s in self.video) + sum(s.size for s in self.audio)


@dataclass(slots=True)
class _Pending:
    """The assembler's state for one epoch and init."""

    epoch: int
    init: InitSegment
    video_track: int
    video_scale: int
    audio_track: int | None
    audio_scale: int
    video: list[Sample] = field(default_factory=list)
    audio: list[Sample] = field(default_factory=list)
    emitted: bool = False  # a GOP of this epoch was emitted: late audio joins the next one
    video_end: int | None = None  # decode time just past the last video sample seen


class GopAssembler:
    """Turn a stream of parsed parts into complete GOPs."""

    def __init__(self) -> None:
        """Start empty."""
        self._state: _Pending | None = None

    def add(self, part: MediaPart) -> list[Gop]:
        """Add one parsed part; return the GOPs it completed, oldest first."""
        segment_init, epoch = part.init, part.epoch
        video = segment_init.video
        if video is None:
            raise Fmp4Error("the init segment has no video track")
        done: list[Gop] = []
        state = self._state
        if (
            state is None
            or state.epoch != epoch
            or state.init.fingerprint != segment_init.fingerprint
        ):
            if state is not None:
                self._close(state, None, done)
            audio = segment_init.audio
            state = self._state = _Pending(
                epoch,
                segment_init,
                video.track_id,
                video.timescale,
                audio.track_id if audio else None,
                audio.timescale if audio else 1,
            )
        if state.audio_track is not None:
            state.audio.extend(part.audio)
            # Audio stamped far ahead of the video would wait forever: keep the newest only.
            del state.audio[:-MAX_PENDING_AUDIO]
        for sample in part.video:
            self._add_video(state, sample, done)
        if not state.video:
            self._drop_orphan_audio(state)
        return done

    def lost_part(self) -> None:
        """Forget the GOP in progress: missing a part, it cannot be decoded intact."""
        if self._state is not None:
            self._state.video = []
            self._state.emitted = False

    def has_pending(self) -> bool:
        """Return True if a GOP is in progress (its keyframe has arrived)."""
        return self._state is not None and bool(self._state.video)

    def pending(self) -> Gop | None:
        """Return a copy of the GOP in progress so far (for a consumer that goes on with parts)."""
        state = self._state
        if state is None or not state.video:
            return None
        start = state.video[0].decode_time
        end = state.video_end if state.video_end is not None else start
        v_scale, a_scale = state.video_scale, state.audio_scale
        audio = [a for a in state.audio if a.decode_time * v_scale >= start * a_scale]
        return Gop(
            state.epoch,
            state.init,
            list(state.video),
            audio,
            start,
            end - start,
            ended_by_keyframe=False,
        )

    def flush(self) -> Gop | None:
        """Close and return the GOP in progress (its duration from its samples)."""
        state = self._state
        if state is None:
            return None
        done: list[Gop] = []
        self._close(state, None, done)
        self._state = None
        return done[0] if done else None

    def _add_video(self, state: _Pending, sample: Sample, done: list[Gop]) -> None:
        """Append one video sample, closing the GOP in progress at a keyframe."""
        if state.video:
            last = state.video[-1]
            step = sample.decode_time - last.decode_time
            if not 0 < step <= MAX_GOP_SECONDS * state.video_scale:
                # Time went backwards or jumped without an epoch change: a discontinuity.
                self._close(state, None, done)
            elif sample.is_sync:
                self._close(state, sample.decode_time, done)
            else:
                # Keep the samples contiguous so the GOP's duration is the sum of its samples.
                last.duration = step
                span = sample.decode_time - state.video[0].decode_time
                if span > MAX_GOP_SECONDS * state.video_scale:
                    self._close(state, None, done)
        state.video_end = sample.decode_time + sample.duration
        if state.video or sample.is_sync:
            state.video.append(sample)

    def _close(self, state: _Pending, next_keyframe: int | None, done: list[Gop]) -> None:
        """Emit the pending GOP (ending at ``next_keyframe`` if known) and start over."""
        video = state.video
        if not video:
            return
        start = video[0].decode_time
        last = video[-1]
        if next_keyframe is not None:
            last.duration = next_keyframe - last.decode_time
        end = last.decode_time + last.duration
        audio = self._take_audio(state, start, end)
        done.append(
            Gop(
                state.epoch,
                state.init,
                video,
                audio,
                start,
                end - start,
                ended_by_keyframe=next_keyframe is not None,
                first_in_epoch=not state.emitted,
            )
        )
        state.video = []
        state.emitted = next_keyframe is not None
        if next_keyframe is None:
            state.audio.clear()

    def _take_audio(self, state: _Pending, start: int, end: int) -> list[Sample]:
        """Remove and return the pending audio that belongs to the GOP [start, end)."""
        pending = state.audio
        v_scale, a_scale = state.video_scale, state.audio_scale
        cut = 0
        while cut < len(pending) and pending[cut].decode_time * v_scale < end * a_scale:
            cut += 1
        first = 0
        if not state.emitted:
            # Audio before the epoch's first keyframe has no picture to go with.
            while first < cut and pending[first].decode_time * v_scale < start * a_scale:
                first += 1
        taken = pending[first:cut]
        del pending[:cut]
        return taken

    def _drop_orphan_audio(self, state: _Pending) -> None:
        """Forget audio older than any keyframe still to come (video is awaiting one)."""
        if state.video_end is None:
            state.audio.clear()
            return
        keep = state.video_end * state.audio_scale
        pending = state.audio
        first = 0
        while first < len(pending) and pending[first].decode_time * state.video_scale < keep:
            first += 1
        del pending[:first]


@dataclass(frozen=True, slots=True)
class SourceProfile:
    """What the camera sends, measured from recent GOPs."""

    video: VideoTrackInfo | None
    audio: AudioTrackInfo | None
    fps: float | None
    keyframe_interval_ms: int | None
    keyframe_interval_constant: bool
    video_bitrate_kbps: float | None
    gop_count: int
    # The shortest and longest steady-state keyframe intervals measured (ms).
    keyframe_interval_min_ms: int | None = None
    keyframe_interval_max_ms: int | None = None


def profile_source(gops: Sequence[Gop]) -> SourceProfile:
    """Measure fps, keyframe interval and bitrate over the newest GOPs sharing one init."""
    if not gops:
        return SourceProfile(None, None, None, None, False, None, 0)
    init = gops[-1].init
    recent: list[Gop] = []
    for gop in reversed(gops):
        if gop.init.fingerprint != init.fingerprint:
            break
        recent.append(gop)
    recent.reverse()
    seconds = sum(g.duration_seconds for g in recent)
    frames = sum(len(g.video) for g in recent)
    video_bytes = sum(s.size for g in recent for s in g.video)
    fps = frames / seconds if seconds > 0 else None
    complete = [g for g in recent if g.ended_by_keyframe]
    # Steady state: each epoch's first GOP is irregular (a join or restart), unless nothing
    # else was measured yet.
    steady = [g for g in complete if not g.first_in_epoch] or complete
    lengths = [g.duration_seconds * 1000 for g in steady]
    interval = round(median(lengths)) if lengths else None
    # Timestamp jitter of less than half a frame still counts as a constant interval.
    slack = 500 / fps if fps else 0.0
    constant = bool(lengths) and max(lengths) - min(lengths) <= slack
    bitrate = video_bytes * 8 / seconds / 1000 if seconds > 0 else None
    return SourceProfile(
        init.video,
        init.audio,
        fps,
        interval,
        constant,
        bitrate,
        len(recent),
        round(min(lengths)) if lengths else None,
        round(max(lengths)) if lengths else None,
    )
