"""Where archived clips live, and the identifiers the media browser uses for them.

``<media dir>/hksv/<camera>/<YYYY-MM-DD>/<HHMMSS>.mp4`` (local date and time of the start),
with ``<HHMMSS>.jpg`` (thumbnail) and ``<HHMMSS>.json`` (sidecar) beside it. While a
recording runs it is ``.<HHMMSS>.partial.mp4`` plus ``.<HHMMSS>.partial.json``: names with a
leading dot are hidden from "My media", and whatever has such a name at start-up was left by
a crash. Identifiers are the same path without the extension; each part must match its
pattern, so ``..`` or anything else cannot leave the archive.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from pathlib import Path
import re
from typing import Final

ARCHIVE_FOLDER: Final = "hksv"
CAMERA_PATTERN: Final = re.compile(r"[a-z0-9_]{1,64}")
DAY_PATTERN: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
STEM_PATTERN: Final = re.compile(r"(\d{6})(?:-(\d{1,6}))?")
PARTIAL_SUFFIX: Final = ".partial.mp4"
PARTIAL_META_SUFFIX: Final = ".partial.json"


@dataclass(frozen=True, slots=True)
class ClipPaths:
    """The files of one clip."""

    root: Path  # <media dir>/hksv
    camera: str
    day: str
    stem: str

    @property
    def folder(self) -> Path:
        """Return the clip's day folder."""
        return self.root / self.camera / self.day

    @property
    def video(self) -> Path:
        """Return the finalized MP4."""
        return self.folder / f"{self.stem}.mp4"

    @property
    def thumbnail(self) -> Path:
        """Return the JPEG thumbnail."""
        return self.folder / f"{self.stem}.jpg"

    @property
    def sidecar(self) -> Path:
        """Return the JSON sidecar."""
        return self.folder / f"{self.stem}.json"

    @property
    def partial(self) -> Path:
        """Return the fragmented MP4 written while the recording runs."""
        return self.folder / f".{self.stem}{PARTIAL_SUFFIX}"

    @property
    def partial_meta(self) -> Path:
        """Return what is known about a running recording (for recovery after a crash)."""
        return self.folder / f".{self.stem}{PARTIAL_META_SUFFIX}"

    @property
    def identifier(self) -> str:
        """Return the media-source identifier (and the path under the archive folder)."""
        return f"{self.camera}/{self.day}/{self.stem}"

    @property
    def started(self) -> datetime | None:
        """Return the local start time the names encode (naive)."""
        return local_start(self.day, self.stem)

    def all_files(self) -> tuple[Path, ...]:
        """Return every file the clip may have."""
        return (self.video, self.thumbnail, self.sidecar, self.partial, self.partial_meta)


def local_start(day: str, stem: str) -> datetime | None:
    """Return the naive local start encoded in a day folder and a file stem."""
    match = STEM_PATTERN.fullmatch(stem)
    if match is None or DAY_PATTERN.fullmatch(day) is None:
        return None
    clock = match.group(1)
    try:
        return datetime.combine(
            date.fromisoformat(day), time(int(clock[:2]), int(clock[2:4]), int(clock[4:]))
        )
    except ValueError:
        return None


def parse_identifier(identifier: str) -> tuple[str, ...] | None:
    """Split a media-source identifier into camera[, day[, stem]]; None when invalid."""
    parts = tuple(identifier.split("/")) if identifier else ()
    patterns = (CAMERA_PATTERN, DAY_PATTERN, STEM_PATTERN)
    if len(parts) > len(patterns):
        return None
    for part, pattern in zip(parts, patterns, strict=False):
        if pattern.fullmatch(part) is None:
            return None
    if len(parts) == 3 and local_start(parts[1], parts[2]) is None:
        return None
    return parts
