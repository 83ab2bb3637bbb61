"""RTCP (RFC 3550 §6): build sender/receiver reports with SDES CNAME, parse what viewers send.

Parsing is total over untrusted bytes: anything malformed raises `RtcpError`, and a compound
packet yields at most `MAX_PACKETS` packets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from struct import Struct
from typing import Final

RTCP_VERSION: Final = 2
PT_SR: Final = 200
PT_RR: Final = 201
PT_SDES: Final = 202
PT_BYE: Final = 203
SDES_END: Final = 0
SDES_CNAME: Final = 1
NTP_UNIX_OFFSET: Final = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
MAX_PACKETS: Final = 32  # more than any sane compound packet in one datagram
MAX_REPORT_BLOCKS: Final = 31  # the 5-bit count

_HEADER: Final = Struct(">BBH")
_U32: Final = Struct(">I")
_SENDER_INFO: Final = Struct(">IQIII")  # SSRC, NTP, RTP timestamp, packets, octets
_REPORT_BLOCK: Final = Struct(">IIIIII")


class RtcpError(Exception):
    """An RTCP packet is malformed."""


@dataclass(frozen=True, slots=True)
class ReportBlock:
    """One reception report (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int  # of 256
    cumulative_lost: int  # signed: duplicates can make it negative
    highest_seq: int  # extended highest sequence number received
    jitter: int  # in RTP timestamp units
    last_sr: int = 0  # middle 32 bits of the last SR's NTP timestamp
    delay_since_last_sr: int = 0  # in 1/65536 s


@dataclass(frozen=True, slots=True)
class SenderReport:
    """An SR: the sender's clocks and counters, plus its reception reports."""

    ssrc: int
    ntp_timestamp: int  # 64-bit NTP: seconds since 1900 << 32 | fraction
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()

    @property
    def ntp_time(self) -> float:
        """Return the NTP timestamp as Unix time in seconds."""
        return (self.ntp_timestamp / (1 << 32)) - NTP_UNIX_OFFSET


@dataclass(frozen=True, slots=True)
class ReceiverReport:
    """An RR: reception reports from a receiver that sends nothing itself."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()


@dataclass(frozen=True, slots=True)
class SdesChunk:
    """The items one source describes (type → raw value)."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...]

    @property
    def cname(self) -> str | None:
        """Return the CNAME item, if any."""
        for item_type, value in self.items:
            if item_type == SDES_CNAME:
                return value.decode("utf-8", "replace")
        return None


@dataclass(frozen=True, slots=True)
class SourceDescription:
    """An SDES packet."""

    chunks: tuple[SdesChunk, ...]


@dataclass(frozen=True, slots=True)
class Goodbye:
    """A BYE: these sources leave."""

    ssrcs: tuple[int, ...]
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class OtherRtcp:
    """Any other packet type (APP, feedback…), kept raw."""

    packet_type: int
    count: int  # the 5-bit field after the version (report count or feedback FMT)
    body: bytes  # everything after the 4-byte header


type RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Goodbye | OtherRtcp


def ntp_timestamp(unix_time: float) -> int:
    """Return the 64-bit NTP timestamp of a Unix time."""
    return round((unix_time + NTP_UNIX_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def middle_32(ntp: int) -> int:
    """Return the middle 32 bits of an NTP timestamp, as RRs echo them in LSR."""
    return (ntp >> 16) & 0xFFFFFFFF


def sender_report(
    *,
    ssrc: int,
    ntp_time: float,
    rtp_timestamp: int,
    packet_count: int,
    octet_count: int,
    cname: str,
    reports: Sequence[ReportBlock] = (),
) -> bytes:
    """Return a compound SR + SDES CNAME packet; ``ntp_time`` is Unix time in seconds."""
    blocks = _report_blocks(reports)
    header = _header(PT_SR, len(reports), _SENDER_INFO.size + len(blocks))
    info = _SENDER_INFO.pack(
        ssrc & 0xFFFFFFFF,
        ntp_timestamp(ntp_time),
        rtp_timestamp & 0xFFFFFFFF,
        packet_count & 0xFFFFFFFF,
        octet_count & 0xFFFFFFFF,
    )
    return header + info + blocks + _sdes_cname(ssrc, cname)


def receiver_report(
    *, ssrc: int, reports: Sequence[ReportBlock] = (), cname: str | None = None
) -> bytes:
    """Return an RR (plus SDES CNAME when given), as a viewer sends it."""
    blocks = _report_blocks(reports)
    packet = _header(PT_RR, len(reports), 4 + len(blocks)) + _U32.pack(ssrc & 0xFFFFFFFF) + blocks
    return packet + (_sdes_cname(ssrc, cname) if cname is not None else b"")


def goodbye(ssrcs: Sequence[int], reason: str | None = None) -> bytes:
    """Return a BYE packet for ``ssrcs``."""
    body = b"".join(_U32.pack(s & 0xFFFFFFFF) for s in ssrcs)
    if reason is not None:
        text = reason.encode()[:255]
        body += bytes([len(text)]) + text
        body += bytes(-len(body) % 4)
    return _header(PT_BYE, len(ssrcs), len(body)) + body


def _header(packet_type: int, count: int, body_length: int) -> bytes:
    """Return the 4-byte header; ``body_length`` must be a multiple of 4."""
    if count > MAX_REPORT_BLOCKS:
        raise ValueError(f"too many report blocks or sources: {count}")
    return _HEADER.pack(RTCP_VERSION << 6 | count, packet_type, body_length // 4)


def _report_blocks(reports: Sequence[ReportBlock]) -> bytes:
    """Return the wire form of reception report blocks."""
    return b"".join(
        _REPORT_BLOCK.pack(
            r.ssrc & 0xFFFFFFFF,
            (r.fraction_lost & 0xFF) << 24 | (r.cumulative_lost & 0xFFFFFF),
            r.highest_seq & 0xFFFFFFFF,
            r.jitter & 0xFFFFFFFF,
            r.last_sr & 0xFFFFFFFF,
            r.delay_since_last_sr & 0xFFFFFFFF,
        )
        for r in reports
    )


def _sdes_cname(ssrc: int, cname: str) -> bytes:
    """Return an SDES packet with one chunk holding a CNAME."""
    text = cname.encode()[:255]
    chunk = _U32.pack(ssrc & 0xFFFFFFFF) + bytes([SDES_CNAME, len(text)]) + text
    chunk += bytes(4 - len(chunk) % 4)  # at least one null octet ends the item list
    return _header(PT_SDES, 1, len(chunk)) + chunk


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Parse a (compound) RTCP packet; raise RtcpError if any part is malformed."""
    packets: list[RtcpPacket] = []
    pos, total = 0, len(data)
    if total < _HEADER.size:
        raise RtcpError(f"RTCP packet too short: {total} bytes")
    while pos < total:
        if len(packets) == MAX_PACKETS:
            raise RtcpError(f"more than {MAX_PACKETS} packets in one compound packet")
        if pos + _HEADER.size > total:
            raise RtcpError(f"truncated RTCP header at offset {pos}")
        first, packet_type, words = _HEADER.unpack_from(data, pos)
        if first >> 6 != RTCP_VERSION:
            raise RtcpError(f"not RTCP version 2 at offset {pos}")
        end = pos + 4 * (words + 1)
        if end > total:
            raise RtcpError(f"RTCP packet at offset {pos} overruns the datagram")
        body_end = end
        if first & 0x20:  # padding: only the last packet may have it (RFC 3550 §6.4.1)
            padding = data[end - 1]
            if end != total or padding == 0 or padding > end - pos - _HEADER.size:
                raise RtcpError(f"bad RTCP padding at offset {pos}")
            body_end -= padding
        packets.append(_parse_one(data, packet_type, first & 0x1F, pos + _HEADER.size, body_end))
        pos = end
    return packets


def _parse_one(data: bytes, packet_type: int, count: int, pos: int, end: int) -> RtcpPacket:
    """Parse one packet's body ``data[pos:end]``."""
    if packet_type == PT_SR:
        if pos + _SENDER_INFO.size > end:
            raise RtcpError("SR too short for its sender info")
        ssrc, ntp, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(data, pos)
        reports = _parse_blocks(data, count, pos + _SENDER_INFO.size, end)
        return SenderReport(ssrc, ntp, rtp_ts, packets, octets, reports)
    if packet_type == PT_RR:
        if pos + 4 > end:
            raise RtcpError("RR too short for its SSRC")
        return ReceiverReport(
            _U32.unpack_from(data, pos)[0], _parse_blocks(data, count, pos + 4, end)
        )
    if packet_type == PT_SDES:
        return SourceDescription(_parse_sdes(data, count, pos, end))
    if packet_type == PT_BYE:
        return _parse_bye(data, count, pos, end)
    return OtherRtcp(packet_type, count, bytes(data[pos:end]))


def _parse_blocks(data: bytes, count: int, pos: int, end: int) -> tuple[ReportBlock, ...]:
    """Parse ``count`` report blocks; profile extensions after them are ignored."""
    if pos + count * _REPORT_BLOCK.size > end:
        raise RtcpError(f"{count} report blocks do not fit the packet")
    blocks = []
    for _ in range(count):
        ssrc, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, pos)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        blocks.append(ReportBlock(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr))
        pos += _REPORT_BLOCK.size
    return tuple(blocks)


def _parse_sdes(data: bytes, count: int, pos: int, end: int) -> tuple[SdesChunk, ...]:
    """Parse ``count`` SDES chunks, each a list of items ended by a null octet, 32-bit aligned."""
    chunks = []
    for _ in range(count):
        if pos + 4 > end:
            raise RtcpError("SDES chunk truncated")
        ssrc = _U32.unpack_from(data, pos)[0]
        pos += 4
        items = []
        while True:
            if pos >= end:
                raise RtcpError("SDES item list not terminated")
            item_type = data[pos]
            if item_type == SDES_END:
                pos = (pos + 4) & ~3  # the null octet, then padding to 32 bits
                break
            if pos + 2 > end or pos + 2 + data[pos + 1] > end:
                raise RtcpError("SDES item overruns the packet")
            length = data[pos + 1]
            items.append((item_type, bytes(data[pos + 2 : pos + 2 + length])))
            pos += 2 + length
        chunks.append(SdesChunk(ssrc, tuple(items)))
    return tuple(chunks)


def _parse_bye(data: bytes, count: int, pos: int, end: int) -> Goodbye:
    """Parse a BYE's SSRC list and optional reason."""
    if pos + 4 * count > end:
        raise RtcpError(f"BYE with {count} sources does not fit the packet")
    ssrcs = tuple(_U32.unpack_from(data, pos + 4 * i)[0] for i in range(count))
    pos += 4 * count
    reason = None
    if pos < end:
        length = data[pos]
        if pos + 1 + length > end:
            raise RtcpError("BYE reason overruns the packet")
        reason = bytes(data[pos + 1 : pos + 1 + length]).decode("utf-8", "replace")
    return Goodbye(ssrcs, reason)
