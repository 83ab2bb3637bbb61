"""Fixtures for the recording tests: the HKSV spec recording and HA-made parts of real clips."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from homeassistant.components.stream.core import Segment
import pytest

from custom_components.hksv.media.fmp4 import InitSegment, parse_init
from tests.media import ClipSpec, write_clip
from tests.recording.ha_parts import HaWorker

SPEC_EXAMPLES = Path(__file__).resolve().parents[3] / "shared/fixtures/hksv-spec-examples"
FRAGMENTS = SPEC_EXAMPLES / "fragments"
SEQUENCES = (2, 3, 4)

type ClipFactory = Callable[[ClipSpec], Path]
type SegmentFactory = Callable[[ClipSpec, bool], list[Segment]]


@pytest.fixture(scope="session")
def spec_init_bytes() -> bytes:
    """Return the real HKSV camera's mediaInitialization.mp4."""
    return (FRAGMENTS / "mediaInitialization.mp4").read_bytes()


@pytest.fixture(scope="session")
def spec_init(spec_init_bytes: bytes) -> InitSegment:
    """Return the parsed mediaInitialization.mp4."""
    return parse_init(spec_init_bytes)


@pytest.fixture(scope="session")
def spec_fragments() -> dict[int, bytes]:
    """Return sequence2..4.mp4 by dataSequenceNumber."""
    return {n: (FRAGMENTS / f"sequence{n}.mp4").read_bytes() for n in SEQUENCES}


@pytest.fixture(scope="session")
def make_clip(tmp_path_factory: pytest.TempPathFactory) -> ClipFactory:
    """Return a function that encodes a clip once per spec and reuses it."""
    folder = tmp_path_factory.mktemp("clips")
    cache: dict[ClipSpec, Path] = {}

    def clip(spec: ClipSpec) -> Path:
        if spec not in cache:
            suffix = "ts" if spec.container == "mpegts" else "mp4"
            cache[spec] = write_clip(folder / f"clip{len(cache)}.{suffix}", spec)
        return cache[spec]

    return clip


@pytest.fixture(scope="session")
def ha_segments(make_clip: ClipFactory) -> SegmentFactory:
    """Return a function giving HA's stream-worker segments for (clip spec, ll_hls), cached."""
    cache: dict[tuple[ClipSpec, bool], list[Segment]] = {}

    def segments(spec: ClipSpec, ll_hls: bool) -> list[Segment]:
        key = (spec, ll_hls)
        if key not in cache:
            worker = HaWorker()
            worker.run(make_clip(spec), ll_hls=ll_hls)
            cache[key] = worker.segments
        return cache[key]

    return segments
