"""H.264 RTP packetizer: real PyAV streams round-trip through an independent depacketizer."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
import struct

import av
from hypothesis import given, settings, strategies as st
import numpy as np
import pytest

from custom_components.hksv.live.h264_rtp import (
    DEFAULT_MTU_IPV4,
    DEFAULT_MTU_IPV6,
    H264Packetizer,
    avcc_nal_length_size,
    avcc_parameter_sets,
    fits_level_4_0,
    patch_sps_level,
    payload_budget,
    split_avcc,
)
from tests.media import ClipSpec, make_video_frame, read_frame_counter

START_CODE = b"\x00\x00\x00\x01"
SSRC = 0xCAFE0001
PT = 99


@dataclass
class Depacketized:
    """What a receiver reassembled from RTP: Annex B access units and per-AU NAL lists."""

    access_units: list[bytes] = field(default_factory=list)
    nal_lists: list[list[bytes]] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    first_payload_types: list[int] = field(default_factory=list)  # 24 = STAP-A first


def depacketize(packets: list[bytes], *, ssrc: int = SSRC, pt: int = PT) -> Depacketized:
    """Reassemble RFC 6184 packets (single NAL, STAP-A, FU-A), checking RTP header rules."""
    out = Depacketized()
    current: list[bytes] = []
    fragment: bytearray | None = None
    timestamp: int | None = None
    expected_seq: int | None = None
    first_type: int | None = None
    for packet in packets:
        first, second, seq, ts, packet_ssrc = struct.unpack(">BBHII", packet[:12])
        assert first == 0x80, "V=2, no padding, no extension, no CSRC"
        assert second & 0x7F == pt and packet_ssrc == ssrc
        assert expected_seq is None or seq == expected_seq
        expected_seq = (seq + 1) & 0xFFFF
        assert timestamp is None or ts == timestamp, "one timestamp per access unit"
        timestamp = ts
        payload = packet[12:]
        nal_type = payload[0] & 0x1F
        first_type = nal_type if first_type is None else first_type
        if nal_type == 24:
            assert payload[0] == 0x18, "STAP-A with F=0, NRI=0"
            pos = 1
            while pos < len(payload):
                size = struct.unpack(">H", payload[pos : pos + 2])[0]
                current.append(payload[pos + 2 : pos + 2 + size])
                pos += 2 + size
            assert pos == len(payload)
        elif nal_type == 28:
            start, end = payload[1] & 0x80, payload[1] & 0x40
            if start:
                assert fragment is None
                fragment = bytearray([(payload[0] & 0xE0) | (payload[1] & 0x1F)])
            assert fragment is not None
            fragment += payload[2:]
            if end:
                current.append(bytes(fragment))
                fragment = None
        else:
            assert fragment is None
            current.append(payload)
        if second & 0x80:
            assert fragment is None, "marker inside a fragmented NAL"
            out.nal_lists.append(current)
            out.access_units.append(b"".join(START_CODE + nal for nal in current))
            out.timestamps.append(ts)
            out.first_payload_types.append(first_type)
            current, timestamp, first_type = [], None, None
    assert not current and fragment is None, "trailing packets without a marker"
    return out


@dataclass
class SourceStream:
    """Samples of an MP4's H.264 track as the prebuffer would hand them over."""

    avcc: bytes
    samples: list[tuple[bytes, int, bool]]  # AVCC data, 90 kHz pts, keyframe
    frames: list[np.ndarray]  # the source decoded directly, for comparison
    width: int
    height: int


def make_h264_mp4(
    path: Path, *, frames: int, bframes: int, width: int, height: int, level: str = "4.0"
) -> Path:
    """Encode a counter clip with libx264 (SEI included, as x264 writes it) into MP4."""
    spec = ClipSpec(width=width, height=height, fps=25)
    with av.open(str(path), "w", format="mp4") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.bit_rate = 3_000_000
        stream.codec_context.gop_size = 25
        stream.codec_context.options = {
            "preset": "ultrafast",
            "profile": "high" if bframes else "baseline",
            "level": level,
            "x264-params": f"keyint=25:min-keyint=25:scenecut=0:bframes={bframes}",
        }
        for index in range(frames):
            out.mux(stream.encode(make_video_frame(spec, index)))
        out.mux(stream.encode(None))
    return path


def read_source(path: Path) -> SourceStream:
    """Demux the MP4's AVCC samples and decode the reference frames."""
    samples: list[tuple[bytes, int, bool]] = []
    frames: list[np.ndarray] = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        avcc = bytes(stream.codec_context.extradata or b"")
        for packet in container.demux(stream):
            if packet.size == 0 or packet.pts is None:
                continue
            pts = round(packet.pts * stream.time_base * 90_000)
            samples.append((bytes(packet), pts, packet.is_keyframe))
        width, height = stream.codec_context.width, stream.codec_context.height
    with av.open(str(path)) as container:
        frames = [f.to_ndarray(format="yuv420p") for f in container.decode(video=0)]
    return SourceStream(avcc, samples, frames, width, height)


def decode_annexb(access_units: list[bytes]) -> list[av.VideoFrame]:
    """Decode Annex B access units with PyAV's h264 decoder."""
    decoder = av.CodecContext.create("h264", "r")
    frames = []
    for unit in access_units:
        frames += decoder.decode(av.Packet(unit))
    frames += decoder.decode(None)
    return frames


@pytest.fixture(scope="module", params=[0, 2], ids=["no-bframes", "bframes"])
def source(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> SourceStream:
    """A 3 s 1280x720 clip with SEI and 1 s GOPs, with or without B-frames."""
    path = tmp_path_factory.mktemp("h264") / f"clip{request.param}.mp4"
    return read_source(
        make_h264_mp4(path, frames=75, bframes=request.param, width=1280, height=720)
    )


def test_avcc_parameter_sets_of_a_real_stream(source: SourceStream) -> None:
    """The avcC from PyAV's MP4 yields one SPS and one PPS, and 4-byte NAL lengths."""
    sps, pps = avcc_parameter_sets(source.avcc)
    assert [nal[0] & 0x1F for nal in sps] == [7]
    assert [nal[0] & 0x1F for nal in pps] == [8]
    assert avcc_nal_length_size(source.avcc) == 4


@pytest.mark.parametrize("mtu", [None, 576, 1500])
def test_round_trip_decodes_identically(source: SourceStream, mtu: int | None) -> None:
    """Packetize, depacketize, decode: the same pictures as decoding the MP4 directly."""
    budget = payload_budget(mtu, ipv6=False)
    packetizer = H264Packetizer(
        ssrc=SSRC, payload_type=PT, max_payload_size=budget, sequence=65_000
    )
    packetizer.set_parameter_sets(*avcc_parameter_sets(source.avcc))
    packets: list[bytes] = []
    sample_packets: list[int] = []
    for data, pts, keyframe in source.samples:
        new = packetizer.packetize(data, pts, keyframe)
        sample_packets.append(len(new))
        packets += new
    assert max(len(p) for p in packets) <= 12 + budget
    # UDP datagram with SRTP tag within the MTU.
    assert max(len(p) for p in packets) + 10 + 8 + 20 <= (mtu or DEFAULT_MTU_IPV4)
    assert packetizer.packets_sent == len(packets)
    assert packetizer.octets_sent == sum(len(p) - 12 for p in packets)
    assert packetizer.sequence == (65_000 + len(packets)) & 0xFFFF  # wrapped past 65535
    received = depacketize(packets)
    assert len(received.access_units) == len(source.samples)
    assert received.timestamps == [pts for _, pts, _ in source.samples]
    for nals, (_, _, keyframe), first_type in zip(
        received.nal_lists, source.samples, received.first_payload_types, strict=True
    ):
        types = [nal[0] & 0x1F for nal in nals]
        assert 6 not in types and 9 not in types, "SEI/AUD dropped"
        if 5 in types:
            assert keyframe and first_type == 24 and types[:2] == [7, 8]
        else:
            assert 7 not in types
    frames = decode_annexb(received.access_units)
    assert len(frames) == len(source.frames)
    for got, expected in zip(frames, source.frames, strict=True):
        assert (got.width, got.height) == (source.width, source.height)
        assert np.array_equal(got.to_ndarray(format="yuv420p"), expected)
    assert [read_frame_counter(f) for f in frames] == list(range(len(frames)))


def test_source_really_has_sei(source: SourceStream) -> None:
    """The fixture exercises SEI dropping: x264 writes its SEI into the first sample."""
    nals, complete = split_avcc(source.samples[0][0])
    assert complete
    assert 6 in [nal[0] & 0x1F for nal in nals]


def test_in_band_parameter_sets_are_aggregated() -> None:
    """An IDR that carries SPS/PPS in-band sends those (not the avcC's) as the STAP-A."""
    sps_old, sps_new, pps = b"\x67old", b"\x67new-sps", b"\x68pps"
    idr = b"\x65" + bytes(3000)
    sample = b"".join(len(n).to_bytes(4) + n for n in (sps_new, pps, b"\x06sei", idr))
    packetizer = H264Packetizer(ssrc=SSRC, payload_type=PT, max_payload_size=1000)
    packetizer.set_parameter_sets([sps_old], [pps])
    packets = packetizer.packetize(sample, 1234, keyframe=True)
    received = depacketize(packets)
    assert received.nal_lists == [[sps_new, pps, idr]]
    assert packets[0][12:] == b"\x18" + b"\x00\x08" + sps_new + b"\x00\x04" + pps
    assert packets[0][1] & 0x80 == 0
    assert [p[1] >> 7 for p in packets] == [0, 0, 0, 0, 1]


def test_no_parameter_sets_known() -> None:
    """Without any SPS/PPS the IDR goes out alone rather than with an empty STAP-A."""
    packetizer = H264Packetizer(ssrc=SSRC, payload_type=PT, max_payload_size=100)
    packets = packetizer.packetize(b"\x00\x00\x00\x03\x65\x01\x02", 0, keyframe=True)
    assert packets == [struct.pack(">BBHII", 0x80, 0x80 | PT, 0, 0, SSRC) + b"\x65\x01\x02"]


def test_malformed_sample_keeps_whole_nals() -> None:
    """A NAL length past the end stops the split there; earlier NALs still go out."""
    packetizer = H264Packetizer(ssrc=SSRC, payload_type=PT, max_payload_size=100)
    packets = packetizer.packetize(b"\x00\x00\x00\x02\x41\x01\x00\x00\x00\x09\x41", 5, False)
    assert depacketize(packets).nal_lists == [[b"\x41\x01"]]
    assert packetizer.malformed_samples == 1
    assert packetizer.packetize(b"\x00\x00", 5, False) == []


@pytest.mark.parametrize(
    ("mtu", "ipv6", "expected"),
    [
        (None, False, DEFAULT_MTU_IPV4 - 50),
        (None, True, DEFAULT_MTU_IPV6 - 70),
        (1378, False, 1328),
        (1228, True, 1158),
        (0, False, DEFAULT_MTU_IPV4 - 50),
        (100, False, 256 - 50),
        (9000, False, 1500 - 50),
    ],
)
def test_payload_budget(mtu: int | None, ipv6: bool, expected: int) -> None:
    """IP, UDP, RTP and the SRTP tag come off the MTU; defaults are HomeKit's."""
    assert payload_budget(mtu, ipv6) == expected


def test_patch_sps_level() -> None:
    """level_idc is byte 3 of the SPS; patterns that need emulation prevention are refused."""
    sps = bytes([0x67, 0x64, 0x00, 0x2A, 0xAC, 0x2B])  # High, level 4.2
    assert patch_sps_level(sps) == bytes([0x67, 0x64, 0x00, 0x28, 0xAC, 0x2B])
    assert patch_sps_level(bytes([0x67, 0x42, 0x00, 0x2A, 0xAC])) is not None
    assert patch_sps_level(bytes([0x67, 0x00, 0x00, 0x2A, 0xAC]), 0) is None
    assert patch_sps_level(b"\x68\x00\x00\x00\x00") is None
    assert fits_level_4_0(1920, 1080, 30) and not fits_level_4_0(2560, 1440, 30)
    assert not fits_level_4_0(1920, 1080, 60)


def test_patched_sps_decodes(tmp_path: Path) -> None:
    """A level-4.1 stream with its SPS patched to 4.0 still decodes frame for frame."""
    path = make_h264_mp4(
        tmp_path / "l41.mp4", frames=10, bframes=0, width=640, height=360, level="4.1"
    )
    src = read_source(path)
    sps, pps = avcc_parameter_sets(src.avcc)
    assert sps[0][3] == 41
    patched = patch_sps_level(sps[0], 40)
    assert patched is not None and patched[3] == 40
    packetizer = H264Packetizer(ssrc=SSRC, payload_type=PT, max_payload_size=1200)
    packetizer.set_parameter_sets([patched], pps)
    packets = [p for d, pts, k in src.samples for p in packetizer.packetize(d, pts, k)]
    frames = decode_annexb(depacketize(packets).access_units)
    assert [read_frame_counter(f) for f in frames] == list(range(10))


@pytest.mark.parametrize(
    "avcc",
    [b"", b"\x00" * 8, b"\x01\x64\x00\x28\xff\xe1\x00", b"\x01\x64\x00\x28\xff\xe1\x00\x09abc"],
    ids=["empty", "version0", "truncated-length", "overrun"],
)
def test_avcc_malformed(avcc: bytes) -> None:
    """Malformed avcC records raise ValueError."""
    with pytest.raises(ValueError):
        avcc_parameter_sets(avcc)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64))
def test_avcc_fuzz_raises_only_value_error(data: bytes) -> None:
    """Arbitrary bytes give parameter sets or ValueError, nothing else."""
    try:
        sps, pps = avcc_parameter_sets(data)
    except ValueError:
        return
    assert all(sps) and all(pps)


NAL_TYPES = st.sampled_from([1, 1, 5, 6, 7, 8, 9, 12])


@settings(max_examples=300, deadline=None)
@given(
    nals=st.lists(st.tuples(NAL_TYPES, st.integers(1, 5000), st.integers(0, 3)), max_size=8),
    budget=st.integers(16, 1500),
    sequence=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 2**33),
)
def test_fragmentation_properties(
    nals: list[tuple[int, int, int]], budget: int, sequence: int, timestamp: int
) -> None:
    """Any AU: payloads within budget, FU-A even split, NALs reassemble exactly, seq wraps."""
    units = [
        bytes([nri << 5 | t]) + bytes([i & 0xFF]) * (size - 1)
        for i, (t, size, nri) in enumerate(nals)
    ]
    sample = b"".join(len(u).to_bytes(4) + u for u in units)
    sps, pps = b"\x67\x42\x00\x1f", b"\x68\xce"
    packetizer = H264Packetizer(
        ssrc=SSRC, payload_type=PT, max_payload_size=budget, sequence=sequence
    )
    packetizer.set_parameter_sets([sps], [pps])
    keyframe = any(t == 5 for t, _, _ in nals)
    packets = packetizer.packetize(sample, timestamp, keyframe)
    kept = [u for u in units if u[0] & 0x1F not in (6, 9, 12)]
    if keyframe and not (
        any(u[0] & 0x1F == 7 for u in kept) and any(u[0] & 0x1F == 8 for u in kept)
    ):
        kept = [sps, pps, *[u for u in kept if u[0] & 0x1F not in (7, 8)]]
    elif keyframe:
        in_band = [u for u in kept if u[0] & 0x1F == 7] + [u for u in kept if u[0] & 0x1F == 8]
        kept = in_band + [u for u in kept if u[0] & 0x1F not in (7, 8)]
    assert packetizer.sequence == (sequence + len(packets)) & 0xFFFF
    if not kept:
        assert packets == []
        return
    assert all(len(p) - 12 <= budget for p in packets)
    assert all(struct.unpack(">I", p[4:8])[0] == timestamp & 0xFFFFFFFF for p in packets)
    received = depacketize(packets, ssrc=SSRC)
    assert received.nal_lists == [kept]
    # FU-A fragments of one NAL differ by at most one byte.
    runs: list[list[int]] = []
    for p in packets:
        if p[12] & 0x1F == 28:
            if p[13] & 0x80:
                runs.append([])
            runs[-1].append(len(p) - 14)
    for run in runs:
        assert len(run) >= 2 and max(run) - min(run) <= 1


def test_sequence_continues_and_wraps() -> None:
    """Sequence numbers run on across access units and wrap at 2^16."""
    packetizer = H264Packetizer(ssrc=SSRC, payload_type=PT, max_payload_size=100, sequence=65_534)
    packets = [
        p
        for n in range(3)
        for p in packetizer.packetize(b"\x00\x00\x00\x02\x41" + bytes([n]), n * 3600, False)
    ]
    seqs = [struct.unpack(">H", p[2:4])[0] for p in packets]
    assert seqs == [65_534, 65_535, 0]


def test_rejects_bad_settings() -> None:
    """A tiny budget or an out-of-range payload type is a programming error."""
    with pytest.raises(ValueError, match="budget"):
        H264Packetizer(ssrc=1, payload_type=PT, max_payload_size=2)
    with pytest.raises(ValueError, match="payload type"):
        H264Packetizer(ssrc=1, payload_type=200, max_payload_size=1000)


@pytest.mark.parametrize("bframes", [False, True], ids=["plain", "bframes"])
def test_home_assistant_parts(tmp_path: Path, bframes: bool) -> None:
    """Samples from HA's real stream worker (avcC in the init) packetize into a decodable stream."""
    from custom_components.hksv.media.fmp4 import parse_fragments, parse_init
    from tests.media import write_clip
    from tests.recording.ha_parts import ha_segments

    if bframes:
        clip = make_h264_mp4(tmp_path / "b.mp4", frames=60, bframes=2, width=640, height=360)
    else:
        clip = write_clip(tmp_path / "c.ts", ClipSpec(seconds=3, width=640, height=360))
    segments = ha_segments(clip, ll_hls=True)
    init = parse_init(segments[0].init)
    assert init.video is not None and init.video.avcc is not None
    packetizer = H264Packetizer(ssrc=SSRC, payload_type=PT, max_payload_size=1178)
    packetizer.set_parameter_sets(*avcc_parameter_sets(init.video.avcc))
    nal_length = avcc_nal_length_size(init.video.avcc)
    scale = 90_000 / init.video.timescale
    sps, pps = avcc_parameter_sets(init.video.avcc)
    packets = []
    reference = []  # the same samples straight to Annex B, SPS/PPS before each sync sample
    for segment in segments:
        for part in segment.parts:
            for sample in parse_fragments(part.data, init).get(init.video.track_id, []):
                pts = round((sample.decode_time + sample.composition_offset) * scale)
                data = bytes(sample.data)
                packets += packetizer.packetize(data, pts, sample.is_sync, nal_length)
                nals = [bytes(n) for n in split_avcc(data, nal_length)[0]]
                if sample.is_sync:
                    nals = [*sps, *pps, *nals]
                reference.append(b"".join(START_CODE + n for n in nals))
    received = depacketize(packets)
    assert len(received.access_units) == len(reference)
    for nals, first_type in zip(received.nal_lists, received.first_payload_types, strict=True):
        if any(nal[0] & 0x1F == 5 for nal in nals):
            assert first_type == 24
    frames = decode_annexb(received.access_units)
    expected = decode_annexb(reference)
    assert len(frames) == len(expected) >= 40
    for got, want in zip(frames, expected, strict=True):
        assert np.array_equal(got.to_ndarray(format="yuv420p"), want.to_ndarray(format="yuv420p"))
    # HA ends the clip mid-segment in decode order, so only the head is surely contiguous.
    counters = [read_frame_counter(f) for f in frames]
    assert counters[:40] == list(range(counters[0], counters[0] + 40))


def test_in_band_sps_level_is_relabelled() -> None:
    """Copy mode relabels the SPS a camera repeats in-band, not only the avcC's."""
    sps = bytes([0x67, 0x64, 0x00, 51, 0xAC, 0xD9, 0x40, 0x50])
    pps = bytes([0x68, 0xEB, 0xE3, 0xCB])
    idr = bytes([0x65, 0x88]) + bytes(200)
    sample = b"".join(len(n).to_bytes(4) + n for n in (sps, pps, idr))
    packetizer = H264Packetizer(ssrc=1, payload_type=99, max_payload_size=1000)
    packetizer.sps_level = 40
    packets = packetizer.packetize(sample, 0, True)
    stap = packets[0][12:]
    assert stap[0] == 24
    first = stap[3 : 3 + int.from_bytes(stap[1:3])]
    assert first[0] & 0x1F == 7 and first[3] == 40
    assert first[:3] + first[4:] == sps[:3] + sps[4:]
    # Without relabelling the camera's SPS goes out as is.
    plain = H264Packetizer(ssrc=1, payload_type=99, max_payload_size=1000)
    assert plain.packetize(sample, 0, True)[0][12 + 3 + 3] == 51
