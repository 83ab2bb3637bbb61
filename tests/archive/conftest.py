"""Fixtures for the archive tests: HA-made GOPs of a real clip, a recorder with the archive."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from homeassistant.core import HomeAssistant
import pytest

from custom_components.hksv.archive.manager import CameraArchive, async_get_archive
from custom_components.hksv.const import DEFAULT_OPTIONS
from custom_components.hksv.recording.gop import Gop
from custom_components.hksv.recording.recorder import RecordingController
from tests.recording.conftest import ha_segments, make_clip
from tests.recording.ha_parts import assemble
from tests.recording.test_recorder import SPEC, StandInPrebuffer

__all__ = ["ha_segments", "make_clip"]


@pytest.fixture(scope="module")
def clip_gops(ha_segments: Any) -> list[Gop]:
    """Return the GOPs of 40 s of H.264 + AAC as HA's worker delivers them."""
    return assemble(
        (segment, part.data) for segment in ha_segments(SPEC, True) for part in segment.parts
    )


@pytest.fixture
def media_dir(hass: HomeAssistant, tmp_path: Path) -> Path:
    """Point Home Assistant's first media dir at a temporary folder."""
    folder = tmp_path / "media"
    folder.mkdir()
    hass.config.media_dirs = {"local": str(folder)}
    return folder


type ControllerFactory = Callable[..., tuple[RecordingController, StandInPrebuffer, CameraArchive]]


@pytest.fixture
def archived_controller(hass: HomeAssistant, media_dir: Path) -> Iterator[ControllerFactory]:
    """Return a factory of recorders on a stand-in prebuffer, archiving into ``media_dir``."""
    unregister: list[Callable[[], None]] = []

    async def make(
        history: Sequence[Gop], **options: Any
    ) -> tuple[RecordingController, StandInPrebuffer, CameraArchive]:
        merged = {**DEFAULT_OPTIONS, **options}
        camera = CameraArchive(
            async_get_archive(hass),
            entry_id="entry",
            name="Front door",
            options=merged,
            doorbell_pressed_at=lambda: None,
        )
        unregister.append(await camera.archive.async_register(camera))
        controller = RecordingController(
            hass,
            camera_entity_id="camera.test",
            name="Front door",
            entry_id="entry",
            options=merged,
            on_update=lambda: None,
            on_source_profile=lambda _source: None,
            clip_sink=camera,
        )
        stand_in = StandInPrebuffer(history)
        controller.prebuffer = stand_in  # type: ignore[assignment]
        return controller, stand_in, camera

    yield make  # type: ignore[misc]
    for remove in unregister:
        remove()
