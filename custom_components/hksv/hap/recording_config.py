"""Typed HKSV recording configurations: the offer (Supported*) and the hub's choice (Selected*).

Layouts follow docs/hksv-protocol.md §2.1–§2.4. The offer is narrowed as peers learned the hard
way (docs/peers.md §3 #3): 720p and/or 1080p only, 16:9, always 30 fps, one AAC-LC sample rate,
fMP4 with 4000 ms fragments, a prebuffer of at least 4000 ms. The frame rate is fixed, never
measured (docs/architecture.md "The recording offer"): a camera's frame rate wobbles and
halves at night, and a changed offer costs the hub's selection.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag
import hashlib
from typing import Any, Final

# The H.264 numbers are codec facts (media/h264.py); re-exported for modules changed on other
# branches that still import them from here (issue 15: drop the re-export once they don't).
from ..media.h264 import H264Level as H264Level, H264Profile as H264Profile  # noqa: PLC0414
from .tlv8 import U8, U16, U32, Nested, TLVError, TLVStruct, UInt, tlv, tlv_list


class EventTrigger(IntFlag):
    """Event trigger options (§2.1)."""

    MOTION = 0x01
    DOORBELL = 0x02


class MediaContainerType(IntEnum):
    """Media container types."""

    FRAGMENTED_MP4 = 0


class VideoCodecType(IntEnum):
    """Video codec types."""

    H264 = 0
    H265 = 1


class AudioCodecType(IntEnum):
    """Audio codec types."""

    AAC_LC = 0
    AAC_ELD = 1


class AudioBitrateMode(IntEnum):
    """Audio bitrate modes."""

    VARIABLE = 0
    CONSTANT = 1


class AudioSampleRate(IntEnum):
    """Audio sample rates as HAP numbers them."""

    KHZ_8 = 0
    KHZ_16 = 1
    KHZ_24 = 2
    KHZ_32 = 3
    KHZ_44_1 = 4
    KHZ_48 = 5

    @property
    def hertz(self) -> int:
        """Return the rate in Hz."""
        return _SAMPLE_RATE_HZ[self]

    @classmethod
    def from_hertz(cls, hertz: int) -> AudioSampleRate | None:
        """Return the enum for ``hertz``, or None if HAP has no such rate."""
        for rate, value in _SAMPLE_RATE_HZ.items():
            if value == hertz:
                return rate
        return None


_SAMPLE_RATE_HZ: Final = {
    AudioSampleRate.KHZ_8: 8000,
    AudioSampleRate.KHZ_16: 16000,
    AudioSampleRate.KHZ_24: 24000,
    AudioSampleRate.KHZ_32: 32000,
    AudioSampleRate.KHZ_44_1: 44100,
    AudioSampleRate.KHZ_48: 48000,
}

# The trigger options are 8 bytes on the wire, but HAP-NodeJS reads only the low 32 bits, so
# accept any width up to 8 rather than refuse a hub that sends fewer bytes.
_TRIGGERS: Final = UInt(8)


class _LenientUInt(UInt):
    """A little-endian unsigned integer of 1 to ``width`` bytes."""

    def decode(self, data: bytes) -> int:
        """Unpack 1..width bytes."""
        if not 0 < len(data) <= self.width:
            raise TLVError(f"expected 1..{self.width} bytes, got {len(data)}")
        return int.from_bytes(data, "little")


_TRIGGERS_IN: Final = _LenientUInt(8)


@dataclass(frozen=True, slots=True)
class MediaContainerParameters(TLVStruct):
    """Container parameters: the fragment length in ms."""

    fragment_length: int = tlv(1, U32)


@dataclass(frozen=True, slots=True)
class MediaContainerConfiguration(TLVStruct):
    """One media container."""

    container_type: MediaContainerType = tlv(1, UInt(1, MediaContainerType))
    parameters: MediaContainerParameters = tlv(2, Nested(MediaContainerParameters))


@dataclass(frozen=True, slots=True)
class SupportedCameraRecordingConfiguration(TLVStruct):
    """SupportedCameraRecordingConfiguration, UUID 00000205 (§2.1)."""

    prebuffer_length: int = tlv(1, U32)
    event_trigger_options: int = tlv(2, _TRIGGERS)
    media_container_configurations: list[MediaContainerConfiguration] = tlv_list(
        3, Nested(MediaContainerConfiguration)
    )


@dataclass(frozen=True, slots=True)
class VideoCodecParameters(TLVStruct):
    """Profiles and levels (lists in the offer, one each in a selection), bitrate, iFrame."""

    profiles: list[H264Profile] = tlv_list(1, UInt(1, H264Profile))
    levels: list[H264Level] = tlv_list(2, UInt(1, H264Level))
    bitrate: int | None = tlv(3, U32, default=None)
    iframe_interval: int | None = tlv(4, U32, default=None)


@dataclass(frozen=True, slots=True)
class VideoAttributes(TLVStruct):
    """One resolution and frame rate."""

    width: int = tlv(1, U16)
    height: int = tlv(2, U16)
    frame_rate: int = tlv(3, U8)


@dataclass(frozen=True, slots=True)
class VideoCodecConfiguration(TLVStruct):
    """A video codec with its parameters and resolutions."""

    codec_type: VideoCodecType = tlv(1, UInt(1, VideoCodecType))
    parameters: VideoCodecParameters = tlv(2, Nested(VideoCodecParameters))
    attributes: list[VideoAttributes] = tlv_list(3, Nested(VideoAttributes))


@dataclass(frozen=True, slots=True)
class SupportedVideoRecordingConfiguration(TLVStruct):
    """SupportedVideoRecordingConfiguration, UUID 00000206 (§2.2)."""

    codec_configurations: list[VideoCodecConfiguration] = tlv_list(
        1, Nested(VideoCodecConfiguration)
    )


@dataclass(frozen=True, slots=True)
class AudioCodecParameters(TLVStruct):
    """Channels, bitrate modes, sample rates (lists in the offer) and, selected, max bitrate."""

    channels: int = tlv(1, U8)
    bitrate_modes: list[AudioBitrateMode] = tlv_list(2, UInt(1, AudioBitrateMode))
    sample_rates: list[AudioSampleRate] = tlv_list(3, UInt(1, AudioSampleRate))
    max_bitrate: int | None = tlv(4, U32, default=None)


@dataclass(frozen=True, slots=True)
class AudioCodecConfiguration(TLVStruct):
    """An audio codec with its parameters."""

    codec_type: AudioCodecType = tlv(1, UInt(1, AudioCodecType))
    parameters: AudioCodecParameters = tlv(2, Nested(AudioCodecParameters))


@dataclass(frozen=True, slots=True)
class SupportedAudioRecordingConfiguration(TLVStruct):
    """SupportedAudioRecordingConfiguration, UUID 00000207 (§2.3)."""

    codec_configurations: list[AudioCodecConfiguration] = tlv_list(
        1, Nested(AudioCodecConfiguration)
    )


@dataclass(frozen=True, slots=True)
class SelectedRecordingConfiguration(TLVStruct):
    """The selected prebuffer, triggers and container."""

    prebuffer_length: int = tlv(1, U32)
    event_trigger_options: int = tlv(2, _TRIGGERS_IN)
    media_container_configuration: MediaContainerConfiguration = tlv(
        3, Nested(MediaContainerConfiguration)
    )


@dataclass(frozen=True, slots=True)
class SelectedCameraRecordingConfiguration(TLVStruct):
    """SelectedCameraRecordingConfiguration, UUID 00000209 (§2.4), written by the hub."""

    recording: SelectedRecordingConfiguration = tlv(1, Nested(SelectedRecordingConfiguration))
    video: VideoCodecConfiguration = tlv(2, Nested(VideoCodecConfiguration))
    audio: AudioCodecConfiguration = tlv(3, Nested(AudioCodecConfiguration))


class SelectionError(ValueError):
    """A selected configuration is malformed or outside the offer."""


# The narrowed offer (docs/DESIGN.md "Decisions already made").
FRAGMENT_LENGTH_MS: Final = 4000
MIN_PREBUFFER_MS: Final = 4000
MAX_FPS: Final = 30
MIN_FPS: Final = 15
# The one frame rate offered per resolution, whatever the camera measures.
OFFERED_FPS: Final = MAX_FPS
RESOLUTION_720P: Final = (1280, 720)
RESOLUTION_1080P: Final = (1920, 1080)
DEFAULT_AUDIO_RATE: Final = AudioSampleRate.KHZ_32
# The rates a camera's AAC-LC can keep (copied, not resampled) when it already uses one.
_COPYABLE_AUDIO_RATES: Final = frozenset(
    {AudioSampleRate.KHZ_16, AudioSampleRate.KHZ_24, AudioSampleRate.KHZ_32, AudioSampleRate.KHZ_48}
)


@dataclass(frozen=True, slots=True)
class SourceVideo:
    """What is known about the camera's stream, for deriving the offer."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    audio_codec: str | None = None  # "aac-lc", other names, or None for no audio
    audio_sample_rate: int | None = None
    audio_channels: int | None = None

    @classmethod
    def from_dict(cls, data: object) -> SourceVideo:
        """Restore a stored profile, ignoring anything unexpected (older or damaged storage)."""
        if not isinstance(data, dict):
            return cls()
        kinds: dict[str, type | tuple[type, ...]] = {"audio_codec": str, "fps": (int, float)}
        values: dict[str, Any] = {}
        for name in cls.__dataclass_fields__:
            value = data.get(name)
            if isinstance(value, kinds.get(name, int)) and not isinstance(value, bool):
                values[name] = value
        return cls(**values)


@dataclass(frozen=True, slots=True)
class RecordingOffer:
    """The three Supported* TLVs the accessory offers, and their fingerprint."""

    camera: SupportedCameraRecordingConfiguration
    video: SupportedVideoRecordingConfiguration
    audio: SupportedAudioRecordingConfiguration
    encoded: tuple[bytes, bytes, bytes] = field(init=False)

    def __post_init__(self) -> None:
        """Encode once; characteristic reads and the fingerprint use the bytes."""
        object.__setattr__(
            self, "encoded", (self.camera.encode(), self.video.encode(), self.audio.encode())
        )

    @property
    def fingerprint(self) -> str:
        """Return SHA-256 over the three base64 values, as HAP-NodeJS computes it (§2.4)."""
        text = "".join(base64.b64encode(value).decode() for value in self.encoded)
        return hashlib.sha256(text.encode()).hexdigest()

    def validate(self, selected: SelectedCameraRecordingConfiguration) -> None:
        """Raise SelectionError if ``selected`` is not something this offer allows."""
        rec = selected.recording
        if not 0 < rec.prebuffer_length <= self.camera.prebuffer_length:
            raise SelectionError(f"prebuffer {rec.prebuffer_length} ms is not offered")
        if rec.event_trigger_options & ~self.camera.event_trigger_options:
            raise SelectionError(f"trigger options {rec.event_trigger_options:#x} not offered")
        container = rec.media_container_configuration
        if container not in self.camera.media_container_configurations:
            raise SelectionError("media container not offered")
        self._validate_video(selected.video)
        self._validate_audio(selected.audio)

    def _validate_video(self, video: VideoCodecConfiguration) -> None:
        """Check the selected video codec, profile, level, resolution and rates."""
        offered = next(
            (c for c in self.video.codec_configurations if c.codec_type == video.codec_type),
            None,
        )
        if offered is None:
            raise SelectionError(f"video codec {video.codec_type!r} not offered")
        params = video.parameters
        if len(params.profiles) != 1 or params.profiles[0] not in offered.parameters.profiles:
            raise SelectionError(f"video profile {params.profiles} not offered")
        if len(params.levels) != 1 or params.levels[0] not in offered.parameters.levels:
            raise SelectionError(f"video level {params.levels} not offered")
        if not params.bitrate or not params.iframe_interval:
            raise SelectionError("video bitrate and iFrame interval are required")
        if len(video.attributes) != 1:
            raise SelectionError("exactly one video resolution must be selected")
        chosen = video.attributes[0]
        for attrs in offered.attributes:
            if (attrs.width, attrs.height) == (chosen.width, chosen.height):
                if 0 < chosen.frame_rate <= attrs.frame_rate:
                    return
                break
        raise SelectionError(
            f"resolution {chosen.width}x{chosen.height}@{chosen.frame_rate} not offered"
        )

    def _validate_audio(self, audio: AudioCodecConfiguration) -> None:
        """Check the selected audio codec, channels, bitrate mode and sample rate."""
        for offered in self.audio.codec_configurations:
            if offered.codec_type != audio.codec_type:
                continue
            params, allowed = audio.parameters, offered.parameters
            if params.channels != allowed.channels:
                raise SelectionError(f"{params.channels} audio channels not offered")
            if len(params.bitrate_modes) != 1 or params.bitrate_modes[0] not in (
                allowed.bitrate_modes
            ):
                raise SelectionError("audio bitrate mode not offered")
            if len(params.sample_rates) != 1 or params.sample_rates[0] not in (
                allowed.sample_rates
            ):
                raise SelectionError("audio sample rate not offered")
            return
        raise SelectionError(f"audio codec {audio.codec_type!r} not offered")


# A camera format that would change the offer must be seen this long, in this many profile
# reports in a row, before the offer follows it (docs/architecture.md "The recording offer").
OFFER_CHANGE_SETTLE_SECONDS: Final = 300.0
OFFER_CHANGE_MIN_REPORTS: Final = 3


@dataclass(slots=True)
class LastingChange:
    """Let the offer follow a new camera format only once it lasted.

    ``observe`` is fed, for every profile report, the fingerprint the reported format would
    offer and the current one. A different fingerprint must come back unchanged for
    ``settle_seconds`` and ``min_reports`` reports; any other report starts over.
    """

    settle_seconds: float = OFFER_CHANGE_SETTLE_SECONDS
    min_reports: int = OFFER_CHANGE_MIN_REPORTS
    candidate: str | None = None
    since: float = 0.0
    reports: int = 0

    def observe(self, proposed: str, current: str, now: float) -> bool:
        """Return True when ``proposed`` has lasted long enough to replace ``current``."""
        if proposed == current:
            self.candidate, self.reports = None, 0
            return False
        if proposed != self.candidate:
            self.candidate, self.since, self.reports = proposed, now, 1
            return False
        self.reports += 1
        if self.reports >= self.min_reports and now - self.since >= self.settle_seconds:
            self.candidate, self.reports = None, 0
            return True
        return False


def build_offer(
    source: SourceVideo,
    *,
    max_height: int,
    prebuffer_ms: int,
    doorbell: bool,
) -> RecordingOffer:
    """Derive the narrowed offer from the camera's stream and the user's options.

    Only the camera's picture height (is 1080p offered?) and its AAC-LC format shape the
    offer; its frame rate does not (``OFFERED_FPS`` always).
    """
    fps = OFFERED_FPS
    resolutions = [RESOLUTION_720P]
    # Offer 1080p only where it needs no upscaling (an unknown source is assumed 1080p).
    if max_height >= 1080 and (source.height is None or source.height >= 1080):
        resolutions.insert(0, RESOLUTION_1080P)
    video = SupportedVideoRecordingConfiguration(
        codec_configurations=[
            VideoCodecConfiguration(
                codec_type=VideoCodecType.H264,
                parameters=VideoCodecParameters(
                    profiles=[H264Profile.BASELINE, H264Profile.MAIN, H264Profile.HIGH],
                    levels=[H264Level.LEVEL3_1, H264Level.LEVEL3_2, H264Level.LEVEL4_0],
                ),
                attributes=[
                    VideoAttributes(width=w, height=h, frame_rate=fps) for w, h in resolutions
                ],
            )
        ]
    )
    rate = DEFAULT_AUDIO_RATE
    channels = 1
    if source.audio_codec == "aac-lc" and source.audio_sample_rate:
        source_rate = AudioSampleRate.from_hertz(source.audio_sample_rate)
        # Matching the camera's own AAC-LC rate lets recordings copy audio too.
        if source_rate in _COPYABLE_AUDIO_RATES:
            rate = source_rate
            channels = min(2, max(1, source.audio_channels or 1))
    audio = SupportedAudioRecordingConfiguration(
        codec_configurations=[
            AudioCodecConfiguration(
                codec_type=AudioCodecType.AAC_LC,
                parameters=AudioCodecParameters(
                    channels=channels,
                    bitrate_modes=[AudioBitrateMode.VARIABLE],
                    sample_rates=[rate],
                ),
            )
        ]
    )
    triggers = EventTrigger.MOTION | (EventTrigger.DOORBELL if doorbell else 0)
    camera = SupportedCameraRecordingConfiguration(
        prebuffer_length=max(MIN_PREBUFFER_MS, prebuffer_ms),
        event_trigger_options=int(triggers),
        media_container_configurations=[
            MediaContainerConfiguration(
                container_type=MediaContainerType.FRAGMENTED_MP4,
                parameters=MediaContainerParameters(fragment_length=FRAGMENT_LENGTH_MS),
            )
        ],
    )
    return RecordingOffer(camera=camera, video=video, audio=audio)


def parse_selection(value: bytes) -> SelectedCameraRecordingConfiguration:
    """Decode a SelectedCameraRecordingConfiguration, raising SelectionError if malformed."""
    try:
        return SelectedCameraRecordingConfiguration.decode(value)
    except TLVError as err:
        raise SelectionError(f"malformed selection: {err}") from err
