"""RTCP: golden layouts, round trips, FFmpeg's own sender reports, fuzzing."""

from __future__ import annotations

from contextlib import suppress
import socket
import struct
import time

import av
from hypothesis import given, settings, strategies as st
import pytest

from custom_components.hksv.live.rtcp import (
    NTP_UNIX_OFFSET,
    Goodbye,
    OtherRtcp,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SenderReport,
    SourceDescription,
    goodbye,
    middle_32,
    ntp_timestamp,
    parse_rtcp,
    receiver_report,
    sender_report,
)
from tests.media import ClipSpec, make_video_frame

SSRC = 0x01020304


def test_sender_report_golden() -> None:
    """SR + SDES CNAME laid out byte for byte as RFC 3550 §6.4.1 and §6.5 say."""
    unix = 1_700_000_000.25
    packet = sender_report(
        ssrc=SSRC,
        ntp_time=unix,
        rtp_timestamp=0x11223344,
        packet_count=1000,
        octet_count=1_000_000,
        cname="hksv",
    )
    seconds = 1_700_000_000 + NTP_UNIX_OFFSET
    expected_sr = struct.pack(
        ">BBHIIIIII", 0x80, 200, 6, SSRC, seconds, 1 << 30, 0x11223344, 1000, 1_000_000
    )
    # SDES: header, SSRC, CNAME item (type 1, length 4, "hksv"), then null padding to 32 bits.
    expected_sdes = struct.pack(">BBHI", 0x81, 202, 3, SSRC) + b"\x01\x04hksv" + b"\x00\x00"
    assert packet == expected_sr + expected_sdes


def test_sender_report_round_trip() -> None:
    """Parsing our SR gives back every field, the report blocks and the CNAME."""
    blocks = [ReportBlock(7, 12, -3, 70_000, 55, 0xAABBCCDD, 65_536)]
    packet = sender_report(
        ssrc=SSRC,
        ntp_time=1_800_000_000.5,
        rtp_timestamp=2**32 + 5,
        packet_count=3,
        octet_count=4,
        cname="camera-é",
        reports=blocks,
    )
    sr, sdes = parse_rtcp(packet)
    assert isinstance(sr, SenderReport) and isinstance(sdes, SourceDescription)
    assert (sr.ssrc, sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (SSRC, 5, 3, 4)
    assert sr.ntp_time == pytest.approx(1_800_000_000.5, abs=1e-6)
    assert sr.reports == tuple(blocks)
    assert sdes.chunks[0].ssrc == SSRC and sdes.chunks[0].cname == "camera-é"


@pytest.mark.parametrize("cname_length", range(8))
def test_sdes_padding_for_every_length(cname_length: int) -> None:
    """Every CNAME length pads to 32 bits with at least one null octet, and parses back."""
    packet = receiver_report(ssrc=SSRC, cname="x" * cname_length)
    assert len(packet) % 4 == 0
    rr, sdes = parse_rtcp(packet)
    assert rr == ReceiverReport(SSRC)
    assert isinstance(sdes, SourceDescription) and sdes.chunks[0].cname == "x" * cname_length


def test_receiver_report_with_loss() -> None:
    """An RR's blocks carry fraction lost, signed cumulative loss, highest seq and jitter."""
    blocks = [
        ReportBlock(SSRC, 25, 1234, 0x0001_0005, 90, middle_32(ntp_timestamp(1e9)), 3000),
        ReportBlock(9, 0, -1, 17, 0),
    ]
    (rr,) = parse_rtcp(receiver_report(ssrc=0xDEADBEEF, reports=blocks))
    assert rr == ReceiverReport(0xDEADBEEF, tuple(blocks))


def test_bye_and_other_packets() -> None:
    """BYE with a reason, and an unknown feedback packet kept raw, in one compound."""
    pli = struct.pack(">BBHII", 0x81, 206, 2, 1, SSRC)
    packets = parse_rtcp(goodbye([SSRC, 5], "going away") + pli)
    assert packets == [Goodbye((SSRC, 5), "going away"), OtherRtcp(206, 1, pli[4:])]


def test_padding_on_last_packet() -> None:
    """Padding is accepted on the last packet only and stripped."""
    bye = struct.pack(">BBHI", 0xA1, 203, 2, SSRC) + b"\x00\x00\x00\x04"
    assert parse_rtcp(bye) == [Goodbye((SSRC,))]
    with pytest.raises(RtcpError, match="padding"):
        parse_rtcp(bye + receiver_report(ssrc=1))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc9",
        b"\x00\xc9\x00\x01\x00\x00\x00\x01",
        b"\x80\xc9\x00\x05\x00\x00\x00\x01",
        b"\x81\xc9\x00\x01\x00\x00\x00\x01",
        b"\x80\xc8\x00\x01\x00\x00\x00\x01",
        b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x09ab",
        b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x02ab",
        b"\x82\xcb\x00\x01\x00\x00\x00\x01",
        b"\x81\xcb\x00\x02\x00\x00\x00\x01\x09abc",
        receiver_report(ssrc=1) * 40,
    ],
    ids=[
        "empty",
        "short-header",
        "version0",
        "overrun",
        "rr-blocks-missing",
        "sr-short",
        "sdes-item-overrun",
        "sdes-unterminated",
        "bye-sources-missing",
        "bye-reason-overrun",
        "too-many",
    ],
)
def test_malformed(data: bytes) -> None:
    """Each malformed shape raises RtcpError."""
    with pytest.raises(RtcpError):
        parse_rtcp(data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_raises_only_rtcp_error(data: bytes) -> None:
    """Arbitrary bytes parse or raise RtcpError; nothing else escapes."""
    with suppress(RtcpError):
        parse_rtcp(data)


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_fuzz_mutated_reports(data: st.DataObject) -> None:
    """Mutations of a genuine SR+SDES+BYE compound parse or raise RtcpError only."""
    packet = bytearray(
        sender_report(ssrc=1, ntp_time=0, rtp_timestamp=0, packet_count=0, octet_count=0, cname="c")
        + goodbye([1], "r")
    )
    for _ in range(data.draw(st.integers(1, 4))):
        packet[data.draw(st.integers(0, len(packet) - 1))] = data.draw(st.integers(0, 255))
    with suppress(RtcpError):
        parse_rtcp(bytes(packet[: data.draw(st.integers(0, len(packet)))]))


def _bind_pair() -> tuple[socket.socket, socket.socket]:
    """Bind UDP sockets on port and port + 1 of 127.0.0.1 (FFmpeg sends RTCP to port + 1)."""
    for _ in range(20):
        rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rtp.bind(("127.0.0.1", 0))
        rtcp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            rtcp.bind(("127.0.0.1", rtp.getsockname()[1] + 1))
        except OSError:
            rtp.close()
            rtcp.close()
            continue
        return rtp, rtcp
    pytest.fail("no free UDP port pair")


@pytest.mark.usefixtures("socket_enabled")
def test_parses_ffmpeg_sender_reports() -> None:
    """FFmpeg's RTP muxer (an independent RTCP sender) produces an SR we parse correctly."""
    rtp, rtcp = _bind_pair()
    with rtp, rtcp:
        spec = ClipSpec(width=160, height=120, fps=25)
        port = rtp.getsockname()[1]
        with av.open(f"rtp://127.0.0.1:{port}", "w", format="rtp") as out:
            stream = out.add_stream("libx264", rate=25)
            stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
            stream.codec_context.options = {"preset": "ultrafast"}
            for index in range(25):
                out.mux(stream.encode(make_video_frame(spec, index)))
            out.mux(stream.encode(None))
        rtp.settimeout(2)
        rtcp.settimeout(2)
        rtp_packets = []
        with suppress(TimeoutError):
            while True:
                rtp_packets.append(rtp.recv(2048))
        reports = []
        with suppress(TimeoutError):
            while True:
                reports.append(parse_rtcp(rtcp.recv(2048)))
    # FFmpeg sends its first SR with the first packet (then every 5 s of wall clock, longer
    # than this test runs): nothing sent yet, the RTP clock at the stream's first timestamp.
    ssrc, first_timestamp = struct.unpack(">II", rtp_packets[0][4:12])[::-1]
    (first,) = reports[0]
    assert isinstance(first, SenderReport)
    assert first.ssrc == ssrc
    assert (first.packet_count, first.octet_count, first.reports) == (0, 0, ())
    assert first.rtp_timestamp == first_timestamp
    assert abs(first.ntp_time - time.time()) < 60
