"""One recording's copy on disk: queued writes while it runs, then finalize in the executor.

``write`` is called on the event loop for every packet the hub gets. It only appends to a
queue; one executor job at a time writes the queue to the partial file. The queue is bounded:
when the disk falls behind by more than ``MAX_QUEUED_BYTES`` (or refuses a write, or has less
than the minimum free space at the start) this clip's copy is given up and its files removed.
The hub's data never waits for the disk.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
import contextlib
from dataclasses import dataclass
from datetime import datetime
import json
import logging
import os
from pathlib import Path
import shutil
from typing import Any, BinaryIO, Final

from homeassistant.core import HomeAssistant

from .finalize import FinalizeError, complete_prefix, remux, thumbnail
from .layout import ClipPaths

_LOGGER = logging.getLogger(__name__)

# About 8 fragments at 2 Mbit/s: a disk this far behind is not keeping up.
MAX_QUEUED_BYTES: Final = 8 * 1024 * 1024
SIDECAR_VERSION: Final = 1


class ArchiveSkipped(Exception):
    """The clip is not archived (no space); not a disk error."""


@dataclass(slots=True)
class ClipMeta:
    """What is known when a recording starts."""

    camera_name: str
    entry_id: str
    started_at: datetime  # UTC
    trigger: str  # "motion" or "doorbell"
    min_free_bytes: int


@dataclass(frozen=True, slots=True)
class KeptClip:
    """A finalized clip."""

    paths: ClipPaths
    sidecar: dict[str, Any]
    has_thumbnail: bool


class ArchiveClip:
    """The copy of one recording (recording/clip_sink.ClipCopy)."""

    def __init__(
        self,
        hass: HomeAssistant,
        paths: ClipPaths,
        meta: ClipMeta,
        *,
        on_done: Callable[
            [ArchiveClip, KeptClip | None, str | None], Awaitable[Mapping[str, Any] | None]
        ],
    ) -> None:
        """Prepare; the first write opens the file (in the executor)."""
        self._hass = hass
        self.paths = paths
        self._meta = meta
        self._on_done = on_done
        self._file: BinaryIO | None = None
        self._queue: list[bytes] = []
        self._queued_bytes = 0  # queued plus being written
        self._busy = False
        self._idle = asyncio.Event()
        self._idle.set()
        self.error: str | None = None
        self.skipped = False
        self.dropped_bytes = 0

    # -- event loop ---------------------------------------------------------------------------

    def write(self, data: bytes | memoryview) -> None:
        """Queue one packet; give the copy up if the disk is too far behind."""
        if self.error is not None or self.skipped:
            self.dropped_bytes += len(data)
            return
        if self._queued_bytes + len(data) > MAX_QUEUED_BYTES:
            self._give_up(f"the disk fell more than {MAX_QUEUED_BYTES // (1024 * 1024)} MiB behind")
            self.dropped_bytes += len(data)
            return
        self._queue.append(bytes(data))
        self._queued_bytes += len(data)
        self._next_batch()

    def _next_batch(self) -> None:
        """Hand the queue to one executor job unless one runs."""
        if self._busy or not self._queue or self.error is not None or self.skipped:
            return
        batch, self._queue = self._queue, []
        self._busy = True
        self._idle.clear()
        job = self._hass.async_add_executor_job(self._write_batch, batch)
        job.add_done_callback(lambda done: self._batch_written(done, batch))

    def _batch_written(self, done: asyncio.Future[None], batch: list[bytes]) -> None:
        """Account for a written batch, and start the next."""
        self._busy = False
        self._queued_bytes -= sum(len(b) for b in batch)
        if done.cancelled():
            self._give_up("writing was cancelled")
        elif isinstance(error := done.exception(), ArchiveSkipped):
            self.skipped = True
            self.error = str(error)
            self._drop_queue()
        elif error is not None:
            self._give_up(f"cannot write {self.paths.partial}: {error}")
        self._next_batch()
        if not self._busy:
            self._idle.set()

    def _give_up(self, error: str) -> None:
        """Stop keeping this clip; the hub's recording goes on."""
        if self.error is None:
            _LOGGER.warning("%s: not archiving this recording: %s", self._meta.camera_name, error)
            self.error = error
        self._drop_queue()

    def _drop_queue(self) -> None:
        self.dropped_bytes += sum(len(b) for b in self._queue)
        self._queued_bytes -= sum(len(b) for b in self._queue)
        self._queue = []

    def finish(
        self,
        summary: Mapping[str, Any],
        announce: Callable[[Mapping[str, Any] | None], None],
    ) -> None:
        """Finalize after the last write, then announce (recording/clip_sink.ClipCopy)."""
        # Tracked (not a background task): Home Assistant's stop waits for the finalize.
        self._hass.async_create_task(
            self._async_finish(dict(summary), announce),
            f"hksv archive {self.paths.identifier}",
            eager_start=False,
        )

    async def _async_finish(
        self, summary: dict[str, Any], announce: Callable[[Mapping[str, Any] | None], None]
    ) -> None:
        kept: KeptClip | None = None
        try:
            await self._idle.wait()
            if self.error is None:
                kept = await self._hass.async_add_executor_job(self._finalize, summary)
            else:
                await self._hass.async_add_executor_job(self._discard)
        except FinalizeError as err:
            self.error = self.error or f"nothing to keep: {err}"
            await self._hass.async_add_executor_job(self._discard)
        except Exception as err:  # noqa: BLE001 - the archive must never break the recording path
            self.error = f"cannot finalize {self.paths.partial}: {err}"
            _LOGGER.warning("%s: %s", self._meta.camera_name, self.error)
            await self._hass.async_add_executor_job(self._discard)
        clip: Mapping[str, Any] | None = None
        try:
            clip = await self._on_done(self, kept, self.error)
        finally:
            announce(clip)

    # -- executor -----------------------------------------------------------------------------

    def _write_batch(self, batch: list[bytes]) -> None:
        """Append packets to the partial file (opened, with its metadata, on the first)."""
        if self._file is None:
            folder = self.paths.folder
            folder.mkdir(parents=True, exist_ok=True)
            free = shutil.disk_usage(folder).free
            if free < self._meta.min_free_bytes:
                raise ArchiveSkipped(
                    f"only {free // (1024 * 1024)} MiB free, below the minimum of "
                    f"{self._meta.min_free_bytes // (1024 * 1024)} MiB"
                )
            write_json(self.paths.partial_meta, self._base_sidecar())
            self._file = self.paths.partial.open("wb")
        self._file.writelines(batch)
        self._file.flush()  # a crash keeps every fragment that was handed over

    def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def _discard(self) -> None:
        """Remove what was written of a clip that is not kept."""
        with contextlib.suppress(OSError):
            self._close()
        for path in (self.paths.partial, self.paths.partial_meta):
            path.unlink(missing_ok=True)

    def _base_sidecar(self) -> dict[str, Any]:
        meta = self._meta
        return {
            "version": SIDECAR_VERSION,
            "camera": meta.camera_name,
            "entry_id": meta.entry_id,
            "start": meta.started_at.isoformat(),
            "trigger": meta.trigger,
        }

    def _finalize(self, summary: dict[str, Any]) -> KeptClip:
        """Remux, thumbnail, sidecar; the partial files go."""
        self._close()
        if not self.paths.partial.exists():
            # No packet ever went out (the camera failed before the first one): not an error.
            raise FinalizeError("nothing was sent")
        sidecar = self._base_sidecar()
        sidecar.update(
            outcome=summary.get("outcome"),
            hub_close_reason=summary.get("hub_close_reason"),
            error=summary.get("error"),
            mode=summary.get("mode"),
        )
        return finalize_partial(
            self.paths, sidecar, preroll_seconds=float(summary.get("prebuffer_seconds") or 0)
        )


def finalize_partial(
    paths: ClipPaths, sidecar: dict[str, Any], *, preroll_seconds: float
) -> KeptClip:
    """Finalize a partial file into MP4 + thumbnail + sidecar (executor; also for recovery)."""
    length = complete_prefix(paths.partial)
    if length == 0:
        raise FinalizeError("no complete fragment")
    result = remux(paths.partial, paths.video, length=length)
    try:
        has_thumbnail = thumbnail(paths.video, paths.thumbnail, after_seconds=preroll_seconds)
    except Exception:
        _LOGGER.debug("no thumbnail for %s", paths.video, exc_info=True)
        has_thumbnail = False
    sidecar = {
        **sidecar,
        "duration": round(result.duration_seconds, 3),
        "bytes": result.size,
        "video_frames": result.video_packets,
        "audio_packets": result.audio_packets,
        "thumbnail": has_thumbnail,
    }
    write_json(paths.sidecar, sidecar)
    paths.partial.unlink(missing_ok=True)
    paths.partial_meta.unlink(missing_ok=True)
    return KeptClip(paths, sidecar, has_thumbnail)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write JSON under a temporary name and rename it into place."""
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(temporary, path)
