"""The archive of every camera: one per Home Assistant, shared by the entries.

Owns the folder (``<first media dir>/hksv``), start-up recovery of partial files, cleanup
after each clip and every hour, the "cannot free space" repair, and the figures shown in
diagnostics and entities. Each entry registers its camera (name, folder, options) and gets a
``CameraArchive``, the recorder's clip sink.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
import json
import logging
from pathlib import Path
from typing import Any, Final
from urllib.parse import quote

from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.event import async_track_time_interval
from homeassistant.util import dt as dt_util, slugify

from ..const import (
    DEFAULT_ARCHIVE_DAYS,
    DEFAULT_ARCHIVE_MAX_GB,
    DEFAULT_ARCHIVE_MIN_FREE_GB,
    DOMAIN,
    OPT_ARCHIVE,
    OPT_ARCHIVE_DAYS,
    OPT_ARCHIVE_MAX_GB,
    OPT_ARCHIVE_MIN_FREE_GB,
)
from ..recording.clip_sink import ClipCopy
from .layout import ARCHIVE_FOLDER, CAMERA_PATTERN, ClipPaths
from .retention import (
    GIB,
    CameraUsage,
    CleanupResult,
    RetentionPolicy,
    cleanup,
    partial_files,
)
from .writer import ArchiveClip, ClipMeta, KeptClip, finalize_partial

_LOGGER = logging.getLogger(__name__)

DATA_ARCHIVE: Final = f"{DOMAIN}_archive"
CLEANUP_INTERVAL: Final = timedelta(hours=1)
NO_SPACE_ISSUE: Final = "archive_no_space"
FIX_ARCHIVE_FREE_SPACE: Final = "archive_free_space"
MEDIA_SOURCE_PREFIX: Final = f"media-source://{DOMAIN}"
# A doorbell press this recent when a recording opens makes it a doorbell clip.
DOORBELL_TRIGGER_SECONDS: Final = 30.0


@dataclass(slots=True)
class ArchiveStats:
    """Figures for diagnostics and entities."""

    clips: int = 0
    total_bytes: int = 0
    oldest: datetime | None = None
    last_cleanup: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    by_camera: dict[str, CameraUsage] = field(default_factory=dict)


def camera_folder(name: str) -> str:
    """Return a camera's folder name (and media-source id) from its name."""
    folder = slugify(name)[:64] or "camera"
    return folder if CAMERA_PATTERN.fullmatch(folder) else "camera"


def media_root(hass: HomeAssistant) -> tuple[str, Path] | None:
    """Return Home Assistant's first media directory (its id and path), if any."""
    for dir_id, path in hass.config.media_dirs.items():
        return dir_id, Path(path)
    return None


@callback
def async_get_archive(hass: HomeAssistant) -> ClipArchive:
    """Return the archive, creating it on first use."""
    archive: ClipArchive | None = hass.data.get(DATA_ARCHIVE)
    if archive is None:
        archive = hass.data[DATA_ARCHIVE] = ClipArchive(hass)
    return archive


class CameraArchive:
    """One camera's side of the archive; the recorder's clip sink."""

    def __init__(
        self,
        archive: ClipArchive,
        *,
        entry_id: str,
        name: str,
        options: Mapping[str, Any],
        doorbell_pressed_at: Callable[[], datetime | None],
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        """Remember the camera and its options."""
        self.on_change = on_change
        self.archive = archive
        self.entry_id = entry_id
        self.name = name
        self.folder = camera_folder(name)
        self.enabled = bool(options[OPT_ARCHIVE])
        self.days = int(options[OPT_ARCHIVE_DAYS])
        self.max_bytes = int(float(options[OPT_ARCHIVE_MAX_GB]) * GIB)
        self.min_free_bytes = int(float(options[OPT_ARCHIVE_MIN_FREE_GB]) * GIB)
        self._doorbell_pressed_at = doorbell_pressed_at
        self._active: dict[int, ArchiveClip] = {}
        self.last_error: str | None = None

    def open_clip(self, stream_id: int, started_at: datetime) -> ClipCopy | None:
        """Start keeping a recording (recording/clip_sink.ClipSink); None when off."""
        root = self.archive.root
        if not self.enabled or root is None:
            return None
        local = dt_util.as_local(started_at)
        stem = local.strftime("%H%M%S")
        if any(clip.paths.stem == stem for clip in self._active.values()):
            stem = f"{stem}-{stream_id}"
        paths = ClipPaths(root, self.folder, local.strftime("%Y-%m-%d"), stem)
        pressed = self._doorbell_pressed_at()
        doorbell = pressed is not None and (
            timedelta(0) <= started_at - pressed <= timedelta(seconds=DOORBELL_TRIGGER_SECONDS)
        )
        meta = ClipMeta(
            camera_name=self.name,
            entry_id=self.entry_id,
            started_at=started_at,
            trigger="doorbell" if doorbell else "motion",
            min_free_bytes=self.min_free_bytes,
        )
        clip = ArchiveClip(self.archive.hass, paths, meta, on_done=self._async_clip_done)
        self._active[stream_id] = clip
        return clip

    async def _async_clip_done(
        self, clip: ArchiveClip, kept: KeptClip | None, error: str | None
    ) -> Mapping[str, Any] | None:
        """Note the result, clean up, and return the event data of a kept clip."""
        self._active = {k: v for k, v in self._active.items() if v is not clip}
        if error is not None and not clip.skipped:
            self.last_error = error
            self.archive.note_error(error)
        await self.archive.async_cleanup()
        return None if kept is None else self.archive.clip_data(kept.paths, kept.has_thumbnail)


class ClipArchive:
    """Every camera's clips under the first media directory."""

    def __init__(self, hass: HomeAssistant) -> None:
        """Find the folder; nothing runs until a camera registers."""
        self.hass = hass
        found = media_root(hass)
        self.media_dir_id = found[0] if found else None
        self.root = found[1] / ARCHIVE_FOLDER if found else None
        self.cameras: dict[str, CameraArchive] = {}
        self.stats = ArchiveStats()
        self.no_space = False
        self._unsub_interval: CALLBACK_TYPE | None = None
        self._recovered = False
        self._cleanup_lock = asyncio.Lock()

    # -- cameras ------------------------------------------------------------------------------

    async def async_register(self, camera: CameraArchive) -> Callable[[], None]:
        """Add a camera; the first one recovers partial files and starts periodic cleanup."""
        self.cameras[camera.entry_id] = camera
        if not self._recovered and self.root is not None:
            self._recovered = True
            await self.async_recover()
        # The figures for entities, what expired meanwhile, and new limits (options, repair).
        await self.async_cleanup()
        if self._unsub_interval is None:
            self._unsub_interval = async_track_time_interval(
                self.hass, self._async_periodic_cleanup, CLEANUP_INTERVAL, cancel_on_shutdown=True
            )

        @callback
        def unregister() -> None:
            self.cameras.pop(camera.entry_id, None)
            if not self.cameras and self._unsub_interval is not None:
                self._unsub_interval()
                self._unsub_interval = None

        return unregister

    def clip_data(self, paths: ClipPaths, has_thumbnail: bool) -> dict[str, Any]:
        """Return a clip's media-source id and /media URLs (event data)."""
        base = f"/media/{quote(self.media_dir_id or '')}/{ARCHIVE_FOLDER}/{paths.identifier}"
        return {
            "media_content_id": f"{MEDIA_SOURCE_PREFIX}/{paths.identifier}",
            "url": f"{base}.mp4",
            "thumbnail_url": f"{base}.jpg" if has_thumbnail else None,
        }

    def usage(self, folder: str) -> CameraUsage:
        """Return a camera's clips, bytes and oldest clip as of the last cleanup."""
        return self.stats.by_camera.get(folder) or CameraUsage()

    def diagnostics(self) -> dict[str, Any]:
        """Return the archive's figures."""
        stats = self.stats
        return {
            "folder": str(self.root) if self.root else None,
            "clips": stats.clips,
            "bytes": stats.total_bytes,
            "oldest": stats.oldest.isoformat() if stats.oldest else None,
            "last_cleanup": stats.last_cleanup.isoformat() if stats.last_cleanup else None,
            "last_error": stats.last_error,
            "last_error_at": stats.last_error_at.isoformat() if stats.last_error_at else None,
            "no_space": self.no_space,
            "policy": {
                "max_total_bytes": self.policy().max_total_bytes,
                "min_free_bytes": self.policy().min_free_bytes,
                "days": dict(self.policy().days),
            },
            "by_camera": {
                folder: {
                    "clips": usage.clips,
                    "bytes": usage.bytes,
                    "oldest": usage.oldest.isoformat() if usage.oldest else None,
                }
                for folder, usage in stats.by_camera.items()
            },
        }

    @callback
    def note_error(self, error: str) -> None:
        """Remember the last archive error."""
        self.stats.last_error = error
        self.stats.last_error_at = dt_util.utcnow()

    # -- recovery -----------------------------------------------------------------------------

    async def async_recover(self) -> None:
        """Finalize (or remove) what a crash left half-written."""
        if self.root is None:
            return
        recovered, removed = await self.hass.async_add_executor_job(recover_partials, self.root)
        if recovered or removed:
            _LOGGER.info(
                "Archive: finalized %d clip(s) a restart interrupted, removed %d unusable",
                recovered,
                removed,
            )

    # -- cleanup ------------------------------------------------------------------------------

    def policy(self) -> RetentionPolicy:
        """Return the limits: each camera's days; the strictest size and free-space limits."""
        cameras = list(self.cameras.values())
        return RetentionPolicy(
            default_days=max((c.days for c in cameras), default=DEFAULT_ARCHIVE_DAYS),
            max_total_bytes=min(
                (c.max_bytes for c in cameras), default=int(DEFAULT_ARCHIVE_MAX_GB * GIB)
            ),
            min_free_bytes=max(
                (c.min_free_bytes for c in cameras),
                default=int(DEFAULT_ARCHIVE_MIN_FREE_GB * GIB),
            ),
            days={c.folder: c.days for c in cameras},
        )

    async def _async_periodic_cleanup(self, _now: datetime) -> None:
        await self.async_cleanup()

    async def async_cleanup(self) -> CleanupResult | None:
        """Apply the retention limits now (one cleanup at a time)."""
        if self.root is None:
            return None
        async with self._cleanup_lock:
            now = dt_util.now().replace(tzinfo=None)  # clip names hold local time
            try:
                result = await self.hass.async_add_executor_job(
                    partial(cleanup, self.root, self.policy(), now=now)
                )
            except OSError as err:
                self.note_error(f"cleanup failed: {err}")
                return None
        stats = self.stats
        stats.clips, stats.total_bytes, stats.oldest = (
            result.clips,
            result.total_bytes,
            result.oldest,
        )
        stats.by_camera = result.by_camera
        stats.last_cleanup = dt_util.utcnow()
        if result.deleted:
            _LOGGER.debug(
                "Archive: deleted %d clip(s), %d bytes", result.deleted, result.freed_bytes
            )
        self._set_no_space(result)
        for camera in list(self.cameras.values()):
            camera.on_change()
        return result

    def _set_no_space(self, result: CleanupResult) -> None:
        """Raise the repair while the minimum free space cannot be reached; clear it after."""
        if result.short_of_space:
            self.no_space = True
            ir.async_create_issue(
                self.hass,
                DOMAIN,
                NO_SPACE_ISSUE,
                is_fixable=True,
                data={"fix": FIX_ARCHIVE_FREE_SPACE},
                severity=ir.IssueSeverity.WARNING,
                translation_key=NO_SPACE_ISSUE,
                translation_placeholders={
                    "free": f"{result.free_bytes / GIB:.1f}",
                    "minimum": f"{self.policy().min_free_bytes / GIB:.1f}",
                    "folder": str(self.root),
                },
            )
        elif self.no_space:
            self.no_space = False
            ir.async_delete_issue(self.hass, DOMAIN, NO_SPACE_ISSUE)


def recover_partials(root: Path) -> tuple[int, int]:
    """Finalize every partial clip under ``root``; remove those with nothing playable."""
    recovered = removed = 0
    for paths in partial_files(root):
        base = _read_partial_meta(paths)
        base.setdefault("start", None)
        base.update(outcome="interrupted", hub_close_reason=None, error="Home Assistant stopped")
        try:
            finalize_partial(paths, base, preroll_seconds=0.0)
            recovered += 1
        except Exception as err:  # noqa: BLE001 - FinalizeError, OSError, PyAV's: unusable
            _LOGGER.debug("Archive: removing unusable %s: %s", paths.partial, err)
            for path in (paths.partial, paths.partial_meta):
                path.unlink(missing_ok=True)
            removed += 1
    return recovered, removed


def _read_partial_meta(paths: ClipPaths) -> dict[str, Any]:
    try:
        data = json.loads(paths.partial_meta.read_text(encoding="utf-8"))
    except OSError, ValueError:
        return {}
    return data if isinstance(data, dict) else {}
