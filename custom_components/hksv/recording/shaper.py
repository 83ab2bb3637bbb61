"""Shape GOPs into HKSV media fragments: keyframe-first, at most fragmentLength, re-timed.

HKSV wants one moof + mdat per fragment, each starting with an IDR and lasting at most the
selected fragmentLength, with timestamps monotonic from the prebuffer into live video
(docs/hksv-protocol.md §5.4 and §7 items 1-2). The copy rule (docs/architecture.md,
Recording): whole GOPs are packed up to the length, and a GOP that does not fit with those
held closes the fragment early, so every fragment fits whenever every GOP does, however much
GOP lengths vary. GOPs are never split: a GOP longer than the fragment length goes out alone
and is flagged, so the caller can say so (mode.py transcodes such a camera).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Final

from ..media.fmp4 import Sample, build_fragment
from ..source.gop import Gop

# Fragments may run this much over fragmentLength: 29.97 fps GOPs of 60 frames last 2002 ms,
# and the real HKSV camera in shared/fixtures/hksv-spec-examples sends 4004 ms fragments.
LENGTH_SLACK_MS: Final = 20.0
# trun sample_duration is an unsigned 32-bit field (ISO/IEC 14496-12 §8.8.8).
MAX_SAMPLE_DURATION: Final = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class ShapedFragment:
    """One HKSV mediaFragment."""

    data: bytes  # one moof + one mdat
    sequence: int  # mfhd sequence_number, 1 for a recording's first fragment
    start_ms: float  # output decode time of its first video sample
    duration_ms: float
    gop_count: int
    oversize: bool  # a single GOP longer than the fragment length


def fits_fragment(gop_ms: float, fragment_ms: int) -> bool:
    """Return True if a GOP of ``gop_ms`` fits in one fragment of ``fragment_ms``."""
    return gop_ms <= fragment_ms + LENGTH_SLACK_MS


def _rescale(value: int, from_scale: int, to_scale: int) -> int:
    """Convert ``value`` between timescales, rounding up so time never goes backwards."""
    if from_scale == to_scale:
        return value
    return -((-value * to_scale) // from_scale)


def _contiguous(samples: list[Sample]) -> list[Sample]:
    """Return ``samples`` with each duration reaching the next decode time (trun timing)."""
    out: list[Sample] = []
    for sample in samples:
        if out:
            last = out[-1]
            step = sample.decode_time - last.decode_time
            if not 0 < step <= MAX_SAMPLE_DURATION:
                continue  # not monotonic, or a gap no trun duration can express
            if step != last.duration:
                out[-1] = replace(last, duration=step)
        out.append(sample)
    return out


class FragmentShaper:
    """Group GOPs into HKSV fragments and re-time them for one recording."""

    def __init__(self, fragment_length_ms: int, include_audio: bool) -> None:
        """Start a recording's timeline at 0 and its fragment sequence at 1."""
        self.fragment_length_ms = fragment_length_ms
        self.include_audio = include_audio
        self._limit_ms = fragment_length_ms + LENGTH_SLACK_MS
        self._pending: list[Gop] = []
        self._pending_duration = 0
        self._last: Gop | None = None
        self._sequence = 0
        # Output time = source time + offset, in the video timescale of the GOPs being mapped.
        self._offset = 0
        self._video_end = (0, 1)  # (output end, timescale)
        self._audio_end = (0, 1)

    def push(self, gop: Gop) -> list[ShapedFragment]:
        """Add the next GOP; return the fragments that are now complete."""
        video = gop.init.video
        if video is None or not gop.video:
            return []
        out: list[ShapedFragment] = []
        last = self._last
        if last is None or not self._continues(last, gop):
            if last is not None and self._repeats(last, gop):
                return out
            out.extend(self.flush())
            if last is None or not self._gap_only(last, gop):
                end, scale = self._video_end
                self._offset = _rescale(end, scale, video.timescale) - gop.start
        self._last = gop
        limit = self._limit_ms * video.timescale / 1000
        if self._pending and self._pending_duration + gop.duration > limit:
            out.extend(self.flush())
        self._pending.append(gop)
        self._pending_duration += gop.duration
        # Emit now unless another GOP as long as this one would still fit: the camera's next
        # GOP is most likely as long, and holding a full fragment back only delays the hub.
        if self._pending_duration + gop.duration > limit:
            out.extend(self.flush())
        return out

    @property
    def holding(self) -> bool:
        """Return True if GOPs are held back for the next fragment."""
        return bool(self._pending)

    def flush(self) -> list[ShapedFragment]:
        """Emit the GOPs held back, if any."""
        if not self._pending:
            return []
        gops, self._pending, self._pending_duration = self._pending, [], 0
        return [self._build(gops)]

    @staticmethod
    def _same_source(a: Gop, b: Gop) -> bool:
        """Return True if both GOPs share an epoch and an init (one timeline)."""
        return a.epoch == b.epoch and a.init.fingerprint == b.init.fingerprint

    def _continues(self, last: Gop, gop: Gop) -> bool:
        """Return True if ``gop`` starts exactly where ``last`` ended."""
        return self._same_source(last, gop) and gop.start == last.end

    def _repeats(self, last: Gop, gop: Gop) -> bool:
        """Return True if ``gop`` holds nothing newer than ``last`` (a duplicate)."""
        return self._same_source(last, gop) and gop.end <= last.end

    def _gap_only(self, last: Gop, gop: Gop) -> bool:
        """Return True if ``gop`` continues ``last``'s timeline after a gap (keep the gap)."""
        return self._same_source(last, gop) and gop.start > last.end

    def _build(self, gops: list[Gop]) -> ShapedFragment:
        """Make one fragment of consecutive GOPs sharing an epoch and init."""
        init = gops[0].init
        video = init.video
        if TYPE_CHECKING:
            assert video is not None  # push() only accepts GOPs with video
        scale = video.timescale
        base = gops[0].start + self._offset
        samples = _contiguous([s for g in gops for s in g.video])
        duration = sum(s.duration for s in samples)  # what the trun says, so tfdt follows on
        tracks: list[tuple[int, int, Sequence[Sample]]] = [(video.track_id, base, samples)]
        audio = init.audio
        if self.include_audio and audio is not None:
            run = self._audio_run(gops, scale, audio.timescale)
            if run is not None:
                tracks.append((audio.track_id, *run))
        self._video_end = (base + duration, scale)
        self._sequence += 1
        duration_ms = duration * 1000 / scale
        return ShapedFragment(
            data=build_fragment(self._sequence, tracks),
            sequence=self._sequence,
            start_ms=base * 1000 / scale,
            duration_ms=duration_ms,
            gop_count=len(gops),
            oversize=len(gops) == 1 and not fits_fragment(duration_ms, self.fragment_length_ms),
        )

    def _audio_run(
        self, gops: list[Gop], video_scale: int, audio_scale: int
    ) -> tuple[int, list[Sample]] | None:
        """Return (base decode time, samples) of the fragment's audio, placed by video time."""
        # The audio offset comes from the video mapping, so the tracks stay in sync.
        offset = (2 * self._offset * audio_scale + video_scale) // (2 * video_scale)
        end = _rescale(*self._audio_end, audio_scale)
        samples = [s for g in gops for s in g.audio]
        first = 0
        # After a discontinuity the new audio may overlap what was sent: drop the overlap
        # rather than shift the track, which would desync every later fragment; only a
        # shift under a quarter of a frame (8 ms of AAC at 32 kHz) is let through.
        while first < len(samples) and (
            samples[first].decode_time + offset < end - samples[first].duration // 4
        ):
            first += 1
        run = _contiguous(samples[first:])
        if not run:
            return None
        base = max(run[0].decode_time + offset, end)
        self._audio_end = (base + sum(s.duration for s in run), audio_scale)
        return base, run


def select_prebuffer(gops: Sequence[Gop], prebuffer_ms: int) -> list[Gop]:
    """Return the GOPs from the keyframe at or before (newest media time - prebuffer_ms)."""
    if not gops:
        return []
    wanted = prebuffer_ms / 1000
    index = len(gops) - 1
    covered = gops[index].duration_seconds
    while index > 0 and covered < wanted:
        older, newer = gops[index - 1], gops[index]
        if older.epoch == newer.epoch and older.timescale == newer.timescale:
            # Within one epoch, source time says how far back the older keyframe lies.
            covered += max(newer.start_seconds - older.start_seconds, older.duration_seconds)
        else:
            covered += older.duration_seconds
        index -= 1
    return list(gops[index:])
