"""Live audio: AAC from Home Assistant's real stream worker → exact Opus packets → RTP."""

from __future__ import annotations

from collections.abc import Sequence
import gc
import io
import math
from pathlib import Path
import struct
import threading

import av
import numpy as np
import pytest

from custom_components.hksv.live.audio import (
    AudioError,
    OpusLiveEncoder,
    OpusPacketizer,
    aac_audio_specific_config,
    combine_opus_frames,
)
from custom_components.hksv.media.fmp4 import parse_fragments, parse_init
from tests.media import ClipSpec, write_clip
from tests.recording.ha_parts import ha_segments

TONE_HZ = 440  # tests/media.py's audio tone


def pyav_audio_config(init: bytes) -> bytes | None:
    """Return the AAC AudioSpecificConfig PyAV reads from an init segment (an independent check)."""
    with av.open(io.BytesIO(init), options={"probesize": "32"}) as container:
        for stream in container.streams.audio:
            if stream.codec_context.name == "aac" and stream.codec_context.extradata:
                return bytes(stream.codec_context.extradata)
    return None


class HaAudio:
    """AAC samples and the init segment as HA's stream worker muxes them."""

    def __init__(self, init: bytes, samples: list[bytes], source_rate: int) -> None:
        self.init = init
        self.samples = samples
        self.source_rate = source_rate

    @property
    def seconds(self) -> float:
        """Return the audio duration (AAC-LC: 1024 samples per access unit)."""
        return len(self.samples) * 1024 / self.source_rate


@pytest.fixture(scope="module", params=[(32000, 1), (48000, 2)], ids=["32k-mono", "48k-stereo"])
def ha_audio(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> HaAudio:
    """Run a 3 s clip through HA's stream worker and collect its AAC samples."""
    rate, channels = request.param
    spec = ClipSpec(seconds=3, width=160, height=96, audio_rate=rate, audio_channels=channels)
    clip = write_clip(tmp_path_factory.mktemp("audio") / "clip.ts", spec)
    segments = ha_segments(clip, ll_hls=True)
    init = segments[0].init
    info = parse_init(init)
    assert info.audio is not None
    samples = [
        bytes(sample.data)
        for segment in segments
        for part in segment.parts
        for sample in parse_fragments(part.data, info).get(info.audio.track_id, [])
    ]
    return HaAudio(init, samples, rate)


def opus_duration_ms(packet: bytes) -> float:
    """Return a packet's duration from its TOC and frame count (RFC 6716 §3.1, independent)."""
    config, code = packet[0] >> 3, packet[0] & 0x03
    if config < 12:  # SILK: 10, 20, 40, 60
        frame = (10, 20, 40, 60)[config % 4]
    elif config < 16:  # hybrid: 10, 20
        frame = (10, 20)[config % 2]
    else:  # CELT: 2.5, 5, 10, 20
        frame = (2.5, 5, 10, 20)[config % 4]
    frames = {0: 1, 1: 2, 2: 2}.get(code) or packet[1] & 0x3F
    return frame * frames


def decode_opus(packets: list[bytes]) -> tuple[list[int], np.ndarray]:
    """Decode with FFmpeg's native Opus decoder (48 kHz out); return per-packet sample counts."""
    decoder = av.CodecContext.create("opus", "r")
    counts, chunks = [], []
    for packet in packets:
        frames = decoder.decode(av.Packet(packet))
        counts.append(sum(f.samples for f in frames))
        chunks += [f.to_ndarray()[0] for f in frames]
    return counts, np.concatenate(chunks)


def dominant_hz(signal: np.ndarray, rate: int) -> float:
    """Return the strongest frequency of ``signal``."""
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal))))
    return float(np.fft.rfftfreq(len(signal), 1 / rate)[np.argmax(spectrum)])


def test_config_from_ha_init(ha_audio: HaAudio) -> None:
    """The AudioSpecificConfig comes out of HA's init; the rebuilt 2-byte form decodes alike."""
    config = pyav_audio_config(ha_audio.init)
    assert config is not None
    info = parse_init(ha_audio.init).audio
    assert info is not None and info.object_type == 2
    rebuilt = aac_audio_specific_config(info.sample_rate, info.channels)
    assert config[:2] == rebuilt
    decoded = []
    for extradata in (config, rebuilt):
        decoder = av.CodecContext.create("aac", "r")
        decoder.extradata = extradata
        frames = [f for s in ha_audio.samples[:20] for f in decoder.decode(av.Packet(s))]
        decoded.append(np.concatenate([f.to_ndarray() for f in frames], axis=1))
    assert np.array_equal(decoded[0], decoded[1])


@pytest.mark.parametrize(
    ("rate", "ptime"),
    [(16000, 20), (24000, 20), (16000, 60), (24000, 60), (16000, 30), (24000, 40)],
)
def test_exact_packets(ha_audio: HaAudio, rate: int, ptime: int) -> None:
    """Every packet lasts exactly the packet time, their count is duration / ptime, tone kept."""
    config = pyav_audio_config(ha_audio.init)
    assert config is not None
    encoder = OpusLiveEncoder(
        aac_config=config, sample_rate=rate, packet_time_ms=ptime, bitrate_kbps=24
    )
    packets: list[bytes] = []
    for start in range(0, len(ha_audio.samples), 7):  # parts arrive in bursts
        packets += encoder.encode(ha_audio.samples[start : start + 7])
    streamed = len(packets)
    packets += encoder.flush()
    expected = ha_audio.seconds * 1000 / ptime
    assert streamed <= expected and abs(len(packets) - math.ceil(expected)) <= 1
    assert encoder.packets_out == len(packets) and encoder.decode_errors == 0
    assert {opus_duration_ms(p) for p in packets} == {ptime}
    counts, audio = decode_opus(packets)
    assert set(counts) == {48 * ptime}
    assert dominant_hz(audio[4800:], 48000) == pytest.approx(TONE_HZ, abs=10)
    # Bitrate roughly as negotiated: 24 kbit/s VBR.
    kbps = sum(len(p) for p in packets) * 8 / (len(packets) * ptime)
    assert 8 < kbps < 40


def test_packetizer_clock() -> None:
    """RTP timestamps step by rate × ptime, sequence wraps, no marker, pt and SSRC as given."""
    packetizer = OpusPacketizer(
        ssrc=0xAB,
        payload_type=110,
        sample_rate=16000,
        packet_time_ms=60,
        sequence=65_535,
        timestamp=2**32 - 960,
    )
    rtp = [packetizer.packetize(bytes([0xF8, n])) for n in range(3)]
    headers = [struct.unpack(">BBHII", p[:12]) for p in rtp]
    assert headers == [
        (0x80, 110, 65_535, 2**32 - 960, 0xAB),
        (0x80, 110, 0, 0, 0xAB),
        (0x80, 110, 1, 960, 0xAB),
    ]
    assert [p[12:] for p in rtp] == [bytes([0xF8, n]) for n in range(3)]
    packetizer.skip(2)
    assert struct.unpack(">I", packetizer.packetize(b"\xf8")[4:8])[0] == 960 * 4
    assert (packetizer.packets_sent, packetizer.octets_sent) == (4, 7)
    at_24k = OpusPacketizer(ssrc=1, payload_type=110, sample_rate=24000, packet_time_ms=20)
    stamps = [struct.unpack(">I", at_24k.packetize(b"\xf8")[4:8])[0] for _ in range(2)]
    assert stamps[1] - stamps[0] == 480


def test_combine_frames_conceals_mismatched_frame() -> None:
    """A frame with another TOC goes out empty: the packet still decodes to its full length."""
    encoders = []
    for bandwidth in (16000, 24000):
        encoder = av.CodecContext.create("libopus", "w")
        encoder.sample_rate, encoder.layout, encoder.format = bandwidth, "mono", "s16"
        encoder.options = {"application": "lowdelay", "frame_duration": "10"}
        encoder.open()
        encoders.append(encoder)
    singles = []
    for encoder in encoders:
        frame = av.AudioFrame(format="s16", layout="mono", samples=encoder.frame_size)
        frame.planes[0].update(bytes(frame.planes[0].buffer_size))
        frame.sample_rate = encoder.sample_rate
        singles.append(next(bytes(p) for p in encoder.encode(frame)))
    if singles[0][0] == singles[1][0]:
        pytest.skip("both encoders chose the same TOC")
    packet = combine_opus_frames([singles[0], singles[1], singles[0]])
    assert opus_duration_ms(packet) == 30
    counts, _ = decode_opus([packet])
    assert counts == [1440]
    with pytest.raises(AudioError):
        combine_opus_frames([packet])


def test_bad_input_is_counted_not_raised(ha_audio: HaAudio) -> None:
    """Garbage AAC samples are skipped and counted; the stream goes on."""
    config = pyav_audio_config(ha_audio.init)
    assert config is not None
    encoder = OpusLiveEncoder(
        aac_config=config, sample_rate=16000, packet_time_ms=20, bitrate_kbps=24
    )
    packets = encoder.encode([b"\xff" * 50, *ha_audio.samples[:30], b"", b"\x00"])
    assert encoder.decode_errors >= 1
    assert len(packets) >= int(30 * 1024 / ha_audio.source_rate * 1000 / 20) - 2


@pytest.mark.parametrize(
    "kwargs",
    [
        {"sample_rate": 48000, "packet_time_ms": 20},
        {"sample_rate": 16000, "packet_time_ms": 25},
        {"sample_rate": 16000, "packet_time_ms": 20, "channels": 2},
    ],
    ids=["rate", "ptime", "stereo"],
)
def test_rejects_unsupported_selection(kwargs: dict[str, int]) -> None:
    """Only what HAP can negotiate for Opus is accepted."""
    with pytest.raises(AudioError):
        OpusLiveEncoder(aac_config=b"\x12\x08", bitrate_kbps=24, **kwargs)


class _ThreadRecordingEncoder(OpusLiveEncoder):
    """Remember which thread each encode call ran on."""

    threads: list[str]

    def encode(self, samples: Sequence[bytes]) -> list[bytes]:
        self.threads.append(threading.current_thread().name)
        return super().encode(samples)


async def test_async_api_runs_off_loop_and_closes(ha_audio: HaAudio) -> None:
    """async_encode runs on the encoder's own thread; async_close leaves no thread behind."""
    config = pyav_audio_config(ha_audio.init)
    assert config is not None
    encoder = _ThreadRecordingEncoder(
        aac_config=config, sample_rate=24000, packet_time_ms=20, bitrate_kbps=24
    )
    encoder.threads = []
    packets = await encoder.async_encode(ha_audio.samples[:20])
    packets += await encoder.async_encode(ha_audio.samples[20:40])
    packets += await encoder.async_flush()
    assert len(packets) == math.ceil(40 * 1024 / ha_audio.source_rate * 1000 / 20)
    assert len(encoder.threads) == 2
    assert all(name.startswith("hksv_opus") for name in encoder.threads)
    assert any(t.name.startswith("hksv_opus") for t in threading.enumerate())
    await encoder.async_close()
    assert not any(t.name.startswith("hksv_opus") for t in threading.enumerate())


def native_opus_threads() -> int:
    """Return how many OS threads carry the Opus worker's name.

    libavfilter's graph threads inherit the OS name of the thread that configured the graph
    (the worker, "hksv_opus") and end only when the graph is freed.
    """
    names = (Path(task, "comm").read_text().strip() for task in Path("/proc/self/task").iterdir())
    return sum(1 for name in names if name.startswith("hksv_opus"))


async def test_closed_encoder_frees_its_resampling_graphs_without_the_garbage_collector(
    ha_audio: HaAudio,
) -> None:
    """Closing ends the worker and every graph thread, even with the cyclic GC off.

    With PyAV 19 a libavfilter graph and its filters refer to each other: left to the GC, each
    live view's resampler kept its threads for as long as the GC took to come by.
    """
    config = pyav_audio_config(ha_audio.init)
    assert config is not None
    gc.collect()
    gc.disable()
    try:
        before = native_opus_threads()
        encoder = OpusLiveEncoder(
            aac_config=config, sample_rate=24000, packet_time_ms=20, bitrate_kbps=24
        )
        assert await encoder.async_encode(ha_audio.samples[:40])
        assert native_opus_threads() > before + 1, "the worker and its graph's threads"
        await encoder.async_close()
        del encoder
        assert native_opus_threads() == before
    finally:
        gc.enable()
