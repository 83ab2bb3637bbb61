"""Hand-made ISO BMFF boxes for tests that need layouts HA's muxer never writes."""

from __future__ import annotations

from collections.abc import Sequence
import struct


def box(kind: bytes, *payload: bytes) -> bytes:
    """Return a box with a 32-bit size."""
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def large_box(kind: bytes, *payload: bytes) -> bytes:
    """Return a box with size 1 and a 64-bit largesize."""
    body = b"".join(payload)
    return struct.pack(">I4sQ", 1, kind, 16 + len(body)) + body


def full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    """Return a FullBox."""
    return box(kind, struct.pack(">I", (version << 24) | flags), *payload)


def u16(value: int) -> bytes:
    """Return a big-endian u16."""
    return struct.pack(">H", value)


def u32(value: int) -> bytes:
    """Return a big-endian u32."""
    return struct.pack(">I", value)


def s32(value: int) -> bytes:
    """Return a big-endian s32."""
    return struct.pack(">i", value)


def u64(value: int) -> bytes:
    """Return a big-endian u64."""
    return struct.pack(">Q", value)


def descriptor(tag: int, payload: bytes, *, long_size: bool = False) -> bytes:
    """Return an MPEG-4 descriptor, optionally with ffmpeg's 4-byte size form."""
    if long_size:
        size = len(payload)
        encoded = bytes(
            [0x80 | (size >> 21) & 0x7F, 0x80 | (size >> 14) & 0x7F, 0x80 | (size >> 7) & 0x7F]
        ) + bytes([size & 0x7F])
    else:
        encoded = bytes([len(payload)])
    return bytes([tag]) + encoded + payload


def esds(asc: bytes, *, long_size: bool = False, es_flags: int = 0, oti: int = 0x40) -> bytes:
    """Return an esds box carrying ``asc`` as the DecoderSpecificInfo."""
    extra = b""
    if es_flags & 0x80:
        extra += u16(7)
    if es_flags & 0x40:
        extra += bytes([3]) + b"url"
    if es_flags & 0x20:
        extra += u16(9)
    dsi = descriptor(0x05, asc, long_size=long_size)
    config = descriptor(
        0x04, bytes([oti, 0x15]) + b"\x00\x00\x00" + u32(64000) + u32(64000) + dsi,
        long_size=long_size,
    )  # fmt: skip
    es = descriptor(0x03, u16(1) + bytes([es_flags]) + extra + config, long_size=long_size)
    return full_box(b"esds", 0, 0, es)


def visual_entry(
    kind: bytes = b"avc1", width: int = 1280, height: int = 720, *children: bytes
) -> bytes:
    """Return a VisualSampleEntry (ISO 14496-12 §12.1.3)."""
    fields = (
        bytes(6) + u16(1)  # SampleEntry: reserved, data_reference_index
        + bytes(16) + u16(width) + u16(height)
        + u32(0x00480000) * 2 + u32(0) + u16(1) + bytes(32) + u16(0x18) + struct.pack(">h", -1)
    )  # fmt: skip
    return box(kind, fields, *children)


def audio_entry(
    kind: bytes = b"mp4a",
    channels: int = 2,
    rate: int = 48000,
    *children: bytes,
    qt_version: int = 0,
) -> bytes:
    """Return an AudioSampleEntry, with QuickTime v1/v2 padding when asked."""
    fields = (
        bytes(6) + u16(1) + u16(qt_version) + bytes(6)
        + u16(channels) + u16(16) + u16(0) + u16(0) + u32(rate << 16)
    )  # fmt: skip
    fields += {0: b"", 1: bytes(16), 2: bytes(36)}[qt_version]
    return box(kind, fields, *children)


def trak(track_id: int, handler: bytes, timescale: int, entry: bytes, *, version: int = 0) -> bytes:
    """Return a trak with tkhd, mdhd (v0 or v1), hdlr and one sample entry."""
    if version:
        tkhd_body = u64(0) + u64(0) + u32(track_id) + u32(0) + u64(0)
        mdhd_body = u64(0) + u64(0) + u32(timescale) + u64(0) + u32(0)
    else:
        tkhd_body = u32(0) + u32(0) + u32(track_id) + u32(0) + u32(0)
        mdhd_body = u32(0) + u32(0) + u32(timescale) + u32(0) + u32(0)
    tkhd_body += bytes(8) + bytes(8) + bytes(36) + u32(640 << 16) + u32(360 << 16)
    stsd = full_box(b"stsd", 0, 0, u32(1), entry)
    return box(
        b"trak",
        full_box(b"tkhd", version, 7, tkhd_body),
        box(
            b"mdia",
            full_box(b"mdhd", version, 0, mdhd_body),
            full_box(b"hdlr", 0, 0, u32(0), handler, bytes(12), b"h\x00"),
            box(b"minf", box(b"stbl", stsd)),
        ),
    )


def make_init(traks: Sequence[bytes], trex_ids: Sequence[int], trex_defaults: bytes = b"") -> bytes:
    """Return ftyp + moov(mvhd, traks, mvex(trex per id))."""
    defaults = trex_defaults or (u32(1) + u32(0) + u32(0) + u32(0))
    trexes = [full_box(b"trex", 0, 0, u32(tid), defaults) for tid in trex_ids]
    return box(b"ftyp", b"isom", u32(512), b"isomiso6mp41") + box(
        b"moov",
        full_box(b"mvhd", 0, 0, bytes(96)),
        *traks,
        box(b"mvex", *trexes),
    )
