"""Fragmented MP4 as plain bytes: a checked box walker, init segments, fragments in and out.

Split by concern: ``boxes`` walks boxes and reads checked fields, ``init`` parses init
segments, ``sample`` holds the track-fragment vocabulary both directions share, ``parse``
reads fragments and ``build`` writes them. Nothing here decodes media or imports Home
Assistant: sample payloads stay memoryviews into the caller's buffer, and ``build_fragment``
copies them exactly once.
"""

from .boxes import Box, Buffer, Fmp4Error, find_box, iter_boxes
from .build import build_fragment
from .init import AudioTrackInfo, InitSegment, TrackDefaults, VideoTrackInfo, parse_init
from .parse import parse_fragments, read_mfhd_sequence, read_tfdt
from .sample import (
    NON_SYNC_SAMPLE_FLAGS,
    SYNC_SAMPLE_FLAGS,
    TFHD_DEFAULT_BASE_IS_MOOF,
    Sample,
)

__all__ = [
    "NON_SYNC_SAMPLE_FLAGS",
    "SYNC_SAMPLE_FLAGS",
    "TFHD_DEFAULT_BASE_IS_MOOF",
    "AudioTrackInfo",
    "Box",
    "Buffer",
    "Fmp4Error",
    "InitSegment",
    "Sample",
    "TrackDefaults",
    "VideoTrackInfo",
    "build_fragment",
    "find_box",
    "iter_boxes",
    "parse_fragments",
    "parse_init",
    "read_mfhd_sequence",
    "read_tfdt",
]
