"""CameraRTPStreamManagement values while live view is not implemented.

HKSV needs the RTP stream management service with ``Active`` (§1.4, §6.2), and hubs parse its
Supported* values. Streaming itself reports "unavailable" and endpoint writes are refused with
-70412 until the live-view issue; recordings do not depend on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Final

from .recording_config import RESOLUTION_720P, RESOLUTION_1080P, VideoAttributes
from .tlv8 import U8, Nested, TLVStruct, tlv, tlv_list


class StreamingState(IntEnum):
    """StreamingStatus values."""

    AVAILABLE = 0
    IN_USE = 1
    UNAVAILABLE = 2


@dataclass(frozen=True, slots=True)
class StreamingStatus(TLVStruct):
    """StreamingStatus, UUID 00000120."""

    status: int = tlv(1, U8)


@dataclass(frozen=True, slots=True)
class RtpVideoCodecParameters(TLVStruct):
    """H.264 profiles, levels and packetization modes for RTP."""

    profiles: list[int] = tlv_list(1, U8)
    levels: list[int] = tlv_list(2, U8)
    packetization_modes: list[int] = tlv_list(3, U8)


@dataclass(frozen=True, slots=True)
class RtpVideoCodecConfiguration(TLVStruct):
    """One RTP video codec."""

    codec_type: int = tlv(1, U8)
    parameters: RtpVideoCodecParameters = tlv(2, Nested(RtpVideoCodecParameters))
    attributes: list[VideoAttributes] = tlv_list(3, Nested(VideoAttributes))


@dataclass(frozen=True, slots=True)
class SupportedVideoStreamConfiguration(TLVStruct):
    """SupportedVideoStreamConfiguration, UUID 00000114."""

    codecs: list[RtpVideoCodecConfiguration] = tlv_list(1, Nested(RtpVideoCodecConfiguration))


@dataclass(frozen=True, slots=True)
class RtpAudioCodecParameters(TLVStruct):
    """Audio channels, bitrate mode and sample rate for RTP."""

    channels: int = tlv(1, U8)
    bitrate_mode: int = tlv(2, U8)
    sample_rate: int = tlv(3, U8)


@dataclass(frozen=True, slots=True)
class RtpAudioCodecConfiguration(TLVStruct):
    """One RTP audio codec."""

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


_OPUS: Final = 3
_SAMPLE_RATE_16K: Final = 1
_SRTP_AES_CM_128_HMAC_SHA1_80: Final = 0

STREAMING_UNAVAILABLE: Final = StreamingStatus(status=StreamingState.UNAVAILABLE).encode()
SUPPORTED_VIDEO_STREAM: Final = SupportedVideoStreamConfiguration(
    codecs=[
        RtpVideoCodecConfiguration(
            codec_type=0,
            parameters=RtpVideoCodecParameters(
                profiles=[0, 1, 2], levels=[0, 1, 2], packetization_modes=[0]
            ),
            attributes=[
                VideoAttributes(width=w, height=h, frame_rate=30)
                for w, h in (RESOLUTION_1080P, RESOLUTION_720P, (640, 360), (320, 180))
            ],
        )
    ]
).encode()
SUPPORTED_AUDIO_STREAM: Final = SupportedAudioStreamConfiguration(
    codecs=[
        RtpAudioCodecConfiguration(
            codec_type=_OPUS,
            parameters=RtpAudioCodecParameters(
                channels=1, bitrate_mode=0, sample_rate=_SAMPLE_RATE_16K
            ),
        )
    ]
).encode()
SUPPORTED_RTP: Final = SupportedRTPConfiguration(
    srtp_crypto_suites=[_SRTP_AES_CM_128_HMAC_SHA1_80]
).encode()
