"""Fragmented MP4 as plain bytes: a checked box walker, init segments, fragments in and out.

Offsets cite ISO/IEC 14496-12:2015 (ISOBMFF) unless another standard is named. Nothing here
decodes media or imports Home Assistant: sample payloads stay memoryviews into the caller's
buffer, and ``build_fragment`` copies them exactly once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from struct import Struct, error as StructError
from typing import Final, NamedTuple

type Buffer = bytes | bytearray | memoryview

_U8: Final = Struct(">B")
_U16: Final = Struct(">H")
_U32: Final = Struct(">I")
_S32: Final = Struct(">i")
_U64: Final = Struct(">Q")

# §4.2 Object structure: size(4) type(4), size 1 → largesize(8), type 'uuid' → usertype(16).
BOX_HEADER: Final = 8
LARGE_BOX_HEADER: Final = 16
UUID_SIZE: Final = 16
# §4.2 FullBox: version(1) flags(3) ahead of the payload.
FULLBOX_HEADER: Final = 4

# §8.3.2 tkhd, after version/flags: track_ID, and width/height (16.16) at the end.
TKHD_TRACK_ID: Final = {0: 8, 1: 16}
TKHD_WIDTH: Final = {0: 72, 1: 84}
# §8.4.2 mdhd, after version/flags: timescale.
MDHD_TIMESCALE: Final = {0: 8, 1: 16}
# §8.4.3 hdlr, after version/flags: pre_defined(4) handler_type(4).
HDLR_HANDLER_TYPE: Final = 4
# §8.5.2 stsd, after version/flags: entry_count(4), then the sample entries as boxes.
STSD_ENTRIES: Final = 4
# §8.5.2.2 SampleEntry: reserved(6) data_reference_index(2).
SAMPLE_ENTRY_HEADER: Final = 8
# §12.1.3 VisualSampleEntry: width(2) height(2) at 24, child boxes at 78.
VISUAL_WIDTH: Final = 24
VISUAL_CHILDREN: Final = 78
# §12.2.3 AudioSampleEntry: QuickTime sound-description version(2) at 8 (0 in ISO files),
# channelcount(2) at 16, samplerate (16.16) at 24, child boxes at 28; QuickTime v1/v2 add more.
AUDIO_QT_VERSION: Final = 8
AUDIO_CHANNELS: Final = 16
AUDIO_SAMPLE_RATE: Final = 24
AUDIO_CHILDREN: Final = {0: 28, 1: 44, 2: 64}
# ISO/IEC 14496-15 §5.3.3.1 avcC: configurationVersion, AVCProfileIndication, compat, level.
AVCC_PROFILE: Final = 1
AVCC_LEVEL: Final = 3
# ISO/IEC 14496-15 §8.3.3.1 hvcC: general_profile_idc in byte 1 (low 5 bits), level in byte 12.
HVCC_PROFILE: Final = 1
HVCC_LEVEL: Final = 12
# AV1-ISOBMFF §2.3.3 av1C: seq_profile (3 bits) and seq_level_idx_0 (5 bits) in byte 1.
AV1C_PROFILE_LEVEL: Final = 1
# §8.8.3 trex, after version/flags: track_ID, description index, duration, size, flags.
TREX: Final = Struct(">IIIII")
# §8.8.5 mfhd, after version/flags: sequence_number(4).
MFHD_SEQUENCE: Final = 0

# §8.8.7.1 tfhd flags, in the order their optional fields follow track_ID.
TFHD_BASE_DATA_OFFSET: Final = 0x000001
TFHD_SAMPLE_DESCRIPTION_INDEX: Final = 0x000002
TFHD_DEFAULT_DURATION: Final = 0x000008
TFHD_DEFAULT_SIZE: Final = 0x000010
TFHD_DEFAULT_FLAGS: Final = 0x000020
TFHD_DURATION_IS_EMPTY: Final = 0x010000
TFHD_DEFAULT_BASE_IS_MOOF: Final = 0x020000
# §8.8.8.1 trun flags; the per-sample fields follow in this order.
TRUN_DATA_OFFSET: Final = 0x000001
TRUN_FIRST_SAMPLE_FLAGS: Final = 0x000004
TRUN_DURATION: Final = 0x000100
TRUN_SIZE: Final = 0x000200
TRUN_FLAGS: Final = 0x000400
TRUN_CTS_OFFSET: Final = 0x000800
_TRUN_FIELDS: Final = (TRUN_DURATION, TRUN_SIZE, TRUN_FLAGS, TRUN_CTS_OFFSET)
# §8.8.3.1 sample flags: sample_depends_on (bits 25-24) and sample_is_non_sync_sample (bit 16).
SAMPLE_DEPENDS_ON_SHIFT: Final = 24
SAMPLE_DEPENDS_ON_OTHERS: Final = 1
SAMPLE_IS_NON_SYNC: Final = 0x00010000
# What an encoder writes for an IDR (depends on nothing) and for other frames; ffmpeg's values.
SYNC_SAMPLE_FLAGS: Final = 0x02000000
NON_SYNC_SAMPLE_FLAGS: Final = 0x01010000

# ISO/IEC 14496-1 §7.2.2.1 descriptor tags inside esds.
ES_DESCR_TAG: Final = 0x03
DECODER_CONFIG_DESCR_TAG: Final = 0x04
DEC_SPECIFIC_INFO_TAG: Final = 0x05
# ISO/IEC 14496-1 §7.2.6.6: objectTypeIndication(1) streamType(1) bufferSizeDB(3) rates(8).
DECODER_CONFIG_FIXED: Final = 13
# ISO/IEC 14496-3 §1.6.3.4 samplingFrequencyIndex; 15 means an explicit 24-bit rate follows.
AAC_SAMPLE_RATES: Final = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip
AAC_EXPLICIT_RATE: Final = 15

# A sane ceiling: HA parts hold tens of samples, a 10 s 60 fps GOP 600.
MAX_SAMPLES_PER_RUN: Final = 1 << 17


class Fmp4Error(ValueError):
    """Malformed or unsupported fragmented MP4."""


class Box(NamedTuple):
    """One box: its four-character type and where its header, payload and end lie."""

    type: bytes
    start: int
    payload_start: int
    end: int


def iter_boxes(buf: Buffer, start: int = 0, end: int | None = None) -> Iterator[Box]:
    """Yield the boxes between ``start`` and ``end`` (the whole buffer: top level)."""
    limit = len(buf) if end is None else end
    if not 0 <= start <= limit <= len(buf):
        raise Fmp4Error(f"box range {start}..{limit} outside a {len(buf)}-byte buffer")
    pos = start
    while pos < limit:
        if limit - pos < BOX_HEADER:
            raise Fmp4Error(f"truncated box header at {pos}")
        size = _U32.unpack_from(buf, pos)[0]
        box_type = bytes(buf[pos + 4 : pos + 8])
        header = BOX_HEADER
        if size == 1:
            if limit - pos < LARGE_BOX_HEADER:
                raise Fmp4Error(f"truncated largesize at {pos}")
            size = _U64.unpack_from(buf, pos + BOX_HEADER)[0]
            header = LARGE_BOX_HEADER
        elif size == 0:
            # §4.2: size 0 means "to the end of the file", so only a top-level box may use it.
            if end is not None:
                raise Fmp4Error(f"size-0 box {box_type!r} at {pos} inside a container")
            size = limit - pos
        if box_type == b"uuid":
            header += UUID_SIZE
        if size < header:
            raise Fmp4Error(f"box {box_type!r} at {pos} has size {size} < {header}")
        if size > limit - pos:
            raise Fmp4Error(f"box {box_type!r} at {pos} overruns its parent ({size} bytes)")
        yield Box(box_type, pos, pos + header, pos + size)
        pos += size


def find_box(buf: Buffer, box_type: bytes, start: int = 0, end: int | None = None) -> Box | None:
    """Return the first box of ``box_type`` between ``start`` and ``end``, or None."""
    for box in iter_boxes(buf, start, end):
        if box.type == box_type:
            return box
    return None


def _child(buf: Buffer, parent: Box, box_type: bytes) -> Box | None:
    """Return the first child of ``parent`` with ``box_type``."""
    return find_box(buf, box_type, parent.payload_start, parent.end)


def _need(box: Box, pos: int, size: int) -> None:
    """Raise unless ``size`` bytes at ``pos`` lie inside ``box``."""
    if pos < box.payload_start or pos + size > box.end:
        raise Fmp4Error(f"{box.type!r} at {box.start} is too short")


def _full_box(buf: Buffer, box: Box) -> tuple[int, int, int]:
    """Return (version, flags, first payload offset) of a FullBox (§4.2)."""
    _need(box, box.payload_start, FULLBOX_HEADER)
    word = _U32.unpack_from(buf, box.payload_start)[0]
    return word >> 24, word & 0xFFFFFF, box.payload_start + FULLBOX_HEADER


def _u32_at(buf: Buffer, box: Box, pos: int) -> int:
    """Return the unsigned 32-bit field at ``pos`` inside ``box``."""
    _need(box, pos, 4)
    return int(_U32.unpack_from(buf, pos)[0])


# -- init segment -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VideoTrackInfo:
    """What the init says about the video track."""

    track_id: int
    timescale: int
    codec: str  # sample-entry fourcc: "avc1", "avc3", "hvc1", "hev1", "av01"…
    width: int
    height: int
    profile_idc: int | None
    level_idc: int | None
    avcc: bytes | None  # the AVCDecoderConfigurationRecord, H.264 only


@dataclass(frozen=True, slots=True)
class AudioTrackInfo:
    """What the init says about the audio track."""

    track_id: int
    timescale: int
    codec: str  # "mp4a", "Opus"…
    object_type: int | None  # 2 = AAC-LC from the esds DecoderSpecificInfo
    sample_rate: int
    channels: int


@dataclass(frozen=True, slots=True)
class TrackDefaults:
    """A track's trex defaults (§8.8.3), used when a fragment leaves a field out."""

    description_index: int = 1
    duration: int = 0
    size: int = 0
    flags: int = 0


@dataclass(frozen=True, slots=True)
class InitSegment:
    """A parsed ftyp + moov."""

    data: bytes
    video: VideoTrackInfo | None
    audio: AudioTrackInfo | None
    defaults: Mapping[int, TrackDefaults] = field(default_factory=dict)
    # The init with its bitrate statistics zeroed: HA muxes a fresh init per segment whose
    # esds/btrt bitrates differ, so equal fingerprints mean interchangeable inits.
    fingerprint: bytes = b""

    def __post_init__(self) -> None:
        """Default the fingerprint to the bytes themselves."""
        if not self.fingerprint:
            object.__setattr__(self, "fingerprint", self.data)

    def __hash__(self) -> int:
        """Hash by the init bytes (the defaults mapping is derived from them)."""
        return hash(self.data)

    def timescale(self, track_id: int) -> int | None:
        """Return the timescale of ``track_id`` if it is the video or audio track."""
        for track in (self.video, self.audio):
            if track is not None and track.track_id == track_id:
                return track.timescale
        return None

    def without_audio(self) -> InitSegment:
        """Return this init with the audio trak and its trex removed."""
        if self.audio is None:
            return self
        return parse_init(_strip_track(self.data, self.audio.track_id))


def parse_init(data: bytes) -> InitSegment:
    """Parse an init segment (ftyp + moov); unknown codecs are reported, not rejected."""
    moov = find_box(data, b"moov")
    if moov is None:
        raise Fmp4Error("init segment has no moov")
    video: VideoTrackInfo | None = None
    audio: AudioTrackInfo | None = None
    defaults: dict[int, TrackDefaults] = {}
    volatile: list[tuple[int, int]] = []
    for box in iter_boxes(data, moov.payload_start, moov.end):
        if box.type == b"trak":
            track = _parse_trak(data, box, volatile)
            if isinstance(track, VideoTrackInfo) and video is None:
                video = track
            elif isinstance(track, AudioTrackInfo) and audio is None:
                audio = track
        elif box.type == b"mvex":
            for trex in iter_boxes(data, box.payload_start, box.end):
                if trex.type == b"trex":
                    track_id, defaults[track_id] = _parse_trex(data, trex)
    fingerprint = bytearray(data)
    for start, end in volatile:
        fingerprint[start:end] = bytes(end - start)
    return InitSegment(bytes(data), video, audio, defaults, bytes(fingerprint))


def _parse_trex(buf: Buffer, box: Box) -> tuple[int, TrackDefaults]:
    """Return (track_ID, defaults) from a trex box."""
    _, _, pos = _full_box(buf, box)
    _need(box, pos, TREX.size)
    track_id, index, duration, size, flags = TREX.unpack_from(buf, pos)
    return track_id, TrackDefaults(index, duration, size, flags)


def _parse_trak(
    buf: Buffer, trak: Box, volatile: list[tuple[int, int]]
) -> VideoTrackInfo | AudioTrackInfo | None:
    """Describe one video or audio trak (None for others); note its bitrate fields."""
    tkhd = _child(buf, trak, b"tkhd")
    mdia = _child(buf, trak, b"mdia")
    if tkhd is None or mdia is None:
        raise Fmp4Error(f"trak at {trak.start} lacks tkhd or mdia")
    version, _, pos = _full_box(buf, tkhd)
    if version not in TKHD_TRACK_ID:
        raise Fmp4Error(f"tkhd version {version}")
    track_id = _u32_at(buf, tkhd, pos + TKHD_TRACK_ID[version])
    mdhd, hdlr = _child(buf, mdia, b"mdhd"), _child(buf, mdia, b"hdlr")
    if mdhd is None or hdlr is None:
        raise Fmp4Error(f"track {track_id} lacks mdhd or hdlr")
    version, _, pos = _full_box(buf, mdhd)
    if version not in MDHD_TIMESCALE:
        raise Fmp4Error(f"mdhd version {version}")
    timescale = _u32_at(buf, mdhd, pos + MDHD_TIMESCALE[version])
    if timescale == 0:
        raise Fmp4Error(f"track {track_id} has timescale 0")
    _, _, pos = _full_box(buf, hdlr)
    _need(hdlr, pos + HDLR_HANDLER_TYPE, 4)
    handler = bytes(buf[pos + HDLR_HANDLER_TYPE : pos + HDLR_HANDLER_TYPE + 4])
    if handler not in (b"vide", b"soun"):
        return None
    entry = _first_sample_entry(buf, mdia)
    if handler == b"vide":
        info: VideoTrackInfo | AudioTrackInfo = _parse_visual_entry(
            buf, entry, track_id, timescale, _tkhd_size(buf, tkhd)
        )
        children = VISUAL_CHILDREN
    else:
        info, children = _parse_audio_entry(buf, entry, track_id, timescale)
    _note_bitrates(buf, entry, entry.payload_start + children, volatile)
    return info


def _tkhd_size(buf: Buffer, tkhd: Box) -> tuple[int, int]:
    """Return the tkhd width and height (integer part of 16.16)."""
    version, _, pos = _full_box(buf, tkhd)
    offset = pos + TKHD_WIDTH[version]
    return _u32_at(buf, tkhd, offset) >> 16, _u32_at(buf, tkhd, offset + 4) >> 16


def _first_sample_entry(buf: Buffer, mdia: Box) -> Box:
    """Return the first sample entry of mdia/minf/stbl/stsd."""
    minf = _child(buf, mdia, b"minf")
    stbl = _child(buf, minf, b"stbl") if minf else None
    stsd = _child(buf, stbl, b"stsd") if stbl else None
    if stsd is None:
        raise Fmp4Error(f"mdia at {mdia.start} has no stsd")
    _, _, pos = _full_box(buf, stsd)
    _need(stsd, pos, STSD_ENTRIES)
    for entry in iter_boxes(buf, pos + STSD_ENTRIES, stsd.end):
        return entry
    raise Fmp4Error(f"stsd at {stsd.start} has no sample entry")


def _parse_visual_entry(
    buf: Buffer, entry: Box, track_id: int, timescale: int, tkhd_size: tuple[int, int]
) -> VideoTrackInfo:
    """Describe a VisualSampleEntry (§12.1.3) and its codec configuration box."""
    base = entry.payload_start
    _need(entry, base, VISUAL_CHILDREN)
    width = _U16.unpack_from(buf, base + VISUAL_WIDTH)[0]
    height = _U16.unpack_from(buf, base + VISUAL_WIDTH + 2)[0]
    if not width or not height:
        width, height = tkhd_size
    profile = level = None
    avcc = None
    for child in iter_boxes(buf, base + VISUAL_CHILDREN, entry.end):
        payload = child.payload_start
        if child.type == b"avcC":
            _need(child, payload, AVCC_LEVEL + 1)
            profile, level = buf[payload + AVCC_PROFILE], buf[payload + AVCC_LEVEL]
            avcc = bytes(buf[payload : child.end])
        elif child.type == b"hvcC":
            _need(child, payload, HVCC_LEVEL + 1)
            profile, level = buf[payload + HVCC_PROFILE] & 0x1F, buf[payload + HVCC_LEVEL]
        elif child.type == b"av1C":
            _need(child, payload, AV1C_PROFILE_LEVEL + 1)
            byte = buf[payload + AV1C_PROFILE_LEVEL]
            profile, level = byte >> 5, byte & 0x1F
    return VideoTrackInfo(
        track_id, timescale, _fourcc(entry.type), width, height, profile, level, avcc
    )


def _parse_audio_entry(
    buf: Buffer, entry: Box, track_id: int, timescale: int
) -> tuple[AudioTrackInfo, int]:
    """Describe an AudioSampleEntry (§12.2.3); return it and where its child boxes start."""
    base = entry.payload_start
    _need(entry, base, AUDIO_CHILDREN[0])
    qt_version = _U16.unpack_from(buf, base + AUDIO_QT_VERSION)[0]
    channels = _U16.unpack_from(buf, base + AUDIO_CHANNELS)[0]
    sample_rate = (_U32.unpack_from(buf, base + AUDIO_SAMPLE_RATE)[0] >> 16) or timescale
    object_type = None
    children = AUDIO_CHILDREN.get(qt_version, AUDIO_CHILDREN[0])
    if base + children <= entry.end:
        esds = find_box(buf, b"esds", base + children, entry.end)
        if esds is not None:
            asc = _audio_specific_config(buf, esds)
            if asc is not None:
                object_type, asc_rate, asc_channels = asc
                sample_rate = asc_rate or sample_rate
                channels = asc_channels or channels
    info = AudioTrackInfo(
        track_id, timescale, _fourcc(entry.type), object_type, sample_rate, channels
    )
    return info, children


def _note_bitrates(buf: Buffer, entry: Box, children: int, volatile: list[tuple[int, int]]) -> None:
    """Note the byte ranges of a sample entry's bitrate statistics (btrt, esds rates)."""
    if children > entry.end:
        return
    for child in iter_boxes(buf, children, entry.end):
        if child.type == b"btrt":  # §8.5.2.2 BitRateBox: bufferSizeDB, maxBitrate, avgBitrate
            volatile.append((child.payload_start, child.end))
        elif child.type == b"esds":
            config = _decoder_config(buf, child)
            if config is not None:
                # 14496-1 §7.2.6.6: bufferSizeDB(3) maxBitrate(4) avgBitrate(4) after OTI.
                volatile.append((config[0] + 2, config[0] + DECODER_CONFIG_FIXED))


def _fourcc(box_type: bytes) -> str:
    """Return a box type as text, whatever its bytes."""
    return box_type.decode("latin-1")


def _descriptor(buf: Buffer, pos: int, end: int) -> tuple[int, int, int]:
    """Return (tag, payload start, payload end) of an MPEG-4 descriptor (14496-1 §8.3.3)."""
    if pos + 2 > end:
        raise Fmp4Error("truncated esds descriptor")
    tag = buf[pos]
    size = 0
    pos += 1
    # The size is 1-4 bytes of 7 bits each, bit 7 meaning "another byte follows".
    for _ in range(4):
        if pos >= end:
            raise Fmp4Error("truncated esds descriptor size")
        byte = buf[pos]
        pos += 1
        size = (size << 7) | (byte & 0x7F)
        if not byte & 0x80:
            break
    if pos + size > end:
        raise Fmp4Error(f"esds descriptor 0x{tag:02x} overruns the box")
    return tag, pos, pos + size


def _decoder_config(buf: Buffer, esds: Box) -> tuple[int, int] | None:
    """Return the payload range of the esds DecoderConfigDescriptor, if there is one."""
    _, _, pos = _full_box(buf, esds)
    tag, pos, end = _descriptor(buf, pos, esds.end)
    if tag != ES_DESCR_TAG or pos + 3 > end:
        return None
    flags = buf[pos + 2]
    pos += 3  # ES_ID(2) + flags(1), then the optional fields the flags announce
    if flags & 0x80:  # streamDependenceFlag → dependsOn_ES_ID(2)
        pos += 2
    if flags & 0x40:  # URL_Flag → URLlength(1) + URLstring
        if pos >= end:
            return None
        pos += 1 + buf[pos]
    if flags & 0x20:  # OCRstreamFlag → OCR_ES_Id(2)
        pos += 2
    if pos >= end:
        return None
    tag, pos, end = _descriptor(buf, pos, end)
    if tag != DECODER_CONFIG_DESCR_TAG or pos + DECODER_CONFIG_FIXED > end:
        return None
    return pos, end


def _audio_specific_config(buf: Buffer, esds: Box) -> tuple[int, int, int] | None:
    """Return (audioObjectType, sample rate, channels) from the esds AudioSpecificConfig."""
    config = _decoder_config(buf, esds)
    if config is None or config[0] + DECODER_CONFIG_FIXED >= config[1]:
        return None
    tag, pos, end = _descriptor(buf, config[0] + DECODER_CONFIG_FIXED, config[1])
    if tag != DEC_SPECIFIC_INFO_TAG:
        return None
    return _parse_asc(bytes(buf[pos:end]))


def _parse_asc(asc: bytes) -> tuple[int, int, int] | None:
    """Read the AudioSpecificConfig header (14496-3 §1.6.2.1)."""
    bits = int.from_bytes(asc, "big")
    total = len(asc) * 8
    pos = 0

    def take(count: int) -> int:
        nonlocal pos
        if pos + count > total:
            raise Fmp4Error("truncated AudioSpecificConfig")
        pos += count
        return (bits >> (total - pos)) & ((1 << count) - 1)

    if total < 16:
        return None
    object_type = take(5)
    if object_type == 31:  # audioObjectTypeExt
        object_type = 32 + take(6)
    index = take(4)
    if index == AAC_EXPLICIT_RATE:
        rate = take(24)
    elif index < len(AAC_SAMPLE_RATES):
        rate = AAC_SAMPLE_RATES[index]
    else:
        rate = 0
    return object_type, rate, take(4)


def _strip_track(data: bytes, track_id: int) -> bytes:
    """Return ``data`` with the trak and trex of ``track_id`` removed and sizes fixed."""
    out = bytearray()
    for top in iter_boxes(data):
        if top.type != b"moov":
            out += data[top.start : top.end]
            continue
        body = bytearray()
        for box in iter_boxes(data, top.payload_start, top.end):
            if box.type == b"trak" and _trak_id(data, box) == track_id:
                continue
            if box.type == b"mvex":
                mvex = bytearray()
                for child in iter_boxes(data, box.payload_start, box.end):
                    if child.type == b"trex" and _parse_trex(data, child)[0] == track_id:
                        continue
                    mvex += data[child.start : child.end]
                body += _U32.pack(BOX_HEADER + len(mvex)) + b"mvex" + mvex
                continue
            body += data[box.start : box.end]
        out += _U32.pack(BOX_HEADER + len(body)) + b"moov" + body
    return bytes(out)


def _trak_id(buf: Buffer, trak: Box) -> int | None:
    """Return the track_ID in a trak's tkhd."""
    tkhd = _child(buf, trak, b"tkhd")
    if tkhd is None:
        return None
    version, _, pos = _full_box(buf, tkhd)
    return _u32_at(buf, tkhd, pos + TKHD_TRACK_ID.get(version, 8))


# -- fragments in -----------------------------------------------------------------------------


@dataclass(slots=True)
class Sample:
    """One media sample of a fragment; ``data`` is a view into the part it came from."""

    decode_time: int  # absolute, track timescale
    duration: int
    size: int
    flags: int
    composition_offset: int
    data: memoryview

    @property
    def is_sync(self) -> bool:
        """Return True for a sync sample (§8.8.3.1: not non-sync, not dependent)."""
        depends_on = (self.flags >> SAMPLE_DEPENDS_ON_SHIFT) & 0x3
        return not self.flags & SAMPLE_IS_NON_SYNC and depends_on != SAMPLE_DEPENDS_ON_OTHERS


class _Traf(NamedTuple):
    """The tfhd fields that apply to every run of a track fragment."""

    track_id: int
    base: int
    duration: int
    size: int
    flags: int


def parse_fragments(data: Buffer, init: InitSegment) -> dict[int, list[Sample]]:
    """Return every sample of every moof in ``data``, per track id, in decode order."""
    view = data if isinstance(data, memoryview) else memoryview(data)
    tracks: dict[int, list[Sample]] = {}
    clock: dict[int, int] = {}  # next decode time per track when a traf has no tfdt
    for moof in iter_boxes(view):
        if moof.type != b"moof":
            continue
        next_base = moof.start
        for traf in iter_boxes(view, moof.payload_start, moof.end):
            if traf.type == b"traf":
                next_base = _parse_traf(
                    view, moof, traf, implicit_base=next_base, init=init, tracks=tracks, clock=clock
                )
    return tracks


def read_mfhd_sequence(buf: Buffer, moof: Box) -> int:
    """Return the sequence_number of a moof's mfhd (§8.8.5)."""
    mfhd = _child(buf, moof, b"mfhd")
    if mfhd is None:
        raise Fmp4Error(f"moof at {moof.start} has no mfhd")
    _, _, pos = _full_box(buf, mfhd)
    return _u32_at(buf, mfhd, pos + MFHD_SEQUENCE)


def read_tfdt(buf: Buffer, tfdt: Box) -> int:
    """Return baseMediaDecodeTime (§8.8.12), 32- or 64-bit by version."""
    version, _, pos = _full_box(buf, tfdt)
    if version == 1:
        _need(tfdt, pos, 8)
        return int(_U64.unpack_from(buf, pos)[0])
    return _u32_at(buf, tfdt, pos)


def _read_tfhd(buf: Buffer, tfhd: Box, moof: Box, implicit_base: int, init: InitSegment) -> _Traf:
    """Return the track fragment defaults of a tfhd (§8.8.7), falling back to trex."""
    _, flags, pos = _full_box(buf, tfhd)
    track_id = _u32_at(buf, tfhd, pos)
    pos += 4
    trex = init.defaults.get(track_id, TrackDefaults())
    base = implicit_base
    if flags & TFHD_BASE_DATA_OFFSET:
        _need(tfhd, pos, 8)
        # An explicit base is a file offset; a part's buffer stands in for the file.
        base = int(_U64.unpack_from(buf, pos)[0])
        pos += 8
    elif flags & TFHD_DEFAULT_BASE_IS_MOOF:
        base = moof.start
    if flags & TFHD_SAMPLE_DESCRIPTION_INDEX:
        pos += 4
    duration, size, sample_flags = trex.duration, trex.size, trex.flags
    if flags & TFHD_DEFAULT_DURATION:
        duration = _u32_at(buf, tfhd, pos)
        pos += 4
    if flags & TFHD_DEFAULT_SIZE:
        size = _u32_at(buf, tfhd, pos)
        pos += 4
    if flags & TFHD_DEFAULT_FLAGS:
        sample_flags = _u32_at(buf, tfhd, pos)
    return _Traf(track_id, base, duration, size, sample_flags)


def _parse_traf(
    view: memoryview,
    moof: Box,
    traf: Box,
    *,
    implicit_base: int,
    init: InitSegment,
    tracks: dict[int, list[Sample]],
    clock: dict[int, int],
) -> int:
    """Append a traf's samples to ``tracks``; return where its data ended (§8.8.7.1)."""
    tfhd = _child(view, traf, b"tfhd")
    if tfhd is None:
        raise Fmp4Error(f"traf at {traf.start} has no tfhd")
    header = _read_tfhd(view, tfhd, moof, implicit_base, init)
    tfdt = _child(view, traf, b"tfdt")
    decode_time = read_tfdt(view, tfdt) if tfdt else clock.get(header.track_id, 0)
    samples = tracks.setdefault(header.track_id, [])
    data_end = header.base
    for trun in iter_boxes(view, traf.payload_start, traf.end):
        if trun.type == b"trun":
            data_end, decode_time = _parse_trun(
                view, trun, header, data_pos=data_end, decode_time=decode_time, samples=samples
            )
    clock[header.track_id] = decode_time
    return data_end


_ENTRY_STRUCTS: dict[tuple[int, int], Struct] = {}


def _entry_struct(flags: int, version: int) -> Struct:
    """Return the Struct of one trun sample entry for these flags (cached)."""
    key = (flags & 0xF00, version)
    entry = _ENTRY_STRUCTS.get(key)
    if entry is None:
        codes = "".join(
            ("i" if bit == TRUN_CTS_OFFSET and version else "I")
            for bit in _TRUN_FIELDS
            if flags & bit
        )
        entry = _ENTRY_STRUCTS[key] = Struct(">" + codes)
    return entry


def _parse_trun(
    view: memoryview,
    trun: Box,
    traf: _Traf,
    *,
    data_pos: int,
    decode_time: int,
    samples: list[Sample],
) -> tuple[int, int]:
    """Append one run's samples; return (end of its data, next decode time) (§8.8.8)."""
    version, flags, pos = _full_box(view, trun)
    count = _u32_at(view, trun, pos)
    pos += 4
    if flags & TRUN_DATA_OFFSET:
        _need(trun, pos, 4)
        data_pos = traf.base + _S32.unpack_from(view, pos)[0]
        pos += 4
    first_flags = None
    if flags & TRUN_FIRST_SAMPLE_FLAGS:
        first_flags = _u32_at(view, trun, pos)
        pos += 4
    entry = _entry_struct(flags, version)
    if count > MAX_SAMPLES_PER_RUN or count * entry.size > trun.end - pos:
        raise Fmp4Error(f"trun at {trun.start} declares {count} samples it cannot hold")
    # Without per-sample fields the count is unbounded by the box: bound it by the data.
    if not entry.size and count > (len(view) - max(data_pos, 0)) // max(traf.size, 1):
        raise Fmp4Error(f"trun at {trun.start} declares {count} samples beyond the data")
    if count == 0:
        return data_pos, decode_time
    rows = entry.iter_unpack(view[pos : pos + count * entry.size]) if entry.size else ()
    columns = iter(zip(*rows, strict=True))
    durations = next(columns) if flags & TRUN_DURATION else repeat(traf.duration, count)
    sizes = next(columns) if flags & TRUN_SIZE else repeat(traf.size, count)
    all_flags = list(next(columns) if flags & TRUN_FLAGS else repeat(traf.flags, count))
    offsets = next(columns) if flags & TRUN_CTS_OFFSET else repeat(0, count)
    if first_flags is not None:
        all_flags[0] = first_flags
    limit = len(view)
    append = samples.append
    for duration, size, sample_flags, cts in zip(durations, sizes, all_flags, offsets, strict=True):
        end = data_pos + size
        if data_pos < 0 or end > limit:
            raise Fmp4Error(f"sample data at {data_pos}+{size} outside the {limit}-byte buffer")
        append(Sample(decode_time, duration, size, sample_flags, cts, view[data_pos:end]))
        data_pos = end
        decode_time += duration
    return data_pos, decode_time


# -- fragments out ----------------------------------------------------------------------------

_MFHD_SIZE: Final = BOX_HEADER + FULLBOX_HEADER + 4
_TFHD_SIZE: Final = BOX_HEADER + FULLBOX_HEADER + 4
_TFDT_SIZE: Final = BOX_HEADER + FULLBOX_HEADER + 8
_TRUN_HEADER: Final = BOX_HEADER + FULLBOX_HEADER + 8  # sample_count + data_offset
_BOX_HEAD: Final = Struct(">I4s")
_FULL_HEAD: Final = Struct(">I4sI")
_U32_PAIR: Final = Struct(">II")


def build_fragment(
    sequence_number: int, tracks: Sequence[tuple[int, int, Sequence[Sample]]]
) -> bytes:
    """Return one moof + mdat holding ``(track_id, base_decode_time, samples)`` per track."""
    runs = [(tid, base, samples) for tid, base, samples in tracks if samples]
    layouts = [_run_layout(samples) for _, _, samples in runs]
    moof_size = (
        BOX_HEADER
        + _MFHD_SIZE
        + sum(
            BOX_HEADER + _TFHD_SIZE + _TFDT_SIZE + _TRUN_HEADER + len(samples) * entry.size
            for (_, _, samples), (_, _, entry) in zip(runs, layouts, strict=True)
        )
    )
    payload = sum(len(sample.data) for _, _, samples in runs for sample in samples)
    if payload + BOX_HEADER > 0xFFFFFFFF:
        raise Fmp4Error("fragment too large for a 32-bit mdat")
    moof = bytearray(moof_size)
    try:
        _BOX_HEAD.pack_into(moof, 0, moof_size, b"moof")
        _BOX_HEAD.pack_into(moof, BOX_HEADER, _MFHD_SIZE, b"mfhd")
        _U32_PAIR.pack_into(moof, BOX_HEADER * 2, 0, sequence_number)
        pos = BOX_HEADER + _MFHD_SIZE
        data_offset = moof_size + BOX_HEADER  # default-base-is-moof: relative to the moof
        for (track_id, base, samples), layout in zip(runs, layouts, strict=True):
            pos, data_offset = _write_traf(
                moof,
                pos,
                track_id=track_id,
                base_decode_time=base,
                samples=samples,
                layout=layout,
                data_offset=data_offset,
            )
    except StructError as err:
        raise Fmp4Error(f"value out of range for the fragment: {err}") from err
    mdat_head = _BOX_HEAD.pack(BOX_HEADER + payload, b"mdat")
    # The one copy of the media: join reads each sample view straight into the result.
    return b"".join([moof, mdat_head, *(s.data for _, _, samples in runs for s in samples)])


def _run_layout(samples: Sequence[Sample]) -> tuple[int, int, Struct]:
    """Return (trun version, trun flags, entry Struct) for a run of ``samples``."""
    flags = TRUN_DATA_OFFSET | TRUN_DURATION | TRUN_SIZE | TRUN_FLAGS
    version = 0
    # Composition offsets only when some sample needs one; v1 makes them signed (§8.8.8.2).
    if any(sample.composition_offset for sample in samples):
        flags |= TRUN_CTS_OFFSET
        version = int(any(sample.composition_offset < 0 for sample in samples))
    return version, flags, _entry_struct(flags, version)


def _write_traf(
    moof: bytearray,
    pos: int,
    *,
    track_id: int,
    base_decode_time: int,
    samples: Sequence[Sample],
    layout: tuple[int, int, Struct],
    data_offset: int,
) -> tuple[int, int]:
    """Write one traf at ``pos``; return the next write position and data offset."""
    version, flags, entry = layout
    trun_size = _TRUN_HEADER + len(samples) * entry.size
    traf_size = BOX_HEADER + _TFHD_SIZE + _TFDT_SIZE + trun_size
    _BOX_HEAD.pack_into(moof, pos, traf_size, b"traf")
    pos += BOX_HEADER
    _FULL_HEAD.pack_into(moof, pos, _TFHD_SIZE, b"tfhd", TFHD_DEFAULT_BASE_IS_MOOF)
    _U32.pack_into(moof, pos + BOX_HEADER + FULLBOX_HEADER, track_id)
    pos += _TFHD_SIZE
    _FULL_HEAD.pack_into(moof, pos, _TFDT_SIZE, b"tfdt", 1 << 24)
    _U64.pack_into(moof, pos + BOX_HEADER + FULLBOX_HEADER, base_decode_time)
    pos += _TFDT_SIZE
    _FULL_HEAD.pack_into(moof, pos, trun_size, b"trun", (version << 24) | flags)
    _U32.pack_into(moof, pos + BOX_HEADER + FULLBOX_HEADER, len(samples))
    _S32.pack_into(moof, pos + BOX_HEADER + FULLBOX_HEADER + 4, data_offset)
    pos += _TRUN_HEADER
    with_cts = bool(flags & TRUN_CTS_OFFSET)
    for sample in samples:
        size = len(sample.data)
        if with_cts:
            entry.pack_into(
                moof, pos, sample.duration, size, sample.flags, sample.composition_offset
            )
        else:
            entry.pack_into(moof, pos, sample.duration, size, sample.flags)
        pos += entry.size
        data_offset += size
    return pos, data_offset
