"""Live-view TLVs: a real iOS selection, SetupEndpoints both ways, the offer, rejections."""

from __future__ import annotations

import base64
import contextlib
import struct

from hypothesis import given, strategies as st
import pytest

from custom_components.hksv.hap.recording_config import VideoAttributes
from custom_components.hksv.hap.rtp_stream import (
    SETUP_ENDPOINTS_IDLE,
    SUPPORTED_AUDIO_STREAM,
    SUPPORTED_RTP,
    SUPPORTED_VIDEO_STREAM,
    AudioRtpParameters,
    EndpointAddress,
    IPVersion,
    RtpAudioCodec,
    SelectedAudioCodecParameters,
    SelectedRTPStreamConfiguration,
    SelectedVideoCodecParameters,
    SelectedVideoParameters,
    SessionCommand,
    SessionControl,
    SetupEndpointsRequest,
    SetupEndpointsResponse,
    SetupStatus,
    SrtpParameters,
    SupportedAudioStreamConfiguration,
    SupportedRTPConfiguration,
    SupportedVideoStreamConfiguration,
    VideoRtpParameters,
    decode_selection,
    decode_setup_endpoints,
    selection_idle,
)
from custom_components.hksv.hap.tlv8 import TLVError

# What iOS wrote to SelectedRTPStreamConfiguration (home-assistant/core's homekit camera test,
# docs/live-view.md §1.3) and a response-shaped SetupEndpoints value from the same test.
IOS_START = base64.b64decode(
    "ARUCAQEBEDMD1QMXzEaatnKSQ2pxovYCNAEBAAIJAQECAgECAwEAAwsBAgAFAgLQAgMBHgQXAQFjAgQ768/RAwIrAQQE"
    "AAAAPwUCYgUDLAEBAwIMAQEBAgEAAwECBAEUAxYBAW4CBCzq28sDAhgABAQAAKBABgENBAEA"
)
ENDPOINTS_RESPONSE = base64.b64decode(
    "ARAzA9UDF8xGmrZykkNqcaL2AgEAAxoBAQACDTE5Mi4xNjguMjA4LjUDAi7IBAKkxwQlAQEAAhDN0+Y0tZ4jzoO0ske9"
    "UsjpAw6D76oVXnoi7DbawIG4CwUlAQEAAhCyGcROB8P7vFRDzNF2xrK1Aw6NdcLugju9yCfkWVSaVAYEDoAsAAcEpxV8"
    "AA=="
)
SESSION = bytes.fromhex("3303d50317cc469ab67292436a71a2f6")


def test_ios_start_decodes_every_field() -> None:
    """The captured START: 720p30 High 4.0, 299 kbps, MTU 1378; Opus 24 kHz 20 ms."""
    selection = decode_selection(IOS_START)
    assert selection.session_control == SessionControl(SESSION, SessionCommand.START)
    video = selection.video
    assert video is not None
    assert video.codec_type == 0
    assert video.codec_parameters == SelectedVideoCodecParameters(
        profile=2, level=2, packetization_mode=0
    )
    assert video.attributes == VideoAttributes(width=1280, height=720, frame_rate=30)
    assert video.rtp is not None
    assert video.rtp.payload_type == 99
    assert video.rtp.ssrc == struct.unpack("<I", bytes.fromhex("3bebcfd1"))[0]
    assert video.rtp.max_bitrate == 299
    assert video.rtp.rtcp_interval == 0.5
    assert video.rtp.max_mtu == 1378
    audio = selection.audio
    assert audio is not None
    assert audio.codec_type == RtpAudioCodec.OPUS
    assert audio.codec_parameters == SelectedAudioCodecParameters(
        channels=1, bitrate_mode=0, sample_rate=2, packet_time=20
    )
    assert audio.rtp == AudioRtpParameters(
        payload_type=110,
        ssrc=struct.unpack("<I", bytes.fromhex("2ceadbcb"))[0],
        max_bitrate=24,
        rtcp_interval=5.0,
        comfort_noise_payload_type=13,
    )
    assert audio.comfort_noise == 0


def test_ios_start_round_trips_semantically() -> None:
    """Encoding the decoded START and decoding again gives the same structure."""
    selection = decode_selection(IOS_START)
    assert decode_selection(selection.encode()) == selection


def test_endpoints_response_layout() -> None:
    """The response-shaped capture: status, IPv4 address and ports, keys, SSRCs."""
    response = SetupEndpointsResponse.decode(ENDPOINTS_RESPONSE)
    assert response.session_id == SESSION
    assert response.status == SetupStatus.SUCCESS
    assert response.address == EndpointAddress(IPVersion.IPV4, "192.168.208.5", 51246, 51108)
    assert response.video_srtp is not None
    assert response.video_srtp.suite == 0
    assert len(response.video_srtp.master_key) == 16
    assert len(response.video_srtp.master_salt) == 14
    assert response.video_ssrc == 0x002C800E
    assert response.audio_ssrc == 0x007C15A7
    assert SetupEndpointsResponse.decode(response.encode()) == response


@pytest.mark.parametrize(
    ("version", "address"),
    [(IPVersion.IPV4, "192.168.1.20"), (IPVersion.IPV6, "fe80::1c2d:3e4f:5a6b:7c8d")],
)
def test_setup_endpoints_request_round_trip(version: IPVersion, address: str) -> None:
    """A controller's request for IPv4 and IPv6 survives encode/decode with every field."""
    request = SetupEndpointsRequest(
        session_id=SESSION,
        address=EndpointAddress(version, address, 50000, 50002),
        video_srtp=SrtpParameters(0, bytes(range(16)), bytes(range(14))),
        audio_srtp=SrtpParameters(0, bytes(range(16, 32)), bytes(range(14, 28))),
    )
    encoded = request.encode()
    assert encoded[:2] == b"\x01\x10"  # session id first
    assert decode_setup_endpoints(encoded) == request


def test_end_and_reconfigure_commands() -> None:
    """END has only the session control; RECONFIGURE only attributes and RTP parameters."""
    end = SelectedRTPStreamConfiguration(SessionControl(SESSION, SessionCommand.END))
    assert decode_selection(end.encode()) == end
    reconfigure = SelectedRTPStreamConfiguration(
        SessionControl(SESSION, SessionCommand.RECONFIGURE),
        video=SelectedVideoParameters(
            attributes=VideoAttributes(width=640, height=360, frame_rate=30),
            rtp=VideoRtpParameters(max_bitrate=132, rtcp_interval=0.0),
        ),
    )
    decoded = decode_selection(reconfigure.encode())
    assert decoded.video is not None
    assert decoded.video.codec_parameters is None
    assert decoded.video.rtp == VideoRtpParameters(max_bitrate=132, rtcp_interval=0.0)


def test_offer() -> None:
    """Seven resolutions (one byte of fps), three profiles and levels, Opus 16 and 24 kHz."""
    video = SupportedVideoStreamConfiguration.decode(SUPPORTED_VIDEO_STREAM).codecs
    assert len(video) == 1
    assert video[0].parameters.profiles == [0, 1, 2]
    assert video[0].parameters.levels == [0, 1, 2]
    assert video[0].parameters.packetization_modes == [0]
    sizes = [(a.width, a.height, a.frame_rate) for a in video[0].attributes]
    assert sizes == [
        (1920, 1080, 30),
        (1280, 720, 30),
        (640, 360, 30),
        (480, 270, 30),
        (320, 240, 30),
        (320, 180, 30),
        (320, 240, 15),
    ]
    # The frame rate is a single byte (HAP-NodeJS), not HAP-python's two.
    assert bytes.fromhex("0301 1e") in SUPPORTED_VIDEO_STREAM
    audio = SupportedAudioStreamConfiguration.decode(SUPPORTED_AUDIO_STREAM)
    assert [(c.codec_type, c.parameters.sample_rate) for c in audio.codecs] == [(3, 1), (3, 2)]
    assert all(c.parameters.channels == 1 for c in audio.codecs)
    assert audio.comfort_noise == 0
    assert SupportedRTPConfiguration.decode(SUPPORTED_RTP).srtp_crypto_suites == [0]


def test_idle_values() -> None:
    """Before a session: SetupEndpoints reads ERROR; Selected reads a SUSPEND command."""
    assert SetupEndpointsResponse.decode(SETUP_ENDPOINTS_IDLE).status == SetupStatus.ERROR
    idle = decode_selection(selection_idle(SESSION))
    assert idle.session_control.command == SessionCommand.SUSPEND
    assert selection_idle() == bytes.fromhex("0103020102")


@pytest.mark.parametrize(
    ("name", "data"),
    [
        ("short session id", bytes.fromhex("0104 01020304 0201 01")),
        ("unknown command", bytes.fromhex("0115 0110") + SESSION + bytes.fromhex("0201 09")),
        ("truncated", IOS_START[:-3]),
        (
            "rtcp interval of 2 bytes",
            IOS_START.replace(bytes.fromhex("04040000003f"), bytes.fromhex("04020000"))
            .replace(b"\x02\x34", b"\x02\x32")
            .replace(b"\x04\x17", b"\x04\x15"),
        ),
    ],
)
def test_bad_selections_raise(name: str, data: bytes) -> None:
    """Malformed selections raise TLVError (the manager answers -70410)."""
    with pytest.raises(TLVError):
        decode_selection(data)


def test_bad_address_is_refused() -> None:
    """An address beyond 64 bytes or not UTF-8 is refused before it is used."""
    base = SetupEndpointsRequest(
        session_id=SESSION,
        address=EndpointAddress(IPVersion.IPV4, "10.0.0.1", 1, 2),
        video_srtp=SrtpParameters(0, bytes(16), bytes(14)),
        audio_srtp=SrtpParameters(0, bytes(16), bytes(14)),
    ).encode()
    for bad in (b"x" * 65, b"\xff\xfe"):
        data = base.replace(b"\x02\x0810.0.0.1", bytes((2, len(bad))) + bad)
        with pytest.raises(TLVError):
            decode_setup_endpoints(data)


@given(st.binary(max_size=300))
def test_decoders_are_total(data: bytes) -> None:
    """Any bytes decode or raise TLVError, never anything else."""
    for decode in (decode_selection, decode_setup_endpoints):
        with contextlib.suppress(TLVError):
            decode(data)
