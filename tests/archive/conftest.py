"""Fixtures for the archive tests: HA-made GOPs of a real clip, a recorder with the archive."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Callable, Iterator, Sequence
import io
import os
from pathlib import Path
import shutil
import sys
import threading
from typing import Any, Final
from unittest.mock import patch

import av
from homeassistant.core import HomeAssistant
from homeassistant.setup import async_setup_component
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry, async_capture_events

from custom_components.hksv.archive.manager import CameraArchive, async_get_archive
from custom_components.hksv.const import DEFAULT_OPTIONS, DOMAIN
from custom_components.hksv.events import EVENT_RECORDING_FINISHED
from custom_components.hksv.hds import DataSendCloseReason
from custom_components.hksv.recording import recorder as recorder_module
from custom_components.hksv.recording.recorder import RecordingController
from custom_components.hksv.source.gop import Gop
from tests.recording.conftest import ha_segments, make_clip
from tests.recording.ha_parts import assemble
from tests.recording.test_recorder import SPEC, StandInPrebuffer, _collect, _selection

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
            entry=MockConfigEntry(domain=DOMAIN, entry_id="entry"),
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


# Blocking calls the archive could make: none may run on the event loop's thread.
_GUARDED: Final = (
    (builtins, "open"),
    (io, "open"),
    (os, "scandir"),
    (os, "listdir"),
    (os, "stat"),
    (os, "replace"),
    (os, "unlink"),
    (os, "rmdir"),
    (os, "mkdir"),
    (shutil, "disk_usage"),
    (av, "open"),
)
_STDLIB: Final = os.path.dirname(os.__file__)
_OUR_CODE: Final = (f"{os.sep}hksv{os.sep}archive{os.sep}", f"{os.sep}hksv{os.sep}media_source.py")


@pytest.fixture(autouse=True)
def no_blocking_calls_in_the_loop(hass: HomeAssistant) -> Iterator[list[str]]:
    """Fail the test if archive code did file I/O or PyAV work on the event loop's thread."""
    loop_thread = threading.get_ident()
    found: list[str] = []

    def guard(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def guarded(*args: Any, **kwargs: Any) -> Any:
            # Only while an event loop runs in this thread (sync tests call these directly).
            if threading.get_ident() == loop_thread and asyncio._get_running_loop() is not None:
                # The first caller outside the standard library (pathlib, shutil) decides.
                # asyncio's debug mode reads source lines for its tracebacks: not ours.
                frame: Any = sys._getframe(1)
                while frame is not None and frame.f_code.co_filename.startswith(_STDLIB):
                    if frame.f_code.co_filename.endswith("linecache.py"):
                        return original(*args, **kwargs)
                    frame = frame.f_back
                if frame is not None and any(p in frame.f_code.co_filename for p in _OUR_CODE):
                    found.append(f"{name} from {frame.f_code.co_name}:{frame.f_lineno}")
            return original(*args, **kwargs)

        return guarded

    originals = [(owner, attr, getattr(owner, attr)) for owner, attr in _GUARDED]
    for owner, attr, original in originals:
        setattr(owner, attr, guard(f"{owner.__name__}.{attr}", original))
    try:
        yield found
    finally:
        for owner, attr, original in originals:
            setattr(owner, attr, original)
    assert found == []


@pytest.fixture
async def archive_root(hass: HomeAssistant, init_integration: MockConfigEntry) -> Path:
    """Set up hksv and media_source; return the archive folder."""
    assert await async_setup_component(hass, "media_source", {})
    await hass.async_block_till_done()
    return Path(hass.config.path("media")) / "hksv"


@pytest.fixture
async def recorded(
    hass: HomeAssistant,
    archive_root: Path,
    init_integration: MockConfigEntry,
    clip_gops: list[Gop],
) -> dict[str, Any]:
    """Record a real clip through the entry's archive; return the finished event's data."""
    controller = init_integration.runtime_data.recorder
    stand_in = StandInPrebuffer(clip_gops[:4])
    events = async_capture_events(hass, EVENT_RECORDING_FINISHED)
    with (
        patch.object(recorder_module, "MAX_RECORDING_SECONDS", 12.0),
        patch.object(controller, "prebuffer", stand_in),
    ):
        stream = controller.open_stream(1, _selection(), True)
        await _collect(stream, stand_in, clip_gops[4:12])
        controller.stream_closed(1, DataSendCloseReason.NORMAL)
    await hass.async_block_till_done()
    assert events[0].data["url"] is not None
    return dict(events[0].data)
