"""Recording configurations: golden TLVs, the narrowed offer, and validation of selections."""

from __future__ import annotations

from dataclasses import replace
import json
from pathlib import Path
from typing import Any

import pytest

from custom_components.hksv.hap.recording_config import (
    AudioSampleRate,
    EventTrigger,
    SelectedCameraRecordingConfiguration,
    SelectionError,
    SourceVideo,
    SupportedAudioRecordingConfiguration,
    SupportedCameraRecordingConfiguration,
    SupportedVideoRecordingConfiguration,
    VideoAttributes,
    build_offer,
    parse_selection,
)
from custom_components.hksv.media.h264 import H264Level, H264Profile

VECTORS = {
    v["name"]: v
    for v in json.loads(
        (Path(__file__).parents[3] / "shared/fixtures/hds-vectors.json").read_text()
    )["vectors"]
    if v["kind"] == "tlv8"
}
HUB_WRITE = bytes.fromhex(VECTORS["selected_camera_recording_configuration_write"]["encoded_hex"])


@pytest.mark.parametrize(
    ("name", "cls"),
    [
        ("supported_camera_recording_configuration", SupportedCameraRecordingConfiguration),
        ("supported_video_recording_configuration", SupportedVideoRecordingConfiguration),
        ("supported_audio_recording_configuration", SupportedAudioRecordingConfiguration),
        ("selected_camera_recording_configuration_write", SelectedCameraRecordingConfiguration),
    ],
)
def test_golden_tlvs_round_trip_byte_for_byte(name: str, cls: Any) -> None:
    """hap-nodejs' encodings decode and re-encode to the same bytes."""
    data = bytes.fromhex(VECTORS[name]["encoded_hex"])
    assert cls.decode(data).encode() == data


def test_hub_write_matches_hap_nodejs_parse() -> None:
    """The real hub write decodes to what hap-nodejs parsed."""
    parsed = VECTORS["selected_camera_recording_configuration_write"]["hap_nodejs_parsed"]
    selection = parse_selection(HUB_WRITE)
    assert selection.recording.prebuffer_length == parsed["prebufferLength"]
    assert selection.recording.event_trigger_options == EventTrigger.MOTION
    container = selection.recording.media_container_configuration
    assert (
        container.parameters.fragment_length
        == parsed["mediaContainerConfiguration"]["fragmentLength"]
    )
    video = selection.video
    assert video.parameters.profiles == [H264Profile.MAIN]
    assert video.parameters.levels == [H264Level.LEVEL4_0]
    assert video.parameters.bitrate == parsed["videoCodec"]["parameters"]["bitRate"]
    assert video.parameters.iframe_interval == parsed["videoCodec"]["parameters"]["iFrameInterval"]
    assert (
        video.attributes[0].width,
        video.attributes[0].height,
        video.attributes[0].frame_rate,
    ) == (
        1200,
        1600,
        24,
    )
    audio = selection.audio.parameters
    assert audio.sample_rates == [AudioSampleRate.KHZ_32]
    assert audio.channels == 1
    assert audio.max_bitrate == 64


def adapted_hub_write(width: int = 1920, height: int = 1080, fps: int = 30) -> bytes:
    """Return the real hub write with its resolution changed to one we offer."""
    selection = parse_selection(HUB_WRITE)
    video = replace(
        selection.video, attributes=[VideoAttributes(width=width, height=height, frame_rate=fps)]
    )
    return replace(selection, video=video).encode()


OFFER = build_offer(SourceVideo(), max_height=1080, prebuffer_ms=4000, doorbell=True)


def test_offer_is_narrow() -> None:
    """720p and 1080p at 30 fps, one AAC-LC rate, fMP4 4000 ms, prebuffer 4000 ms."""
    video = OFFER.video.codec_configurations
    assert len(video) == 1
    assert [(a.width, a.height, a.frame_rate) for a in video[0].attributes] == [
        (1920, 1080, 30),
        (1280, 720, 30),
    ]
    audio = OFFER.audio.codec_configurations
    assert len(audio) == 1
    assert audio[0].parameters.sample_rates == [AudioSampleRate.KHZ_32]
    assert OFFER.camera.prebuffer_length == 4000
    assert OFFER.camera.event_trigger_options == EventTrigger.MOTION | EventTrigger.DOORBELL
    assert [c.parameters.fragment_length for c in OFFER.camera.media_container_configurations] == [
        4000
    ]
    # The offer decodes as the types a hub reads.
    assert SupportedVideoRecordingConfiguration.decode(OFFER.encoded[1]) == OFFER.video


@pytest.mark.parametrize(
    ("source", "max_height", "expected"),
    [
        (SourceVideo(width=1920, height=1080, fps=30), 1080, [(1920, 1080, 30), (1280, 720, 30)]),
        (SourceVideo(width=2560, height=1440, fps=25), 1080, [(1920, 1080, 30), (1280, 720, 30)]),
        (SourceVideo(width=1920, height=1080, fps=30), 720, [(1280, 720, 30)]),
        (SourceVideo(width=1280, height=720, fps=15), 1080, [(1280, 720, 30)]),
        (SourceVideo(width=640, height=360, fps=10), 1080, [(1280, 720, 30)]),
    ],
)
def test_offer_follows_source_and_options(
    source: SourceVideo, max_height: int, expected: list[tuple[int, int, int]]
) -> None:
    """1080p only when the camera has it (never upscale); always 30 fps, whatever it measures."""
    offer = build_offer(source, max_height=max_height, prebuffer_ms=4000, doorbell=False)
    attrs = offer.video.codec_configurations[0].attributes
    assert [(a.width, a.height, a.frame_rate) for a in attrs] == expected
    assert offer.camera.event_trigger_options == EventTrigger.MOTION


def test_offer_keeps_camera_aac_rate() -> None:
    """A camera's own AAC-LC rate is offered so audio can be copied."""
    offer = build_offer(
        SourceVideo(audio_codec="aac-lc", audio_sample_rate=16000, audio_channels=2),
        max_height=1080,
        prebuffer_ms=8000,
        doorbell=False,
    )
    params = offer.audio.codec_configurations[0].parameters
    assert params.sample_rates == [AudioSampleRate.KHZ_16]
    assert params.channels == 2
    assert offer.camera.prebuffer_length == 8000


def test_fingerprint_tracks_the_offer() -> None:
    """The fingerprint is stable and changes with the offer."""
    again = build_offer(SourceVideo(), max_height=1080, prebuffer_ms=4000, doorbell=True)
    assert again.fingerprint == OFFER.fingerprint
    other = build_offer(SourceVideo(), max_height=720, prebuffer_ms=4000, doorbell=True)
    assert other.fingerprint != OFFER.fingerprint


def test_adapted_hub_write_is_accepted() -> None:
    """The hub write, at an offered resolution, validates."""
    OFFER.validate(parse_selection(adapted_hub_write()))
    OFFER.validate(parse_selection(adapted_hub_write(1280, 720, 24)))


def _mutate(**changes: Any) -> bytes:
    """Return the adapted hub write with one part changed."""
    selection = parse_selection(adapted_hub_write())
    rec, video, audio = selection.recording, selection.video, selection.audio
    if "prebuffer" in changes:
        rec = replace(rec, prebuffer_length=changes["prebuffer"])
    if "triggers" in changes:
        rec = replace(rec, event_trigger_options=changes["triggers"])
    if "fragment" in changes:
        container = rec.media_container_configuration
        rec = replace(
            rec,
            media_container_configuration=replace(
                container,
                parameters=replace(container.parameters, fragment_length=changes["fragment"]),
            ),
        )
    if "attrs" in changes:
        video = replace(video, attributes=[VideoAttributes(*changes["attrs"])])
    if "profiles" in changes:
        video = replace(video, parameters=replace(video.parameters, profiles=changes["profiles"]))
    if "bitrate" in changes:
        video = replace(video, parameters=replace(video.parameters, bitrate=changes["bitrate"]))
    if "rate" in changes:
        audio = replace(audio, parameters=replace(audio.parameters, sample_rates=[changes["rate"]]))
    if "channels" in changes:
        audio = replace(audio, parameters=replace(audio.parameters, channels=changes["channels"]))
    return replace(selection, recording=rec, video=video, audio=audio).encode()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"prebuffer": 8000}, "prebuffer"),
        ({"triggers": 4}, "trigger"),
        ({"fragment": 2000}, "container"),
        ({"attrs": (1200, 1600, 24)}, "resolution"),
        ({"attrs": (1920, 1080, 60)}, "resolution"),
        ({"profiles": [H264Profile.MAIN, H264Profile.HIGH]}, "profile"),
        ({"bitrate": 0}, "bitrate"),
        ({"rate": AudioSampleRate.KHZ_48}, "sample rate"),
        ({"channels": 2}, "channels"),
    ],
)
def test_out_of_offer_selections_are_refused(changes: dict[str, Any], message: str) -> None:
    """Anything not offered raises SelectionError naming the part."""
    with pytest.raises(SelectionError, match=message):
        OFFER.validate(parse_selection(_mutate(**changes)))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        HUB_WRITE[:10],
        HUB_WRITE[:-3],
        bytes.fromhex("0203010109"),  # video codec type 9 does not exist
        HUB_WRITE.replace(bytes.fromhex("01010102"), bytes.fromhex("01010702"), 1),
    ],
)
def test_malformed_selections_are_refused(data: bytes) -> None:
    """Truncated or nonsensical TLVs raise SelectionError, never anything else."""
    with pytest.raises(SelectionError):
        OFFER.validate(parse_selection(data))


@pytest.mark.parametrize(
    ("stored", "expected"),
    [
        (None, SourceVideo()),
        ({"width": 1280, "height": 720, "fps": 25.0, "extra": 1}, SourceVideo(1280, 720, 25.0)),
        ({"width": "wide", "audio_codec": 7, "fps": True}, SourceVideo()),
        (
            {"audio_codec": "aac-lc", "audio_sample_rate": 16000},
            SourceVideo(audio_codec="aac-lc", audio_sample_rate=16000),
        ),
    ],
)
def test_stored_source_profile_is_read_defensively(stored: Any, expected: SourceVideo) -> None:
    """Old or damaged storage never breaks setup; unknown values are ignored."""
    assert SourceVideo.from_dict(stored) == expected
