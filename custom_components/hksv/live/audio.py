"""Live audio for HomeKit: the camera's AAC-LC → Opus packets of exactly the negotiated length.

HomeKit wants Opus with the RTP clock at the negotiated rate (16/24 kHz, not 48 kHz) and every
packet exactly the negotiated packet time, or the audio is silent (docs live-view.md §2.6).

Threading: `OpusLiveEncoder.encode` and `flush` are blocking PyAV calls. Call them from a
worker thread, or from the event loop through `async_encode`/`async_flush`, which run them on
the encoder's own `PyAVWorker` thread (media/pyav_worker.py), so calls stay ordered and PyAV
objects are only ever touched by that thread. `close` (or `async_close`) stops the thread.
`OpusPacketizer` is pure and cheap: use it wherever the packets are sent.
"""

from __future__ import annotations

from collections.abc import Sequence
import logging
from struct import Struct
from typing import TYPE_CHECKING, Final

import av
from av.audio.resampler import AudioResampler

from ..media.pyav_graphs import release_filter_graphs
from ..media.pyav_worker import PyAVWorker

if TYPE_CHECKING:
    from av.audio.codeccontext import AudioCodecContext
    from av.audio.frame import AudioFrame

_LOGGER = logging.getLogger(__name__)

OPUS_SAMPLE_RATES: Final = frozenset({16_000, 24_000})  # HAP's Opus rates (index 1 and 2)
PACKET_TIMES_MS: Final = frozenset({10, 20, 30, 40, 60})
# libopus frame durations; 30 ms is not one, so it is sent as one packet of three 10 ms frames.
_LIBOPUS_FRAME_MS: Final = frozenset({10, 20, 40, 60})
_SUB_FRAME_MS: Final = 10
MIN_BITRATE_KBPS: Final = 8
MAX_BITRATE_KBPS: Final = 128
AAC_LC: Final = 2
AAC_SAMPLE_RATES: Final = (
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
)  # fmt: skip

# RFC 6716 §3.1: the TOC byte is config(5) | s(1) | c(2); c = 3 means "arbitrary frames".
_TOC_CODE_MASK: Final = 0x03
_TOC_CODE_ARBITRARY: Final = 3
_FRAME_COUNT_VBR: Final = 0x80

_RTP_HEADER: Final = Struct(">BBHII")
_MAX_QUEUED_CALLS: Final = 4


class AudioError(Exception):
    """The source audio cannot be turned into live Opus."""


def aac_audio_specific_config(sample_rate: int, channels: int, object_type: int = AAC_LC) -> bytes:
    """Return a 2-byte AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) for a standard rate."""
    if sample_rate not in AAC_SAMPLE_RATES or not 1 <= channels <= 7 or not 1 <= object_type < 31:
        raise AudioError(f"no AudioSpecificConfig for {object_type}/{sample_rate}/{channels}")
    index = AAC_SAMPLE_RATES.index(sample_rate)
    return (object_type << 11 | index << 7 | channels << 3).to_bytes(2)


def combine_opus_frames(packets: Sequence[bytes]) -> bytes:
    """Return one code-3 Opus packet (RFC 6716 §3.2.5) holding every frame of ``packets``.

    Each input must be a single-frame (code 0) packet. A frame whose TOC configuration differs
    from the first (the encoder switched bandwidth) is sent as zero-length, which decoders
    conceal (§3.2.1), so the packet still lasts exactly the sum of its frames.
    """
    if not packets or any(not p or p[0] & _TOC_CODE_MASK for p in packets):
        raise AudioError("can only combine single-frame Opus packets")
    toc = packets[0][0]
    frames = [p[1:] if p[0] == toc else b"" for p in packets]
    header = bytearray([toc | _TOC_CODE_ARBITRARY, _FRAME_COUNT_VBR | len(frames)])
    for frame in frames[:-1]:
        header += _opus_frame_length(len(frame))
    return bytes(header) + b"".join(frames)


def _opus_frame_length(length: int) -> bytes:
    """Encode a frame length in one or two bytes (RFC 6716 §3.2.1)."""
    if length < 252:
        return bytes([length])
    return bytes([252 + (length - 252) % 4, (length - 252) // 4])


class OpusLiveEncoder:
    """Decode AAC access units, resample to mono at the HAP rate, encode exact Opus packets."""

    __slots__ = (
        "_decoder",
        "_encoder",
        "_frame_samples",
        "_group",
        "_pending",
        "_resampler",
        "_worker",
        "decode_errors",
        "packet_time_ms",
        "packets_out",
        "sample_rate",
        "samples_in",
    )

    def __init__(
        self,
        *,
        aac_config: bytes,
        sample_rate: int,
        packet_time_ms: int,
        bitrate_kbps: int,
        channels: int = 1,
    ) -> None:
        """Open the AAC decoder and the libopus encoder (blocking: a few ms)."""
        if sample_rate not in OPUS_SAMPLE_RATES:
            raise AudioError(f"unsupported Opus sample rate: {sample_rate}")
        if packet_time_ms not in PACKET_TIMES_MS:
            raise AudioError(f"unsupported Opus packet time: {packet_time_ms} ms")
        if channels != 1:
            raise AudioError("HomeKit live audio is mono")
        self.sample_rate = sample_rate
        self.packet_time_ms = packet_time_ms
        frame_ms = packet_time_ms if packet_time_ms in _LIBOPUS_FRAME_MS else _SUB_FRAME_MS
        self._group = packet_time_ms // frame_ms  # encoder frames per packet
        self._frame_samples = sample_rate * frame_ms // 1000
        self._decoder: AudioCodecContext = av.CodecContext.create("aac", "r")
        self._decoder.extradata = aac_config
        self._encoder = self._open_encoder(sample_rate, frame_ms, bitrate_kbps)
        self._resampler = self._new_resampler()
        self._pending: list[bytes] = []  # encoder frames of the packet being assembled
        self._worker: PyAVWorker[None] | None = None
        self.samples_in = 0
        self.packets_out = 0
        self.decode_errors = 0

    @staticmethod
    def _open_encoder(sample_rate: int, frame_ms: int, bitrate_kbps: int) -> AudioCodecContext:
        """Return an opened libopus encoder for mono frames of ``frame_ms``."""
        encoder: AudioCodecContext = av.CodecContext.create("libopus", "w")
        encoder.sample_rate = sample_rate
        encoder.layout = "mono"
        encoder.format = "s16"
        encoder.bit_rate = min(max(bitrate_kbps, MIN_BITRATE_KBPS), MAX_BITRATE_KBPS) * 1000
        encoder.options = {
            "application": "lowdelay",  # CELT only: lowest algorithmic delay (HA, Scrypted)
            "frame_duration": str(frame_ms),
            "vbr": "on",
        }
        encoder.open()
        return encoder

    def encode(self, samples: Sequence[bytes]) -> list[bytes]:
        """Return the Opus packets completed by these AAC access units (blocking)."""
        packets: list[bytes] = []
        for sample in samples:
            self.samples_in += 1
            try:
                frames = self._decoder.decode(av.Packet(sample))
            except av.error.FFmpegError as err:
                self.decode_errors += 1
                _LOGGER.debug("Skipping undecodable AAC sample: %s", err)
                continue
            for frame in frames:
                self._encode_frames(self._resampler.resample(frame), packets)
        return packets

    def flush(self) -> list[bytes]:
        """Return the last packets, the final one padded with silence to the full length."""
        packets: list[bytes] = []
        tail = self._resampler.resample(None)
        for frame in tail:
            whole = frame if frame.samples == self._frame_samples else self._padded(frame)
            self._encode_frames([whole], packets)
        while self._pending:
            self._encode_frames([self._silence()], packets)
        return packets

    async def async_encode(self, samples: Sequence[bytes]) -> list[bytes]:
        """Run `encode` on the encoder's worker thread."""
        batch = list(samples)
        return await self._running_worker().call(lambda: self.encode(batch))

    async def async_flush(self) -> list[bytes]:
        """Run `flush` on the encoder's worker thread."""
        return await self._running_worker().call(self.flush)

    def close(self) -> None:
        """Stop the worker thread (waiting for a running call; queued calls are dropped)."""
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.join()

    async def async_close(self) -> None:
        """Close without blocking the event loop."""
        worker, self._worker = self._worker, None
        if worker is not None:
            await worker.async_stop()

    def _running_worker(self) -> PyAVWorker[None]:
        """Return the worker thread, starting it on first use (from the event loop)."""
        if self._worker is None:
            # Calls come one at a time from one feed; a few may wait while a part is encoded.
            self._worker = PyAVWorker(
                "hksv_opus", max_jobs=_MAX_QUEUED_CALLS, on_exit=self._release_graphs
            )
            self._worker.start()
        return self._worker

    def _release_graphs(self, _error: Exception | None) -> None:
        """Free the resampling graphs as the worker ends, on its thread (PyAV 19 would keep
        them, with their threads, for the cyclic GC: media/pyav_graphs.py)."""
        release_filter_graphs(self._resampler, self._encoder)
        self._resampler = self._new_resampler()  # nothing native until it is used again

    def _new_resampler(self) -> AudioResampler:
        """Return the resampler to the encoder's format and frame size."""
        return AudioResampler("s16", "mono", self.sample_rate, self._frame_samples)

    def _encode_frames(self, frames: list[AudioFrame], packets: list[bytes]) -> None:
        """Encode resampled frames and collect whole packets."""
        for frame in frames:
            frame.pts = None  # the encoder counts samples itself; source gaps do not matter
            for packet in self._encoder.encode(frame):
                self._pending.append(bytes(packet))
                if len(self._pending) == self._group:
                    packet_bytes = (
                        self._pending[0] if self._group == 1 else combine_opus_frames(self._pending)
                    )
                    packets.append(packet_bytes)
                    self.packets_out += 1
                    self._pending = []

    def _silence(self) -> AudioFrame:
        """Return one encoder frame of silence."""
        frame = av.AudioFrame(format="s16", layout="mono", samples=self._frame_samples)
        for plane in frame.planes:
            plane.update(bytes(plane.buffer_size))
        frame.sample_rate = self.sample_rate
        return frame

    def _padded(self, frame: AudioFrame) -> AudioFrame:
        """Return ``frame`` extended with silence to a whole encoder frame."""
        out = self._silence()
        data = bytes(frame.planes[0])[: frame.samples * 2]
        out.planes[0].update(data + bytes(out.planes[0].buffer_size - len(data)))
        return out


class OpusPacketizer:
    """Wrap Opus packets in RTP with the HomeKit clock: one packet per packet time, no marker."""

    __slots__ = (
        "_payload_type",
        "_sequence",
        "_ssrc",
        "_step",
        "octets_sent",
        "packets_sent",
        "timestamp",
    )

    def __init__(
        self,
        *,
        ssrc: int,
        payload_type: int,
        sample_rate: int,
        packet_time_ms: int,
        sequence: int = 0,
        timestamp: int = 0,
    ) -> None:
        """Start at ``sequence`` and ``timestamp``; the clock runs at ``sample_rate``."""
        if not 0 <= payload_type <= 127:
            raise ValueError(f"invalid payload type: {payload_type}")
        self._ssrc = ssrc & 0xFFFFFFFF
        self._payload_type = payload_type
        self._step = sample_rate * packet_time_ms // 1000
        self._sequence = sequence & 0xFFFF
        self.timestamp = timestamp & 0xFFFFFFFF  # of the next packet
        self.packets_sent = 0
        self.octets_sent = 0

    @property
    def sequence(self) -> int:
        """Return the sequence number of the next packet."""
        return self._sequence

    def packetize(self, opus_packet: bytes) -> bytes:
        """Return the RTP packet carrying ``opus_packet``."""
        header = _RTP_HEADER.pack(
            0x80, self._payload_type, self._sequence, self.timestamp, self._ssrc
        )
        self._sequence = (self._sequence + 1) & 0xFFFF
        self.timestamp = (self.timestamp + self._step) & 0xFFFFFFFF
        self.packets_sent += 1
        self.octets_sent += len(opus_packet)
        return header + opus_packet

    def skip(self, packets: int) -> None:
        """Advance the clock over ``packets`` packet times not sent (a gap in the source)."""
        self.timestamp = (self.timestamp + self._step * max(0, packets)) & 0xFFFFFFFF
