"""Init segments (ftyp + moov): each track, its trex defaults, a bitrate-blind fingerprint.

Offsets cite ISO/IEC 14496-12:2015 (ISOBMFF) unless another standard is named.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from struct import Struct
from typing import Final

from .boxes import (
    BOX_HEADER,
    U16,
    U32,
    Box,
    Buffer,
    Fmp4Error,
    child_box,
    find_box,
    full_box,
    iter_boxes,
    need,
    u32_at,
)

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
    _, _, pos = full_box(buf, box)
    need(box, pos, TREX.size)
    track_id, index, duration, size, flags = TREX.unpack_from(buf, pos)
    return track_id, TrackDefaults(index, duration, size, flags)


def _parse_trak(
    buf: Buffer, trak: Box, volatile: list[tuple[int, int]]
) -> VideoTrackInfo | AudioTrackInfo | None:
    """Describe one video or audio trak (None for others); note its bitrate fields."""
    tkhd = child_box(buf, trak, b"tkhd")
    mdia = child_box(buf, trak, b"mdia")
    if tkhd is None or mdia is None:
        raise Fmp4Error(f"trak at {trak.start} lacks tkhd or mdia")
    version, _, pos = full_box(buf, tkhd)
    if version not in TKHD_TRACK_ID:
        raise Fmp4Error(f"tkhd version {version}")
    track_id = u32_at(buf, tkhd, pos + TKHD_TRACK_ID[version])
    mdhd, hdlr = child_box(buf, mdia, b"mdhd"), child_box(buf, mdia, b"hdlr")
    if mdhd is None or hdlr is None:
        raise Fmp4Error(f"track {track_id} lacks mdhd or hdlr")
    version, _, pos = full_box(buf, mdhd)
    if version not in MDHD_TIMESCALE:
        raise Fmp4Error(f"mdhd version {version}")
    timescale = u32_at(buf, mdhd, pos + MDHD_TIMESCALE[version])
    if timescale == 0:
        raise Fmp4Error(f"track {track_id} has timescale 0")
    _, _, pos = full_box(buf, hdlr)
    need(hdlr, pos + HDLR_HANDLER_TYPE, 4)
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
    version, _, pos = full_box(buf, tkhd)
    offset = pos + TKHD_WIDTH[version]
    return u32_at(buf, tkhd, offset) >> 16, u32_at(buf, tkhd, offset + 4) >> 16


def _first_sample_entry(buf: Buffer, mdia: Box) -> Box:
    """Return the first sample entry of mdia/minf/stbl/stsd."""
    minf = child_box(buf, mdia, b"minf")
    stbl = child_box(buf, minf, b"stbl") if minf else None
    stsd = child_box(buf, stbl, b"stsd") if stbl else None
    if stsd is None:
        raise Fmp4Error(f"mdia at {mdia.start} has no stsd")
    _, _, pos = full_box(buf, stsd)
    need(stsd, pos, STSD_ENTRIES)
    for entry in iter_boxes(buf, pos + STSD_ENTRIES, stsd.end):
        return entry
    raise Fmp4Error(f"stsd at {stsd.start} has no sample entry")


def _parse_visual_entry(
    buf: Buffer, entry: Box, track_id: int, timescale: int, tkhd_size: tuple[int, int]
) -> VideoTrackInfo:
    """Describe a VisualSampleEntry (§12.1.3) and its codec configuration box."""
    base = entry.payload_start
    need(entry, base, VISUAL_CHILDREN)
    width = U16.unpack_from(buf, base + VISUAL_WIDTH)[0]
    height = U16.unpack_from(buf, base + VISUAL_WIDTH + 2)[0]
    if not width or not height:
        width, height = tkhd_size
    profile = level = None
    avcc = None
    for child in iter_boxes(buf, base + VISUAL_CHILDREN, entry.end):
        payload = child.payload_start
        if child.type == b"avcC":
            need(child, payload, AVCC_LEVEL + 1)
            profile, level = buf[payload + AVCC_PROFILE], buf[payload + AVCC_LEVEL]
            avcc = bytes(buf[payload : child.end])
        elif child.type == b"hvcC":
            need(child, payload, HVCC_LEVEL + 1)
            profile, level = buf[payload + HVCC_PROFILE] & 0x1F, buf[payload + HVCC_LEVEL]
        elif child.type == b"av1C":
            need(child, payload, AV1C_PROFILE_LEVEL + 1)
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
    need(entry, base, AUDIO_CHILDREN[0])
    qt_version = U16.unpack_from(buf, base + AUDIO_QT_VERSION)[0]
    channels = U16.unpack_from(buf, base + AUDIO_CHANNELS)[0]
    sample_rate = (U32.unpack_from(buf, base + AUDIO_SAMPLE_RATE)[0] >> 16) or timescale
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
    _, _, pos = full_box(buf, esds)
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
                body += U32.pack(BOX_HEADER + len(mvex)) + b"mvex" + mvex
                continue
            body += data[box.start : box.end]
        out += U32.pack(BOX_HEADER + len(body)) + b"moov" + body
    return bytes(out)


def _trak_id(buf: Buffer, trak: Box) -> int | None:
    """Return the track_ID in a trak's tkhd."""
    tkhd = child_box(buf, trak, b"tkhd")
    if tkhd is None:
        return None
    version, _, pos = full_box(buf, tkhd)
    return u32_at(buf, tkhd, pos + TKHD_TRACK_ID.get(version, 8))
