"""What the archive holds, for the media browser: cameras, days, clips (executor only).

Everything is read from the folders and sidecars when asked (media-source platforms load
lazily, docs/local-clips.md); a file that disappears meanwhile is simply not listed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
import json
from pathlib import Path
from typing import Any

from .layout import CAMERA_PATTERN, DAY_PATTERN, STEM_PATTERN, ClipPaths
from .retention import folder_entries


@dataclass(frozen=True, slots=True)
class ClipEntry:
    """One finalized clip as listed."""

    paths: ClipPaths
    started: datetime  # naive local time
    duration: float | None
    outcome: str | None
    camera_name: str | None
    has_thumbnail: bool


@dataclass(frozen=True, slots=True)
class CameraEntry:
    """One camera folder, with its newest clip."""

    folder: str
    latest: ClipEntry | None


def _stems(folder: Path) -> list[str]:
    """Return the finalized clips of a day folder, newest first."""
    stems = []
    for entry in folder_entries(folder):
        stem, dot, extension = entry.name.rpartition(".")
        if dot and extension == "mp4" and STEM_PATTERN.fullmatch(stem):
            stems.append(stem)
    return sorted(stems, reverse=True)


def _days(root: Path, camera: str) -> list[str]:
    days = [
        entry.name
        for entry in folder_entries(root / camera)
        if DAY_PATTERN.fullmatch(entry.name) and entry.is_dir()
    ]
    return sorted(days, reverse=True)


def read_clip(root: Path, camera: str, day: str, stem: str) -> ClipEntry | None:
    """Return a clip with its sidecar's details, or None when its MP4 is gone."""
    paths = ClipPaths(root, camera, day, stem)
    started = paths.started
    if started is None or not paths.video.is_file():
        return None
    sidecar: dict[str, Any] = {}
    try:
        loaded = json.loads(paths.sidecar.read_text(encoding="utf-8"))
        if isinstance(loaded, dict):
            sidecar = loaded
    except OSError, ValueError:
        pass  # a clip without (or with a damaged) sidecar still plays
    duration = sidecar.get("duration")
    return ClipEntry(
        paths=paths,
        started=started,
        duration=float(duration) if isinstance(duration, int | float) else None,
        outcome=sidecar.get("outcome") if isinstance(sidecar.get("outcome"), str) else None,
        camera_name=sidecar.get("camera") if isinstance(sidecar.get("camera"), str) else None,
        has_thumbnail=paths.thumbnail.is_file(),
    )


def latest_clip(root: Path, camera: str) -> ClipEntry | None:
    """Return a camera's newest clip."""
    for day in _days(root, camera):
        for stem in _stems(root / camera / day):
            if (clip := read_clip(root, camera, day, stem)) is not None:
                return clip
    return None


def list_cameras(root: Path) -> list[CameraEntry]:
    """Return every camera folder with its newest clip, by folder name."""
    cameras = [
        entry.name
        for entry in folder_entries(root)
        if CAMERA_PATTERN.fullmatch(entry.name) and entry.is_dir()
    ]
    return [CameraEntry(name, latest_clip(root, name)) for name in sorted(cameras)]


def list_days(root: Path, camera: str, limit: int) -> list[tuple[str, int]]:
    """Return a camera's days with their clip counts, newest first; empty days left out."""
    days = []
    for day in _days(root, camera):
        count = len(_stems(root / camera / day))
        if count:
            days.append((day, count))
        if len(days) >= limit:
            break
    return days


def list_clips(root: Path, camera: str, day: str, limit: int) -> list[ClipEntry]:
    """Return a day's clips, newest first, at most ``limit``."""
    clips = []
    for stem in _stems(root / camera / day):
        if (clip := read_clip(root, camera, day, stem)) is not None:
            clips.append(clip)
        if len(clips) >= limit:
            break
    return clips


def camera_exists(root: Path, camera: str) -> bool:
    """Return True if the camera has a folder."""
    return (root / camera).is_dir()
