"""Typed TLVs of CameraRTPStreamManagement (live view), and hksv's offer.

Layouts and numbers follow HAP-NodeJS ``RTPStreamManagement.ts`` (docs/live-view.md §1.2); a
real iOS selection is the golden test. Decoding is total: a malformed value raises
``TLVError`` and the write is answered with a HAP status, never an exception in HAP-python.
Integers are little-endian; the frame rate is one byte (HAP-python's two-byte form is wrong).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
import struct
from typing import Any, Final

from ..media.h264 import H264Level, H264Profile
from .recording_config import VideoAttributes
from .tlv8 import U8, U16, U32, Bytes, Kind, Nested, TLVError, TLVStruct, UInt, tlv, tlv_list

SESSION_ID_LENGTH: Final = 16
# iOS's own defaults when it leaves out MAX_MTU (HAP-NodeJS).
DEFAULT_MTU_IPV4: Final = 1378
DEFAULT_MTU_IPV6: Final = 1228
MAX_ADDRESS_LENGTH: Final = 64


class StreamingState(IntEnum):
    """StreamingStatus values (HAP-python's "BUSY" is the spec's "unavailable")."""

    AVAILABLE = 0
    IN_USE = 1
    UNAVAILABLE = 2


class SessionCommand(IntEnum):
    """SelectedRTPStreamConfiguration session commands."""

    END = 0
    START = 1
    SUSPEND = 2
    RESUME = 3
    RECONFIGURE = 4


class SetupStatus(IntEnum):
    """SetupEndpoints response status."""

    SUCCESS = 0
    BUSY = 1
    ERROR = 2


class IPVersion(IntEnum):
    """Address family of an endpoint."""

    IPV4 = 0
    IPV6 = 1


class SrtpSuite(IntEnum):
    """SRTP crypto suites."""

    AES_CM_128_HMAC_SHA1_80 = 0
    AES_256_CM_HMAC_SHA1_80 = 1
    NONE = 2


class RtpAudioCodec(IntEnum):
    """Audio codecs of live streams (only AAC-ELD and Opus work with iOS)."""

    PCMU = 0
    PCMA = 1
    AAC_ELD = 2
    OPUS = 3
    MSBC = 4
    AMR = 5
    AMR_WB = 6


class RtpSampleRate(IntEnum):
    """Live audio sample rates as HAP numbers them."""

    KHZ_8 = 0
    KHZ_16 = 1
    KHZ_24 = 2

    @property
    def hertz(self) -> int:
        """Return the rate in Hz."""
        return (8000, 16000, 24000)[self]


class Float32(Kind):
    """A little-endian IEEE 754 single (the RTCP interval)."""

    _struct = struct.Struct("<f")

    def encode(self, value: Any) -> bytes:
        """Pack the float."""
        return self._struct.pack(float(value))

    def decode(self, data: bytes) -> Any:
        """Unpack the float, checking its width."""
        if len(data) != 4:
            raise TLVError(f"expected 4 bytes, got {len(data)}")
        return self._struct.unpack(data)[0]


class Text(Kind):
    """UTF-8 text of bounded length (an IP address)."""

    def __init__(self, max_length: int) -> None:
        """Describe text of at most ``max_length`` bytes."""
        self.max_length = max_length

    def encode(self, value: Any) -> bytes:
        """Return the UTF-8 bytes."""
        return str(value).encode()

    def decode(self, data: bytes) -> Any:
        """Return the text, refusing oversize or non-UTF-8 input."""
        if len(data) > self.max_length:
            raise TLVError(f"text of {len(data)} bytes exceeds {self.max_length}")
        try:
            return data.decode()
        except UnicodeDecodeError as err:
            raise TLVError("text is not UTF-8") from err


F32: Final = Float32()
SESSION_ID: Final = Bytes(SESSION_ID_LENGTH)

# -- Supported* (static, read by the controller) ----------------------------------------------


@dataclass(frozen=True, slots=True)
class StreamingStatus(TLVStruct):
    """StreamingStatus, UUID 00000120."""

    status: int = tlv(1, U8)


@dataclass(frozen=True, slots=True)
class RtpVideoCodecParameters(TLVStruct):
    """H.264 profiles, levels and packetization modes offered for RTP."""

    profiles: list[int] = tlv_list(1, U8)
    levels: list[int] = tlv_list(2, U8)
    packetization_modes: list[int] = tlv_list(3, U8)


@dataclass(frozen=True, slots=True)
class RtpVideoCodecConfiguration(TLVStruct):
    """One RTP video codec with its resolutions."""

    codec_type: int = tlv(1, U8)
    parameters: RtpVideoCodecParameters = tlv(2, Nested(RtpVideoCodecParameters))
    attributes: list[VideoAttributes] = tlv_list(3, Nested(VideoAttributes))


@dataclass(frozen=True, slots=True)
class SupportedVideoStreamConfiguration(TLVStruct):
    """SupportedVideoStreamConfiguration, UUID 00000114."""

    codecs: list[RtpVideoCodecConfiguration] = tlv_list(1, Nested(RtpVideoCodecConfiguration))


@dataclass(frozen=True, slots=True)
class RtpAudioCodecParameters(TLVStruct):
    """Audio channels, bitrate mode and sample rate offered for RTP."""

    channels: int = tlv(1, U8)
    bitrate_mode: int = tlv(2, U8)
    sample_rate: int = tlv(3, U8)


@dataclass(frozen=True, slots=True)
class RtpAudioCodecConfiguration(TLVStruct):
    """One RTP audio codec at one sample rate."""

    codec_type: int = tlv(1, U8)
    parameters: RtpAudioCodecParameters = tlv(2, Nested(RtpAudioCodecParameters))


@dataclass(frozen=True, slots=True)
class SupportedAudioStreamConfiguration(TLVStruct):
    """SupportedAudioStreamConfiguration, UUID 00000115."""

    codecs: list[RtpAudioCodecConfiguration] = tlv_list(1, Nested(RtpAudioCodecConfiguration))
    comfort_noise: int = tlv(2, U8, default=0)


@dataclass(frozen=True, slots=True)
class SupportedRTPConfiguration(TLVStruct):
    """SupportedRTPConfiguration, UUID 00000116."""

    srtp_crypto_suites: list[int] = tlv_list(2, U8)


# -- SetupEndpoints ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EndpointAddress(TLVStruct):
    """An address and the video/audio RTP ports (controller's in a request, ours in a response)."""

    ip_version: IPVersion = tlv(1, UInt(1, IPVersion))
    address: str = tlv(2, Text(MAX_ADDRESS_LENGTH))
    video_port: int = tlv(3, U16)
    audio_port: int = tlv(4, U16)


@dataclass(frozen=True, slots=True)
class SrtpParameters(TLVStruct):
    """SRTP suite, master key and master salt of one medium."""

    suite: int = tlv(1, U8)
    master_key: bytes = tlv(2, Bytes())
    master_salt: bytes = tlv(3, Bytes())


@dataclass(frozen=True, slots=True)
class SetupEndpointsRequest(TLVStruct):
    """SetupEndpoints as the controller writes it, UUID 00000118."""

    session_id: bytes = tlv(1, SESSION_ID)
    address: EndpointAddress = tlv(3, Nested(EndpointAddress))
    video_srtp: SrtpParameters = tlv(4, Nested(SrtpParameters))
    audio_srtp: SrtpParameters = tlv(5, Nested(SrtpParameters))


@dataclass(frozen=True, slots=True)
class SetupEndpointsResponse(TLVStruct):
    """SetupEndpoints as the accessory answers it (read back by the controller)."""

    session_id: bytes | None = tlv(1, SESSION_ID, default=None)
    status: int = tlv(2, U8, default=SetupStatus.SUCCESS)
    address: EndpointAddress | None = tlv(3, Nested(EndpointAddress), default=None)
    video_srtp: SrtpParameters | None = tlv(4, Nested(SrtpParameters), default=None)
    audio_srtp: SrtpParameters | None = tlv(5, Nested(SrtpParameters), default=None)
    video_ssrc: int | None = tlv(6, U32, default=None)
    audio_ssrc: int | None = tlv(7, U32, default=None)


# -- SelectedRTPStreamConfiguration ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SessionControl(TLVStruct):
    """Which session and what to do with it."""

    session_id: bytes = tlv(1, SESSION_ID)
    command: SessionCommand = tlv(2, UInt(1, SessionCommand))


@dataclass(frozen=True, slots=True)
class SelectedVideoCodecParameters(TLVStruct):
    """The one profile, level and packetization mode chosen."""

    profile: int = tlv(1, U8)
    level: int = tlv(2, U8)
    packetization_mode: int = tlv(3, U8, default=0)
    cvo_enabled: int | None = tlv(4, U8, default=None)
    cvo_id: int | None = tlv(5, U8, default=None)


@dataclass(frozen=True, slots=True)
class VideoRtpParameters(TLVStruct):
    """RTP parameters of the video stream (the SSRC is the controller's own)."""

    payload_type: int | None = tlv(1, U8, default=None)
    ssrc: int | None = tlv(2, U32, default=None)
    max_bitrate: int | None = tlv(3, U16, default=None)  # kbit/s
    rtcp_interval: float | None = tlv(4, F32, default=None)  # seconds
    max_mtu: int | None = tlv(5, U16, default=None)  # only present when not iOS's default


@dataclass(frozen=True, slots=True)
class SelectedVideoParameters(TLVStruct):
    """Selected video; a reconfigure carries only the attributes and RTP parameters."""

    codec_type: int | None = tlv(1, U8, default=None)
    codec_parameters: SelectedVideoCodecParameters | None = tlv(
        2, Nested(SelectedVideoCodecParameters), default=None
    )
    attributes: VideoAttributes | None = tlv(3, Nested(VideoAttributes), default=None)
    rtp: VideoRtpParameters | None = tlv(4, Nested(VideoRtpParameters), default=None)


@dataclass(frozen=True, slots=True)
class SelectedAudioCodecParameters(TLVStruct):
    """Channels, bitrate mode, sample rate and the exact packet time of the audio."""

    channels: int = tlv(1, U8)
    bitrate_mode: int = tlv(2, U8)
    sample_rate: int = tlv(3, U8)
    packet_time: int | None = tlv(4, U8, default=None)  # ms


@dataclass(frozen=True, slots=True)
class AudioRtpParameters(TLVStruct):
    """RTP parameters of the audio stream."""

    payload_type: int | None = tlv(1, U8, default=None)
    ssrc: int | None = tlv(2, U32, default=None)
    max_bitrate: int | None = tlv(3, U16, default=None)
    rtcp_interval: float | None = tlv(4, F32, default=None)
    comfort_noise_payload_type: int | None = tlv(6, U8, default=None)


@dataclass(frozen=True, slots=True)
class SelectedAudioParameters(TLVStruct):
    """Selected audio."""

    codec_type: int | None = tlv(1, U8, default=None)
    codec_parameters: SelectedAudioCodecParameters | None = tlv(
        2, Nested(SelectedAudioCodecParameters), default=None
    )
    rtp: AudioRtpParameters | None = tlv(3, Nested(AudioRtpParameters), default=None)
    comfort_noise: int | None = tlv(4, U8, default=None)


@dataclass(frozen=True, slots=True)
class SelectedRTPStreamConfiguration(TLVStruct):
    """SelectedRTPStreamConfiguration, UUID 00000117."""

    session_control: SessionControl = tlv(1, Nested(SessionControl))
    video: SelectedVideoParameters | None = tlv(2, Nested(SelectedVideoParameters), default=None)
    audio: SelectedAudioParameters | None = tlv(3, Nested(SelectedAudioParameters), default=None)


# -- hksv's offer ---------------------------------------------------------------------------------

LIVE_RESOLUTIONS: Final = (
    (1920, 1080, 30),
    (1280, 720, 30),
    (640, 360, 30),
    (480, 270, 30),
    (320, 240, 30),
    (320, 180, 30),
    (320, 240, 15),  # the Apple Watch (HAP-NodeJS's example: "Apple Watch requires")
)
# "16 and 24 must be supported" and "Opus @16K required by Apple Watch" (HAP-NodeJS).
LIVE_SAMPLE_RATES: Final = (RtpSampleRate.KHZ_16, RtpSampleRate.KHZ_24)
_VARIABLE_BITRATE: Final = 0
_H264: Final = 0
_NON_INTERLEAVED: Final = 0

STREAMING_AVAILABLE: Final = StreamingStatus(status=StreamingState.AVAILABLE).encode()
STREAMING_IN_USE: Final = StreamingStatus(status=StreamingState.IN_USE).encode()
STREAMING_UNAVAILABLE: Final = StreamingStatus(status=StreamingState.UNAVAILABLE).encode()
SUPPORTED_VIDEO_STREAM: Final = SupportedVideoStreamConfiguration(
    codecs=[
        RtpVideoCodecConfiguration(
            codec_type=_H264,
            parameters=RtpVideoCodecParameters(
                profiles=list(H264Profile),
                levels=list(H264Level),
                packetization_modes=[_NON_INTERLEAVED],
            ),
            attributes=[
                VideoAttributes(width=w, height=h, frame_rate=fps) for w, h, fps in LIVE_RESOLUTIONS
            ],
        )
    ]
).encode()
SUPPORTED_AUDIO_STREAM: Final = SupportedAudioStreamConfiguration(
    codecs=[
        RtpAudioCodecConfiguration(
            codec_type=RtpAudioCodec.OPUS,
            parameters=RtpAudioCodecParameters(
                channels=1, bitrate_mode=_VARIABLE_BITRATE, sample_rate=rate
            ),
        )
        for rate in LIVE_SAMPLE_RATES
    ]
).encode()
SUPPORTED_RTP: Final = SupportedRTPConfiguration(
    srtp_crypto_suites=[SrtpSuite.AES_CM_128_HMAC_SHA1_80]
).encode()
# Read before any setup, or after a session ended (HAP-NodeJS).
SETUP_ENDPOINTS_IDLE: Final = SetupEndpointsResponse(status=SetupStatus.ERROR).encode()


def selection_idle(session_id: bytes | None = None) -> bytes:
    """Return what Selected reads as while no session streams: a SUSPEND command (HN)."""
    # HAP-NodeJS answers {01 {02 SUSPEND}} with no session id; ours has the id when known.
    body = b"" if session_id is None else bytes((1, len(session_id))) + session_id
    body += bytes((2, 1, SessionCommand.SUSPEND))
    return bytes((1, len(body))) + body


def decode_setup_endpoints(data: bytes) -> SetupEndpointsRequest:
    """Decode a SetupEndpoints write, or raise TLVError."""
    return SetupEndpointsRequest.decode(data)


def decode_selection(data: bytes) -> SelectedRTPStreamConfiguration:
    """Decode a SelectedRTPStreamConfiguration write, or raise TLVError."""
    return SelectedRTPStreamConfiguration.decode(data)
