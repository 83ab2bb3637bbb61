"""Make Home Assistant stream-worker segments and parts from a clip, with HA's own worker.

``run_stream_worker`` drives ``homeassistant.components.stream.worker.stream_worker`` itself
(demuxing, first-keyframe fix-up, ``StreamMuxer`` with HA's movflags, LL-HLS
``frag_duration`` parts or non-LL one-part segments), with a stub ``hass`` whose
``call_soon_threadsafe`` runs the callback at once, so tests get byte-exact HA parts without
starting a Stream.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
import threading
from types import SimpleNamespace
from typing import Any

import av
from homeassistant.components.stream.core import (
    STREAM_SETTINGS_NON_LL_HLS,
    Segment,
    StreamSettings,
)
from homeassistant.components.stream.diagnostics import Diagnostics
from homeassistant.components.stream.exceptions import StreamEndedError
from homeassistant.components.stream.worker import StreamState, stream_worker

from custom_components.hksv.media.fmp4 import (
    Fmp4Error,
    InitSegment,
    find_box,
    iter_boxes,
    parse_fragments,
    read_mfhd_sequence,
    read_tfdt,
)
from custom_components.hksv.recording.shaper import FragmentShaper, ShapedFragment
from custom_components.hksv.source.gop import Gop, GopAssembler
from custom_components.hksv.source.part import PartParser
from tests.media import read_frame_counter

# HA's defaults (stream/const.py): 6 s segments (5.9 min), 1 s parts, cut at 0.9 s.
LL_SETTINGS = StreamSettings(
    ll_hls=True,
    min_segment_duration=5.9,
    part_target_duration=1.0,
    hls_advance_part_limit=3,
    hls_part_timeout=2.0,
)


class _Collector:
    """A StreamOutput stand-in: keeps every Segment the worker creates."""

    def __init__(self) -> None:
        self.segments: list[Segment] = []

    def put(self, segment: Segment) -> None:
        self.segments.append(segment)

    def part_put(self) -> None:
        """Parts are read from the Segment objects afterwards."""


@dataclass
class HaWorker:
    """One HA StreamState across source restarts, collecting every Segment."""

    collector: _Collector = field(default_factory=_Collector)
    state: StreamState = field(init=False)

    def __post_init__(self) -> None:
        hass: Any = SimpleNamespace(
            loop=SimpleNamespace(call_soon_threadsafe=lambda func, *args: func(*args))
        )
        self.state = StreamState(hass, lambda: {"hksv_test": self.collector}, Diagnostics())

    def run(self, source: Path, *, ll_hls: bool) -> None:
        """Run HA's stream worker over ``source`` until the stream ends."""
        settings = LL_SETTINGS if ll_hls else STREAM_SETTINGS_NON_LL_HLS
        keyframes = SimpleNamespace(
            create_codec_context=lambda codec_context: None,
            stash_keyframe_packet=lambda packet: None,
        )
        # The file ends with StreamEndedError; HA drops the unfinished segment's tail too.
        with suppress(StreamEndedError):
            stream_worker(str(source), {}, settings, self.state, keyframes, threading.Event())

    def restart(self) -> None:
        """Do what _run_worker does when the worker exits: bump stream_id."""
        self.state.discontinuity()

    @property
    def segments(self) -> list[Segment]:
        """Return the segments, oldest first."""
        return self.collector.segments

    def parts(self) -> Iterator[tuple[Segment, bytes]]:
        """Yield (segment, part bytes) in arrival order."""
        for segment in self.segments:
            for part in segment.parts:
                yield segment, part.data


def ha_segments(source: Path, *, ll_hls: bool) -> list[Segment]:
    """Return HA's segments for one clip."""
    worker = HaWorker()
    worker.run(source, ll_hls=ll_hls)
    return worker.segments


class RawPartAssembler(GopAssembler):
    """A GopAssembler fed raw (init, part) bytes, parsed the way the prebuffer parses them."""

    def __init__(self) -> None:
        """Start empty, with one part parser."""
        super().__init__()
        self._parser = PartParser()

    def feed(self, init: bytes | InitSegment, data: bytes, epoch: int) -> list[Gop]:
        """Parse one part and add it; a malformed part loses the GOP in progress."""
        raw = init.data if isinstance(init, InitSegment) else init
        try:
            part = self._parser.parse(raw, data, epoch, 0.0)
        except Fmp4Error:
            self.lost_part()
            raise
        return self.add(part)


def assemble(parts: Iterator[tuple[Segment, bytes]] | Sequence[tuple[Segment, bytes]]) -> list[Gop]:
    """Feed HA parts through a GopAssembler and return every GOP, the last one flushed."""
    assembler = RawPartAssembler()
    gops: list[Gop] = []
    for segment, data in parts:
        gops.extend(assembler.feed(segment.init, data, segment.stream_id))
    last = assembler.flush()
    if last is not None:
        gops.append(last)
    return gops


def shape(gops: Sequence[Gop], fragment_ms: int, include_audio: bool) -> list[ShapedFragment]:
    """Run GOPs through a FragmentShaper, flushing at the end."""
    shaper = FragmentShaper(fragment_ms, include_audio)
    fragments = [fragment for gop in gops for fragment in shaper.push(gop)]
    return fragments + shaper.flush()


@dataclass
class DecodedFrame:
    """What PyAV saw for one video frame."""

    counter: int
    key_frame: bool
    time: float


@dataclass
class Decoded:
    """What PyAV made of an init + fragments file."""

    streams: list[str]
    frames: list[DecodedFrame]
    video_dts: list[int]
    audio_dts: list[int]
    audio_time_base: float | None
    audio_samples: int


def decode(init: bytes, fragments: Sequence[bytes]) -> Decoded:
    """Demux and decode init + fragments with PyAV."""
    data = init + b"".join(fragments)
    with av.open(BytesIO(data), "r", format="mp4") as container:
        streams = [s.type for s in container.streams]
        video = container.streams.video[0]
        audio = container.streams.audio[0] if container.streams.audio else None
        frames: list[DecodedFrame] = []
        video_dts: list[int] = []
        audio_dts: list[int] = []
        audio_samples = 0
        for packet in container.demux():
            if packet.dts is None:
                continue
            if packet.stream is video:
                video_dts.append(packet.dts)
                frames.extend(
                    DecodedFrame(
                        read_frame_counter(frame),
                        frame.key_frame,
                        float(frame.time or 0.0),
                    )
                    for frame in packet.decode()
                )
            elif packet.stream is audio:
                audio_dts.append(packet.dts)
                audio_samples += sum(f.samples for f in packet.decode())
        frames.extend(
            DecodedFrame(read_frame_counter(f), f.key_frame, float(f.time or 0.0))
            for f in video.codec_context.decode(None)
        )
        base = float(audio.time_base) if audio is not None and audio.time_base else None
    return Decoded(streams, frames, video_dts, audio_dts, base, audio_samples)


@dataclass
class FragmentLayout:
    """The boxes and timing of one shaped fragment, read back."""

    top_level: list[bytes]
    sequence: int
    tfdt: dict[int, int]
    first_video_sync: bool


def layout(data: bytes, init: InitSegment) -> FragmentLayout:
    """Read a fragment's top-level boxes, mfhd sequence, per-track tfdt and first flags."""
    boxes = list(iter_boxes(data))
    moof = find_box(data, b"moof")
    assert moof is not None
    tfdt: dict[int, int] = {}
    for traf in iter_boxes(data, moof.payload_start, moof.end):
        if traf.type != b"traf":
            continue
        tfhd = find_box(data, b"tfhd", traf.payload_start, traf.end)
        box = find_box(data, b"tfdt", traf.payload_start, traf.end)
        assert tfhd is not None and box is not None
        track_id = int.from_bytes(data[tfhd.payload_start + 4 : tfhd.payload_start + 8])
        tfdt[track_id] = read_tfdt(data, box)
    assert init.video is not None
    video = parse_fragments(data, init)[init.video.track_id]
    return FragmentLayout(
        [b.type for b in boxes], read_mfhd_sequence(data, moof), tfdt, video[0].is_sync
    )


def init_of(gops: Sequence[Gop], include_audio: bool) -> InitSegment:
    """Return the init a recording of ``gops`` starts with."""
    init = gops[0].init
    return init if include_audio else init.without_audio()
