"""One Home Assistant stream part, parsed once for every consumer.

HA hands each output the part's init segment and its ``moof``+``mdat`` bytes. The prebuffer
parses them here, once, and gives the same parsed part to the GOP assembler (recording) and
to live view; samples are views into HA's buffer, so nothing is copied.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..media.fmp4 import Fmp4Error, InitSegment, Sample, parse_fragments, parse_init

# HA muxes a fresh init per segment (equal but for bitrate statistics): a few are plenty.
INIT_CACHE_SIZE: Final = 4


@dataclass(frozen=True, slots=True)
class MediaPart:
    """One HA part: its samples (views into HA's buffer) and when it reached hksv."""

    epoch: int  # changes at every worker run and every attach
    init: InitSegment
    data: bytes  # the part's moof+mdat as HA muxed it (a transcoder decodes these)
    video: list[Sample]
    audio: list[Sample]
    arrived: float  # time.monotonic()


class PartParser:
    """Parse parts against their init segment, parsing each distinct init once."""

    def __init__(self) -> None:
        """Start with an empty init cache."""
        self._inits: dict[bytes, InitSegment] = {}

    def parse(self, init: bytes, data: bytes, epoch: int, arrived: float) -> MediaPart:
        """Return the part's video and audio samples; raise Fmp4Error if it is malformed."""
        segment_init = self.init(init)
        video = segment_init.video
        if video is None:
            raise Fmp4Error("the init segment has no video track")
        tracks = parse_fragments(data, segment_init)
        audio = segment_init.audio
        return MediaPart(
            epoch,
            segment_init,
            data,
            tracks.get(video.track_id, []),
            tracks.get(audio.track_id, []) if audio is not None else [],
            arrived,
        )

    def init(self, init: bytes) -> InitSegment:
        """Return the parsed init segment (cached)."""
        parsed = self._inits.get(init)
        if parsed is None:
            parsed = parse_init(init)
            if len(self._inits) >= INIT_CACHE_SIZE:
                self._inits.pop(next(iter(self._inits)))
            self._inits[init] = parsed
        return parsed
