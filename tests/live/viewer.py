"""An iOS-like live viewer for tests: SetupEndpoints + START over aiohomekit, SRTP in over UDP.

Decryption is pylibsrtp (libsrtp), independent of hksv's own SRTP code. Received RTP is
checked packet by packet, depacketized (single NAL, STAP-A, FU-A) into Annex B access units
and decoded with PyAV; the viewer sends SRTCP receiver reports like iOS until told to stop.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
from dataclasses import dataclass, field
import os
import socket
import struct
import time
from typing import Any, override
import uuid

import av
import pylibsrtp

from custom_components.hksv.hap.recording_config import VideoAttributes
from custom_components.hksv.hap.rtp_stream import (
    AudioRtpParameters,
    EndpointAddress,
    IPVersion,
    SelectedAudioCodecParameters,
    SelectedAudioParameters,
    SelectedRTPStreamConfiguration,
    SelectedVideoCodecParameters,
    SelectedVideoParameters,
    SessionCommand,
    SessionControl,
    SetupEndpointsRequest,
    SetupEndpointsResponse,
    SrtpParameters,
    StreamingStatus,
    VideoRtpParameters,
)
from custom_components.hksv.live.rtcp import ReportBlock, receiver_report
from tests.hub.controller import HOST, HubController, short
from tests.media import read_frame_counter

VIDEO_PT = 99
AUDIO_PT = 110
MTU = 1378
IPV4_UDP_HEADERS = 28
RR_INTERVAL = 0.5


@dataclass
class RtpPacket:
    """One decrypted RTP packet and its datagram size."""

    datagram_size: int
    version: int
    padding: bool
    extension: bool
    csrc_count: int
    marker: bool
    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes
    arrived: float


@dataclass
class AccessUnit:
    """The NAL units of one RTP timestamp, in arrival order."""

    timestamp: int
    nals: list[bytes] = field(default_factory=list)
    packets: list[RtpPacket] = field(default_factory=list)
    stap_a: list[list[int]] = field(default_factory=list)  # NAL types of each STAP-A

    @property
    def types(self) -> list[int]:
        """Return the NAL unit types."""
        return [nal[0] & 0x1F for nal in self.nals]


class _Receiver(asyncio.DatagramProtocol):
    """Collect datagrams with their arrival time."""

    def __init__(self) -> None:
        self.datagrams: list[tuple[float, bytes]] = []
        self.arrived = asyncio.Event()
        self.transport: asyncio.DatagramTransport | None = None

    @override
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.DatagramTransport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)

    @override
    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append((time.monotonic(), data))
        self.arrived.set()


class LiveViewer:
    """One viewer on one stream slot of the accessory."""

    def __init__(self, hub: HubController, slot: int = 0) -> None:
        """Use ``hub``'s HAP session and the ``slot``-th CameraRTPStreamManagement."""
        self.hub = hub
        services = [s for s in hub.accessories[0]["services"] if short(s["type"]) == "110"]
        self.iids = {short(c["type"]): c["iid"] for c in services[slot]["characteristics"]}
        self.session_id = uuid.uuid4().bytes
        self.key, self.salt = os.urandom(16), os.urandom(14)
        self.video = _Receiver()
        self.audio = _Receiver()
        self.response: SetupEndpointsResponse | None = None
        self.reporting = True
        self._rr_task: asyncio.Task[None] | None = None
        self._srtp_in: pylibsrtp.Session | None = None
        self._srtcp_out: pylibsrtp.Session | None = None
        self.started_at: float | None = None

    async def open(self) -> None:
        """Bind the two UDP sockets."""
        loop = asyncio.get_running_loop()
        await loop.create_datagram_endpoint(lambda: self.video, local_addr=(HOST, 0))
        await loop.create_datagram_endpoint(lambda: self.audio, local_addr=(HOST, 0))

    def _port(self, receiver: _Receiver) -> int:
        assert receiver.transport is not None
        return int(receiver.transport.get_extra_info("sockname")[1])

    def setup_request(self) -> bytes:
        """Return the SetupEndpoints write."""
        return SetupEndpointsRequest(
            session_id=self.session_id,
            address=EndpointAddress(
                IPVersion.IPV4, HOST, self._port(self.video), self._port(self.audio)
            ),
            video_srtp=SrtpParameters(0, self.key, self.salt),
            audio_srtp=SrtpParameters(0, self.key, self.salt),
        ).encode()

    async def setup(self) -> SetupEndpointsResponse:
        """Write SetupEndpoints and read the response back (no write-response, as iOS)."""
        result = await self.hub.write(
            self.iids["118"], base64.b64encode(self.setup_request()).decode()
        )
        assert result == {}, result
        raw = await self.hub.read_tlv(self.iids["118"])
        self.response = SetupEndpointsResponse.decode(raw)
        policy = pylibsrtp.Policy(
            key=self.key + self.salt, ssrc_type=pylibsrtp.Policy.SSRC_ANY_INBOUND
        )
        self._srtp_in = pylibsrtp.Session(policy=policy)
        out = pylibsrtp.Policy(
            key=self.key + self.salt, ssrc_type=pylibsrtp.Policy.SSRC_ANY_OUTBOUND
        )
        self._srtcp_out = pylibsrtp.Session(policy=out)
        return self.response

    def selection(
        self,
        command: SessionCommand = SessionCommand.START,
        *,
        width: int = 1280,
        height: int = 720,
        fps: int = 30,
        bitrate: int = 299,
        packet_time: int = 20,
    ) -> bytes:
        """Return a Selected write shaped like iOS's (docs/live-view.md §1.3)."""
        if command is SessionCommand.RECONFIGURE:
            # iOS sends only the attributes and RTP parameters (docs/live-view.md §1.2).
            return SelectedRTPStreamConfiguration(
                SessionControl(self.session_id, command),
                video=SelectedVideoParameters(
                    attributes=VideoAttributes(width=width, height=height, frame_rate=fps),
                    rtp=VideoRtpParameters(max_bitrate=bitrate, rtcp_interval=0.0),
                ),
            ).encode()
        if command is not SessionCommand.START:
            return SelectedRTPStreamConfiguration(SessionControl(self.session_id, command)).encode()
        return SelectedRTPStreamConfiguration(
            SessionControl(self.session_id, command),
            video=SelectedVideoParameters(
                codec_type=0,
                codec_parameters=SelectedVideoCodecParameters(profile=2, level=2),
                attributes=VideoAttributes(width=width, height=height, frame_rate=fps),
                rtp=VideoRtpParameters(
                    payload_type=VIDEO_PT,
                    ssrc=0x1234,
                    max_bitrate=bitrate,
                    rtcp_interval=0.5,
                    max_mtu=MTU,
                ),
            ),
            audio=SelectedAudioParameters(
                codec_type=3,
                codec_parameters=SelectedAudioCodecParameters(
                    channels=1, bitrate_mode=0, sample_rate=1, packet_time=packet_time
                ),
                rtp=AudioRtpParameters(
                    payload_type=AUDIO_PT,
                    ssrc=0x5678,
                    max_bitrate=24,
                    rtcp_interval=5.0,
                    comfort_noise_payload_type=13,
                ),
                comfort_noise=0,
            ),
        ).encode()

    async def select(self, command: SessionCommand = SessionCommand.START, **kw: Any) -> Any:
        """Write Selected; start sending receiver reports after START."""
        result = await self.hub.write(
            self.iids["117"], base64.b64encode(self.selection(command, **kw)).decode()
        )
        if command is SessionCommand.START and result == {}:
            self.started_at = time.monotonic()
            self._rr_task = asyncio.create_task(self._send_reports())
        return result

    async def streaming_status(self) -> int:
        """Read StreamingStatus."""
        return StreamingStatus.decode(await self.hub.read_tlv(self.iids["120"])).status

    async def _send_reports(self) -> None:
        """Send SRTCP receiver reports to the accessory's video port, as iOS does."""
        assert self.response is not None and self.response.address is not None
        target = (self.response.address.address, self.response.address.video_port)
        assert self._srtcp_out is not None and self.video.transport is not None
        while True:
            await asyncio.sleep(RR_INTERVAL)
            if not self.reporting:
                continue
            # The sequence number is in the clear: no need to decrypt just to report.
            rtp = [d for _, d in self.video.datagrams[-8:] if not 192 <= d[1] <= 223]
            highest = struct.unpack_from(">H", rtp[-1], 2)[0] if rtp else 0
            report = receiver_report(
                ssrc=0x1234,
                reports=[
                    ReportBlock(
                        ssrc=self.response.video_ssrc or 0,
                        fraction_lost=0,
                        cumulative_lost=0,
                        highest_seq=highest,
                        jitter=0,
                    )
                ],
            )
            self.video.transport.sendto(self._srtcp_out.protect_rtcp(report), target)

    async def close(self) -> None:
        """Stop reporting and close the sockets."""
        if self._rr_task is not None:
            self._rr_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._rr_task
        for receiver in (self.video, self.audio):
            if receiver.transport is not None:
                receiver.transport.close()

    # -- what arrived ---------------------------------------------------------------------

    @property
    def packets(self) -> list[RtpPacket]:
        """Return every RTP packet received on the video port so far, decrypted."""
        return self._decrypt(self.video)

    def _decrypt(self, receiver: _Receiver) -> list[RtpPacket]:
        """Decrypt the RTP (not RTCP) datagrams once; cache the result."""
        cache: list[RtpPacket] = receiver.__dict__.setdefault("_rtp", [])
        done: int = receiver.__dict__.get("_done", 0)
        assert self._srtp_in is not None
        for arrived, data in receiver.datagrams[done:]:
            if 192 <= data[1] <= 223:
                continue  # SRTCP sender reports
            plain = self._srtp_in.unprotect(data)
            first, second = plain[0], plain[1]
            seq, ts, ssrc = struct.unpack_from(">HII", plain, 2)
            cache.append(
                RtpPacket(
                    len(data),
                    first >> 6,
                    bool(first & 0x20),
                    bool(first & 0x10),
                    first & 0x0F,
                    bool(second & 0x80),
                    second & 0x7F,
                    seq,
                    ts,
                    ssrc,
                    plain[12:],
                    arrived,
                )
            )
        receiver.__dict__["_done"] = len(receiver.datagrams)
        return cache

    @property
    def audio_packets(self) -> list[RtpPacket]:
        """Return every RTP packet received on the audio port so far, decrypted."""
        return self._decrypt(self.audio)

    async def wait_audio(self, count: int, timeout: float = 60) -> None:
        """Wait until ``count`` audio RTP packets arrived."""
        async with asyncio.timeout(timeout):
            while len(self.audio_packets) < count:
                self.audio.arrived.clear()
                await self.audio.arrived.wait()

    def rtcp_count(self) -> int:
        """Return how many SRTCP packets arrived on the video port."""
        return sum(1 for _, d in self.video.datagrams if 192 <= d[1] <= 223)

    async def wait_packets(self, count: int, timeout: float = 60) -> None:
        """Wait until ``count`` video RTP packets arrived."""
        async with asyncio.timeout(timeout):
            while len(self.packets) < count:
                self.video.arrived.clear()
                await self.video.arrived.wait()

    async def wait_frames(self, seconds: float, fps: int, timeout: float = 90) -> None:
        """Wait until about ``seconds`` of access units arrived."""
        async with asyncio.timeout(timeout):
            while sum(1 for p in self.packets if p.marker) < seconds * fps:
                self.video.arrived.clear()
                await self.video.arrived.wait()


def access_units(packets: list[RtpPacket]) -> list[AccessUnit]:
    """Depacketize RTP (RFC 6184 non-interleaved) into access units, checking FU-A order."""
    units: list[AccessUnit] = []
    fragment: bytearray | None = None
    for packet in packets:
        if not units or units[-1].timestamp != packet.timestamp or units[-1].packets[-1].marker:
            units.append(AccessUnit(packet.timestamp))
        unit = units[-1]
        unit.packets.append(packet)
        payload = packet.payload
        nal_type = payload[0] & 0x1F
        if nal_type == 24:  # STAP-A
            pos = 1
            types = []
            while pos < len(payload):
                (size,) = struct.unpack_from(">H", payload, pos)
                unit.nals.append(payload[pos + 2 : pos + 2 + size])
                types.append(payload[pos + 2] & 0x1F)
                pos += 2 + size
            unit.stap_a.append(types)
        elif nal_type == 28:  # FU-A
            header = payload[1]
            if header & 0x80:
                fragment = bytearray([(payload[0] & 0xE0) | (header & 0x1F)])
            assert fragment is not None, "FU-A without a start fragment"
            fragment += payload[2:]
            if header & 0x40:
                unit.nals.append(bytes(fragment))
                fragment = None
        else:
            unit.nals.append(payload)
    return units


def decode_units(units: list[AccessUnit]) -> list[av.VideoFrame]:
    """Decode access units (Annex B) with PyAV's H.264 decoder."""
    codec = av.CodecContext.create("h264", "r")
    frames: list[av.VideoFrame] = []
    for unit in units:
        data = b"".join(b"\x00\x00\x00\x01" + nal for nal in unit.nals)
        frames.extend(codec.decode(av.Packet(data)))
    frames.extend(codec.decode(None))
    return frames


def counters(frames: list[av.VideoFrame], picture: tuple[int, int] | None = None) -> list[int]:
    """Return the frame counters drawn in the pictures (``picture``: rows top, height)."""
    if picture is None:
        return [read_frame_counter(frame) for frame in frames]
    top, height = picture
    return [
        read_frame_counter(
            av.VideoFrame.from_ndarray(
                frame.to_ndarray(format="gray")[top : top + height].copy(), format="gray"
            )
        )
        for frame in frames
    ]


def opus_durations(packets: list[RtpPacket]) -> list[float]:
    """Decode each Opus payload with PyAV and return its duration in seconds."""
    codec = av.CodecContext.create("opus", "r")
    durations = []
    for packet in packets:
        frames = codec.decode(av.Packet(packet.payload))
        samples = sum(f.samples for f in frames)
        rate = frames[0].sample_rate if frames else 48000
        durations.append(round(samples / rate, 4))
    return durations
