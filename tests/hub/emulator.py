"""The home-hub emulator: aiohomekit's HAP session plus our HDS client, as a hub uses them.

A hub selects a recording configuration, switches the camera to "Stream & allow recording",
and when MotionDetected turns true it asks for a data stream (SetupDataStreamTransport with
"r": true), derives the HDS keys from its own side of the pair-verify secret, connects, says
hello and opens a recording stream (docs/hksv-protocol.md §2.6, §3, §5).
"""

from __future__ import annotations

import base64
import os

from custom_components.hksv.hap.data_stream_setup import SetupDataStreamResponse
from custom_components.hksv.hap.recording_config import (
    AudioCodecConfiguration,
    AudioCodecParameters,
    EventTrigger,
    SelectedCameraRecordingConfiguration,
    SelectedRecordingConfiguration,
    SupportedAudioRecordingConfiguration,
    SupportedCameraRecordingConfiguration,
    SupportedVideoRecordingConfiguration,
    VideoCodecConfiguration,
    VideoCodecParameters,
)
from custom_components.hksv.media.fmp4 import parse_fragments, parse_init
from custom_components.hksv.media.h264 import H264Profile
from tests.hub.controller import HOST, HubController
from tests.hub.hds_client import HDSClient, Recording


class HomeHub(HubController):
    """A paired controller that can configure recording and open HDS connections."""

    async def enable_recording(self, selection_b64: str, *, audio: bool = True) -> None:
        """Select a configuration and move the camera to "Stream & allow recording"."""
        for service, char, value in (
            ("204", "209", selection_b64),
            ("21A", "21B", 1),
            ("110", "B0", 1),
            ("204", "B0", 1),
        ):
            assert await self.write(self.iid(service, char), value) == {}, (service, char)
        assert await self.timed_write(self.iid("204", "226"), int(audio)) == {}

    async def select_from_offer(self, *, bitrate_kbps: int = 2000) -> str:
        """Read the three Supported* values and return the selection a hub would write."""
        return choose_selection(
            await self.read_tlv(self.iid("204", "205")),
            await self.read_tlv(self.iid("204", "206")),
            await self.read_tlv(self.iid("204", "207")),
            bitrate_kbps=bitrate_kbps,
        )

    async def setup_data_stream(self) -> tuple[int, bytes, bytes]:
        """Write SetupDataStreamTransport; return (port, controller salt, accessory salt)."""
        controller_salt = os.urandom(32)
        request = bytes.fromhex("0101000201000320") + controller_salt
        result = await self.write_with_response(
            self.iid("129", "131"), base64.b64encode(request).decode()
        )
        assert result.get("status") == 0, result
        response = SetupDataStreamResponse.decode(base64.b64decode(result["value"]))
        assert response.status == 0 and response.parameters and response.accessory_key_salt
        return response.parameters.tcp_port, controller_salt, response.accessory_key_salt

    async def open_data_stream(
        self, *, hello: bool = True, name: str = "hub", receive_buffer: int | None = None
    ) -> HDSClient:
        """Set up, connect and (by default) say hello on a new HDS connection."""
        port, controller_salt, accessory_salt = await self.setup_data_stream()
        a2c, c2a = self.hds_keys(controller_salt, accessory_salt)
        client = HDSClient(
            HOST, port, accessory_to_controller_key=a2c, controller_to_accessory_key=c2a, name=name
        )
        await client.connect(receive_buffer=receive_buffer)
        if hello:
            response = await client.hello()
            assert response.status == 0
        return client


def choose_selection(camera: bytes, video: bytes, audio: bytes, *, bitrate_kbps: int = 2000) -> str:
    """Pick a configuration from the offer as a hub does: the largest resolution, Main 4.0."""
    supported_camera = SupportedCameraRecordingConfiguration.decode(camera)
    supported_video = SupportedVideoRecordingConfiguration.decode(video).codec_configurations[0]
    supported_audio = SupportedAudioRecordingConfiguration.decode(audio).codec_configurations[0]
    container = supported_camera.media_container_configurations[0]
    params = supported_video.parameters
    profile = H264Profile.MAIN if H264Profile.MAIN in params.profiles else params.profiles[0]
    audio_params = supported_audio.parameters
    selection = SelectedCameraRecordingConfiguration(
        recording=SelectedRecordingConfiguration(
            prebuffer_length=supported_camera.prebuffer_length,
            event_trigger_options=EventTrigger.MOTION,
            media_container_configuration=container,
        ),
        video=VideoCodecConfiguration(
            codec_type=supported_video.codec_type,
            parameters=VideoCodecParameters(
                profiles=[profile],
                levels=[max(params.levels)],
                bitrate=bitrate_kbps,
                iframe_interval=container.parameters.fragment_length,
            ),
            attributes=[supported_video.attributes[0]],
        ),
        audio=AudioCodecConfiguration(
            codec_type=supported_audio.codec_type,
            parameters=AudioCodecParameters(
                channels=audio_params.channels,
                bitrate_modes=audio_params.bitrate_modes[:1],
                sample_rates=audio_params.sample_rates[:1],
                max_bitrate=64,
            ),
        ),
    )
    return base64.b64encode(selection.encode()).decode()


def media_seconds(recording: Recording) -> float:
    """Return the video duration of the complete fragments received so far."""
    packets = recording.complete_packets
    if not packets:
        return 0.0
    init = parse_init(packets[0])
    assert init.video is not None
    total = 0
    for fragment in packets[1:]:
        total += sum(s.duration for s in parse_fragments(fragment, init)[init.video.track_id])
    return total / init.video.timescale
