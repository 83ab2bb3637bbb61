"""What the bridge hangs on the recording prebuffer: live view and the camera's health.

One camera connection serves recording and live view alike.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from homeassistant.components import camera
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant, callback

from .camera_health import CameraHealth
from .const import OPT_AUDIO, OPT_LIVE_DIRECT, OPT_LIVE_MAX_BITRATE, OPT_LIVE_MODE
from .hap.accessory import HksvCamera
from .live.direct import DirectFeed
from .live.manager import LiveStreamManager
from .live.policy import LiveModeOption
from .live.source import LiveFeed
from .live.viewers import LiveOptions
from .recording.recorder import RecordingController
from .source.gop import profile_source


def create_live(
    hass: HomeAssistant,
    *,
    name: str,
    camera_entity_id: str,
    options: dict[str, Any],
    recorder: RecordingController,
    accessory: HksvCamera,
    address: str | None,
    on_change: Callable[[], None],
) -> LiveStreamManager:
    """Build live view on the recording prebuffer (one camera connection for both)."""
    prebuffer = recorder.prebuffer
    feed = LiveFeed(
        prebuffer,
        recording_wants_stream=lambda: accessory.state.recording_possible or recorder.streaming,
        log_name=name,
    )

    def source_profile() -> tuple[float | None, float | None]:
        profile = profile_source(prebuffer.gops)
        return profile.fps, profile.video_bitrate_kbps

    return LiveStreamManager(
        slots=accessory.stream_slots,
        feed=feed,
        publisher=accessory,
        source_profile=source_profile,
        options=LiveOptions(
            mode=LiveModeOption(options[OPT_LIVE_MODE]),
            max_bitrate_kbps=int(options[OPT_LIVE_MAX_BITRATE]),
            address=address,
        ),
        on_change=on_change,
        log_name=name,
        audio_muted=lambda: not options[OPT_AUDIO] or accessory.microphone_muted,
        direct=(
            DirectFeed(
                lambda: camera.async_get_stream_source(hass, camera_entity_id),
                log_name=name,
            )
            if options[OPT_LIVE_DIRECT]
            else None
        ),
    )


def follow_camera(
    hass: HomeAssistant,
    *,
    entry: ConfigEntry,
    name: str,
    camera_entity_id: str,
    recorder: RecordingController,
    on_change: Callable[[], None],
) -> CameraHealth:
    """Follow the camera entity and its stream: entities depending on it follow them."""
    prebuffer = recorder.prebuffer

    @callback
    def camera_state_changed() -> None:
        """Attach the prebuffer at once when a camera it could not find shows up.

        After a restart the camera's integration may load after hksv: the first attach then
        fails ("Camera not found") and the watchdog would retry only 15 s later, so a hub's
        first open after the restart found no video (seen in benchmarks/soak.py runs).
        """
        if prebuffer.running and prebuffer.source_problem is not None:
            entry.async_create_background_task(
                hass, prebuffer.async_attach_now(), f"{name} prebuffer attach"
            )

    health = CameraHealth(
        hass,
        name=name,
        camera_entity_id=camera_entity_id,
        stream_problem=lambda: prebuffer.source_problem,
        on_change=on_change,
        on_camera_state=camera_state_changed,
    )
    prebuffer.on_source_change = health.async_check
    return health
