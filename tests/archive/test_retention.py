"""Retention: by age (each camera's days), by total size, by free space; the no-space repair.

Clips here are files with the archive's names; sizes come from sparse files, so a "300 MiB"
clip costs no disk. Free space is Home Assistant's `shutil.disk_usage`, patched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
import shutil
from typing import Any, NamedTuple
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.setup import async_setup_component
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import async_fire_time_changed

from custom_components.hksv.archive.layout import ClipPaths
from custom_components.hksv.archive.manager import (
    NO_SPACE_ISSUE,
    CameraArchive,
    ClipArchive,
    async_get_archive,
)
from custom_components.hksv.const import (
    DEFAULT_OPTIONS,
    DOMAIN,
    OPT_ARCHIVE_DAYS,
    OPT_ARCHIVE_MAX_GB,
    OPT_ARCHIVE_MIN_FREE_GB,
)

MIB = 1024**2
GIB = 1024**3


class DiskUsage(NamedTuple):
    total: int
    used: int
    free: int


@pytest.fixture
def free_space() -> Iterator[list[int]]:
    """Patch the free space the archive sees (a one-item list the test changes)."""
    free = [100 * GIB]
    with patch.object(
        shutil, "disk_usage", lambda _path: DiskUsage(1000 * GIB, 1000 * GIB - free[0], free[0])
    ):
        yield free


type Register = Callable[..., Any]


@pytest.fixture
async def register(hass: HomeAssistant, media_dir: Path) -> Iterator[Register]:
    """Register cameras with the archive; unregister at the end."""
    removers: list[Callable[[], None]] = []

    async def add(name: str = "Front door", **options: Any) -> ClipArchive:
        camera = CameraArchive(
            async_get_archive(hass),
            entry_id=name,
            name=name,
            options={**DEFAULT_OPTIONS, **options},
            doorbell_pressed_at=lambda: None,
        )
        removers.append(await camera.archive.async_register(camera))
        return camera.archive

    yield add
    for remove in removers:
        remove()


def _clip(media_dir: Path, camera: str, started: datetime, size: int = 1000) -> ClipPaths:
    """Write a clip's three files (the MP4 sparse, ``size`` bytes)."""
    paths = ClipPaths(
        media_dir / "hksv", camera, started.strftime("%Y-%m-%d"), started.strftime("%H%M%S")
    )
    paths.folder.mkdir(parents=True, exist_ok=True)
    with paths.video.open("wb") as file:
        file.truncate(size)
    paths.thumbnail.write_bytes(b"\xff\xd8\xff\xd9")
    paths.sidecar.write_text("{}")
    return paths


def _now() -> datetime:
    return dt_util.now().replace(tzinfo=None, microsecond=0)


async def test_clips_older_than_their_camera_days_go_hourly(
    hass: HomeAssistant, media_dir: Path, register: Register, freezer: FrozenDateTimeFactory
) -> None:
    """Each camera's age limit, applied by the hourly cleanup, oldest first."""
    freezer.move_to("2026-12-07 12:00:00+00:00")
    archive = await register("Front door", **{OPT_ARCHIVE_DAYS: 10})
    await register("Garden", **{OPT_ARCHIVE_DAYS: 2})
    now = _now()
    front_old = _clip(media_dir, "front_door", now - timedelta(days=9, hours=23))
    front_new = _clip(media_dir, "front_door", now - timedelta(days=1))
    garden_old = _clip(media_dir, "garden", now - timedelta(days=1, hours=23))
    garden_new = _clip(media_dir, "garden", now - timedelta(hours=1))

    freezer.tick(timedelta(hours=1, seconds=1))
    async_fire_time_changed(hass)
    await hass.async_block_till_done(wait_background_tasks=True)
    for gone in (front_old, garden_old):
        assert not any(p.exists() for p in gone.all_files())
    assert not front_old.folder.exists()  # its empty day folder went too
    for kept in (front_new, garden_new):
        assert kept.video.exists() and kept.thumbnail.exists() and kept.sidecar.exists()
    assert archive.stats.clips == 2
    assert archive.stats.oldest == now - timedelta(days=1)
    assert archive.stats.last_cleanup is not None


async def test_the_total_size_cap_deletes_the_oldest_across_cameras(
    hass: HomeAssistant, media_dir: Path, register: Register, free_space: list[int]
) -> None:
    """Over the cap, the oldest clips of any camera go until the archive fits."""
    archive = await register("Front door", **{OPT_ARCHIVE_MAX_GB: 1.0})
    now = _now()
    clips = [
        _clip(media_dir, camera, now - timedelta(minutes=minutes), 300 * MIB)
        for camera, minutes in (
            ("garden", 50),
            ("front_door", 40),
            ("garden", 30),
            ("front_door", 20),
        )
    ]
    result = await archive.async_cleanup()
    assert result is not None
    assert result.deleted == 1
    assert [c.video.exists() for c in clips] == [False, True, True, True]
    assert result.total_bytes <= GIB
    assert archive.stats.by_camera["garden"].clips == 1


async def test_free_space_below_the_minimum_deletes_the_oldest_and_raises_a_repair(
    hass: HomeAssistant, media_dir: Path, register: Register, free_space: list[int]
) -> None:
    """Oldest first until the minimum is free; when even that is not enough, a repair."""
    archive = await register("Front door", **{OPT_ARCHIVE_MIN_FREE_GB: 2.0})
    now = _now()
    clips = [
        _clip(media_dir, "front_door", now - timedelta(minutes=m), 600 * MIB) for m in (3, 2, 1)
    ]
    free_space[0] = int(1.1 * GIB)
    result = await archive.async_cleanup()
    assert result is not None and not result.short_of_space
    assert [c.video.exists() for c in clips] == [False, False, True]
    issues = ir.async_get(hass)
    assert issues.async_get_issue(DOMAIN, NO_SPACE_ISSUE) is None

    # Something else fills the disk: the last clip goes and it is still not enough.
    free_space[0] = int(0.5 * GIB)
    result = await archive.async_cleanup()
    assert result is not None and result.short_of_space
    assert not clips[2].video.exists()
    issue = issues.async_get_issue(DOMAIN, NO_SPACE_ISSUE)
    assert issue is not None
    assert issue.translation_key == NO_SPACE_ISSUE
    assert issue.translation_placeholders["minimum"] == "2.0"

    # Space comes back: the repair clears itself at the next cleanup.
    free_space[0] = 10 * GIB
    await archive.async_cleanup()
    assert issues.async_get_issue(DOMAIN, NO_SPACE_ISSUE) is None


async def test_files_deleted_by_hand_are_not_errors(
    hass: HomeAssistant, media_dir: Path, register: Register, free_space: list[int]
) -> None:
    """An MP4 deleted in "My media": its thumbnail and sidecar go; nothing is an error."""
    archive = await register()
    now = _now()
    orphan = _clip(media_dir, "front_door", now - timedelta(minutes=5))
    whole = _clip(media_dir, "front_door", now - timedelta(minutes=1))
    await hass.async_add_executor_job(orphan.video.unlink)
    # A whole day folder removed over Samba as well.
    gone = _clip(media_dir, "front_door", now - timedelta(days=1))
    await hass.async_add_executor_job(shutil.rmtree, gone.folder)
    result = await archive.async_cleanup()
    assert result is not None
    assert not orphan.thumbnail.exists() and not orphan.sidecar.exists()
    assert whole.video.exists()
    assert result.clips == 1
    assert archive.stats.last_error is None


async def test_the_no_space_repair_lowers_the_minimum_and_clears_itself(
    hass: HomeAssistant, init_integration: Any, free_space: list[int]
) -> None:
    """The fix flow stores a lower minimum in every camera; the reload's cleanup clears it."""
    archive = async_get_archive(hass)
    free_space[0] = GIB  # below the default 2 GiB, nothing to delete
    await archive.async_cleanup()
    issues = ir.async_get(hass)
    issue = issues.async_get_issue(DOMAIN, NO_SPACE_ISSUE)
    assert issue is not None and issue.is_fixable

    assert await async_setup_component(hass, "repairs", {})
    manager = hass.data["repairs"]["flow_manager"]
    result = await manager.async_init(
        DOMAIN, context={"issue_id": NO_SPACE_ISSUE}, data={"issue_id": NO_SPACE_ISSUE}
    )
    assert result["step_id"] == "confirm"
    assert result["description_placeholders"] == {"minimum": "2"}
    result = await manager.async_configure(result["flow_id"], {OPT_ARCHIVE_MIN_FREE_GB: 0.5})
    assert result["type"] == "create_entry"
    await hass.async_block_till_done()
    assert init_integration.options[OPT_ARCHIVE_MIN_FREE_GB] == 0.5
    assert issues.async_get_issue(DOMAIN, NO_SPACE_ISSUE) is None
