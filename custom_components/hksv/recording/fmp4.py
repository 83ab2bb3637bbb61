"""Temporary re-export of ``media.fmp4`` for modules changed on other branches (issue 15).

``recording/gop.py``, ``prebuffer.py``, ``recorder.py`` and ``live/manager.py``, ``session.py``
and ``shared.py`` still import from here; remove this module once they import ``media.fmp4``.
"""

from ..media.fmp4 import (
    AudioTrackInfo,
    Fmp4Error,
    InitSegment,
    Sample,
    VideoTrackInfo,
    build_fragment,
    parse_fragments,
    parse_init,
)

__all__ = [
    "AudioTrackInfo",
    "Fmp4Error",
    "InitSegment",
    "Sample",
    "VideoTrackInfo",
    "build_fragment",
    "parse_fragments",
    "parse_init",
]
