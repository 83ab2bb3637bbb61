"""Which archived clips to delete, oldest first, and the deleting (executor only).

Three limits, in this order: each camera's age limit, the total size of the archive across
all cameras, and the free space the disk must keep. Files may vanish at any time (deleted in
"My media" or over Samba): a missing file is never an error.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
import os
from pathlib import Path
import shutil

from .layout import CAMERA_PATTERN, DAY_PATTERN, PARTIAL_SUFFIX, STEM_PATTERN, ClipPaths

GIB = 1024**3
CLIP_EXTENSIONS = frozenset({"mp4", "jpg", "json"})


@dataclass(frozen=True, slots=True)
class StoredClip:
    """A finalized clip on disk."""

    paths: ClipPaths
    started: datetime  # naive local time, from its name
    size: int  # every file of the clip
    has_video: bool = True  # False: its MP4 was deleted by hand; the rest goes too


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """The limits; a camera without its own age limit gets ``default_days``."""

    default_days: int
    max_total_bytes: int
    min_free_bytes: int
    days: Mapping[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class CleanupResult:
    """What a cleanup did and what is left."""

    deleted: int = 0
    freed_bytes: int = 0
    clips: int = 0
    total_bytes: int = 0
    oldest: datetime | None = None
    free_bytes: int = 0
    short_of_space: bool = False  # still below the free-space minimum with nothing to delete
    by_camera: dict[str, CameraUsage] = field(default_factory=dict)


@dataclass(slots=True)
class CameraUsage:
    """One camera's part of the archive."""

    clips: int = 0
    bytes: int = 0
    oldest: datetime | None = None  # naive local time


def folder_entries(folder: Path) -> Iterator[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            yield from entries
    except FileNotFoundError, NotADirectoryError:
        return


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def scan(root: Path, camera: str | None = None) -> list[StoredClip]:
    """Return the finalized clips under ``root`` (<media>/hksv), oldest first."""
    clips: list[StoredClip] = []
    for camera_entry in folder_entries(root):
        if not camera_entry.is_dir() or not CAMERA_PATTERN.fullmatch(camera_entry.name):
            continue
        if camera is not None and camera_entry.name != camera:
            continue
        for day_entry in folder_entries(Path(camera_entry.path)):
            if not day_entry.is_dir() or not DAY_PATTERN.fullmatch(day_entry.name):
                continue
            stems: dict[str, bool] = {}
            for file in folder_entries(Path(day_entry.path)):
                stem, dot, extension = file.name.rpartition(".")
                if extension in CLIP_EXTENSIONS and dot and STEM_PATTERN.fullmatch(stem):
                    stems[stem] = stems.get(stem, False) or extension == "mp4"
            for stem, has_video in stems.items():
                paths = ClipPaths(root, camera_entry.name, day_entry.name, stem)
                started = paths.started
                if started is None:
                    continue
                size = sum(_size(p) for p in (paths.video, paths.thumbnail, paths.sidecar))
                clips.append(StoredClip(paths, started, size, has_video))
    clips.sort(key=lambda clip: (clip.started, clip.paths.stem))
    return clips


def plan(
    clips: Iterable[StoredClip], policy: RetentionPolicy, *, now: datetime, free_bytes: int
) -> tuple[list[StoredClip], bool]:
    """Return the clips to delete, oldest first, and whether free space stays too low."""
    remaining = sorted(clips, key=lambda clip: clip.started)
    doomed: list[StoredClip] = []
    kept: list[StoredClip] = []
    for clip in remaining:
        if not clip.has_video:
            doomed.append(clip)  # the user deleted the video: its thumbnail and sidecar go
            continue
        days = policy.days.get(clip.paths.camera, policy.default_days)
        (doomed if clip.started < now - timedelta(days=days) else kept).append(clip)
    total = sum(clip.size for clip in kept)
    free = free_bytes + sum(clip.size for clip in doomed)
    while kept and (total > policy.max_total_bytes or free < policy.min_free_bytes):
        clip = kept.pop(0)
        doomed.append(clip)
        total -= clip.size
        free += clip.size
    return doomed, free < policy.min_free_bytes


def delete(clip: StoredClip) -> int:
    """Delete a clip's files (missing ones are fine) and empty folders; return bytes freed."""
    freed = 0
    for path in clip.paths.all_files():
        size = _size(path)
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        freed += size
    for folder in (clip.paths.folder, clip.paths.folder.parent):
        try:
            folder.rmdir()
        except OSError:
            break  # not empty (or gone)
    return freed


def cleanup(root: Path, policy: RetentionPolicy, *, now: datetime) -> CleanupResult:
    """Apply the policy to everything under ``root``; return what is left (executor)."""
    result = CleanupResult()
    clips = scan(root)
    free = disk_free(root)
    doomed, result.short_of_space = plan(clips, policy, now=now, free_bytes=free)
    for clip in doomed:
        result.freed_bytes += delete(clip)
        result.deleted += 1
    gone = {clip.paths for clip in doomed}
    left = [clip for clip in clips if clip.paths not in gone]
    result.clips = len(left)
    result.total_bytes = sum(clip.size for clip in left)
    result.oldest = left[0].started if left else None
    result.free_bytes = free + result.freed_bytes
    for clip in left:  # oldest first
        usage = result.by_camera.setdefault(clip.paths.camera, CameraUsage())
        usage.clips += 1
        usage.bytes += clip.size
        usage.oldest = usage.oldest or clip.started
    return result


def disk_free(root: Path) -> int:
    """Return the free bytes on the archive's disk (its nearest existing folder)."""
    folder = root
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return shutil.disk_usage(folder).free


def partial_files(root: Path) -> list[ClipPaths]:
    """Return the clips a crash left as partial files."""
    found: list[ClipPaths] = []
    for camera_entry in folder_entries(root):
        if not CAMERA_PATTERN.fullmatch(camera_entry.name):
            continue
        for day_entry in folder_entries(Path(camera_entry.path)):
            if not DAY_PATTERN.fullmatch(day_entry.name):
                continue
            for file in folder_entries(Path(day_entry.path)):
                name = file.name
                if name.startswith(".") and name.endswith(PARTIAL_SUFFIX):
                    stem = name[1 : -len(PARTIAL_SUFFIX)]
                    if STEM_PATTERN.fullmatch(stem):
                        found.append(ClipPaths(root, camera_entry.name, day_entry.name, stem))
    return found
