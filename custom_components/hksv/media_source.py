"""HomeKit Secure Video clips in Home Assistant's media browser.

HomeKit Secure Video → camera (thumbnail of its newest clip) → day ("Today (12)", newest
first) → clip ("14:03:12 · 18 s"). Playback is the file under Home Assistant's own
authenticated `/media/<dir>/…` route (Range requests, signed URLs; docs/local-clips.md).
Everything is read from disk when asked, in the executor: from 2026.7 this platform is loaded
lazily, at the first browse.
"""

from __future__ import annotations

from datetime import date, timedelta
from functools import partial
from pathlib import Path
from typing import Final
from urllib.parse import quote

from homeassistant.components.media_player.const import MediaClass, MediaType
from homeassistant.components.media_player.errors import BrowseError
from homeassistant.components.media_source import (
    BrowseMediaSource,
    MediaSource,
    MediaSourceItem,
    PlayMedia,
    Unresolvable,
)
from homeassistant.core import HomeAssistant
from homeassistant.helpers.translation import async_get_translations
from homeassistant.util import dt as dt_util

from .archive import index
from .archive.layout import ARCHIVE_FOLDER, parse_identifier
from .archive.manager import media_root
from .const import DOMAIN

# The media browser has no paging (docs/local-clips.md): listings are capped.
MAX_DAYS: Final = 100
MAX_CLIPS_PER_DAY: Final = 200
# Outcomes of a clip that plays as recorded; the others are marked.
GOOD_OUTCOMES: Final = frozenset({"completed", "max_duration", "camera_turned_off"})
_TEXTS: Final = ("title", "today", "yesterday", "failed")


async def async_get_media_source(hass: HomeAssistant) -> HksvMediaSource:
    """Return the archive's media source."""
    return HksvMediaSource(hass)


class HksvMediaSource(MediaSource):
    """Browse and play the clips of every camera's archive."""

    name = "HomeKit Secure Video"

    def __init__(self, hass: HomeAssistant) -> None:
        """Remember Home Assistant."""
        super().__init__(DOMAIN)
        self.hass = hass

    def _root(self) -> tuple[str, Path]:
        """Return the media-dir id and the archive folder."""
        found = media_root(self.hass)
        if found is None:
            raise BrowseError(translation_domain=DOMAIN, translation_key="archive_unavailable")
        return found[0], found[1] / ARCHIVE_FOLDER

    def _url(self, dir_id: str, relative: str) -> str:
        """Return the /media URL of a file under the archive (no query: it gets signed)."""
        return f"/media/{quote(dir_id)}/{quote(f'{ARCHIVE_FOLDER}/{relative}')}"

    async def _texts(self) -> dict[str, str]:
        """Return the browser's words in Home Assistant's language."""
        prefix = f"component.{DOMAIN}.selector.media_browser.options."
        found = await async_get_translations(
            self.hass, self.hass.config.language, "selector", [DOMAIN]
        )
        return {key: found.get(prefix + key, key) for key in _TEXTS}

    async def async_resolve_media(self, item: MediaSourceItem) -> PlayMedia:
        """Return the clip's /media URL (signed by the websocket resolve) and file."""
        parts = parse_identifier(item.identifier or "")
        if parts is None or len(parts) != 3:
            raise Unresolvable(
                translation_domain=DOMAIN,
                translation_key="archive_invalid_item",
                translation_placeholders={"identifier": item.identifier or ""},
            )
        try:
            dir_id, root = self._root()
        except BrowseError as err:
            raise Unresolvable(
                translation_domain=DOMAIN, translation_key="archive_unavailable"
            ) from err
        camera, day, stem = parts
        clip = await self.hass.async_add_executor_job(index.read_clip, root, camera, day, stem)
        if clip is None:
            raise Unresolvable(
                translation_domain=DOMAIN,
                translation_key="archive_unknown_item",
                translation_placeholders={"identifier": item.identifier or ""},
            )
        return PlayMedia(
            self._url(dir_id, f"{clip.paths.identifier}.mp4"), "video/mp4", path=clip.paths.video
        )

    async def async_browse_media(self, item: MediaSourceItem) -> BrowseMediaSource:
        """Return the archive, a camera, a day, or one clip."""
        parts = parse_identifier(item.identifier or "")
        if parts is None:
            raise BrowseError(
                translation_domain=DOMAIN,
                translation_key="archive_invalid_item",
                translation_placeholders={"identifier": item.identifier or ""},
            )
        dir_id, root = self._root()
        texts = await self._texts()
        if not parts:
            return await self._browse_root(dir_id, root, texts)
        if not await self.hass.async_add_executor_job(index.camera_exists, root, parts[0]):
            raise self._unknown(item)
        if len(parts) == 1:
            return await self._browse_camera(root, parts[0], texts)
        if len(parts) == 2:
            return await self._browse_day(dir_id, root, parts[0], parts[1], texts)
        camera, day, stem = parts
        clip = await self.hass.async_add_executor_job(index.read_clip, root, camera, day, stem)
        if clip is None:
            raise self._unknown(item)
        return self._clip_item(dir_id, clip, texts)

    def _unknown(self, item: MediaSourceItem) -> BrowseError:
        return BrowseError(
            translation_domain=DOMAIN,
            translation_key="archive_unknown_item",
            translation_placeholders={"identifier": item.identifier or ""},
        )

    async def _browse_root(
        self, dir_id: str, root: Path, texts: dict[str, str]
    ) -> BrowseMediaSource:
        cameras = await self.hass.async_add_executor_job(index.list_cameras, root)
        children = [
            BrowseMediaSource(
                domain=DOMAIN,
                identifier=camera.folder,
                media_class=MediaClass.DIRECTORY,
                media_content_type=MediaType.VIDEO,
                title=(camera.latest.camera_name if camera.latest else None) or camera.folder,
                can_play=False,
                can_expand=True,
                thumbnail=self._thumbnail(dir_id, camera.latest),
            )
            for camera in cameras
        ]
        return BrowseMediaSource(
            domain=DOMAIN,
            identifier=None,
            media_class=MediaClass.DIRECTORY,
            media_content_type=MediaType.VIDEO,
            title=texts["title"],
            can_play=False,
            can_expand=True,
            children=children,
            children_media_class=MediaClass.DIRECTORY,
        )

    async def _browse_camera(
        self, root: Path, camera: str, texts: dict[str, str]
    ) -> BrowseMediaSource:
        days = await self.hass.async_add_executor_job(index.list_days, root, camera, MAX_DAYS)
        latest = await self.hass.async_add_executor_job(index.latest_clip, root, camera)
        today = dt_util.now().date()
        children = [
            BrowseMediaSource(
                domain=DOMAIN,
                identifier=f"{camera}/{day}",
                media_class=MediaClass.DIRECTORY,
                media_content_type=MediaType.VIDEO,
                title=f"{_day_title(day, today, texts)} ({count})",
                can_play=False,
                can_expand=True,
            )
            for day, count in days
        ]
        return BrowseMediaSource(
            domain=DOMAIN,
            identifier=camera,
            media_class=MediaClass.DIRECTORY,
            media_content_type=MediaType.VIDEO,
            title=(latest.camera_name if latest else None) or camera,
            can_play=False,
            can_expand=True,
            children=children,
            children_media_class=MediaClass.DIRECTORY,
        )

    async def _browse_day(
        self, dir_id: str, root: Path, camera: str, day: str, texts: dict[str, str]
    ) -> BrowseMediaSource:
        clips = await self.hass.async_add_executor_job(
            partial(index.list_clips, root, camera, day, MAX_CLIPS_PER_DAY)
        )
        if not clips:
            raise BrowseError(
                translation_domain=DOMAIN,
                translation_key="archive_unknown_item",
                translation_placeholders={"identifier": f"{camera}/{day}"},
            )
        name = next((clip.camera_name for clip in clips if clip.camera_name), camera)
        title = f"{name} · {_day_title(day, dt_util.now().date(), texts)}"
        return BrowseMediaSource(
            domain=DOMAIN,
            identifier=f"{camera}/{day}",
            media_class=MediaClass.DIRECTORY,
            media_content_type=MediaType.VIDEO,
            title=title,
            can_play=False,
            can_expand=True,
            children=[self._clip_item(dir_id, clip, texts) for clip in clips],
            children_media_class=MediaClass.VIDEO,
        )

    def _clip_item(
        self, dir_id: str, clip: index.ClipEntry, texts: dict[str, str]
    ) -> BrowseMediaSource:
        return BrowseMediaSource(
            domain=DOMAIN,
            identifier=clip.paths.identifier,
            media_class=MediaClass.VIDEO,
            media_content_type="video/mp4",
            title=clip_title(clip, texts),
            can_play=True,
            can_expand=False,
            thumbnail=self._thumbnail(dir_id, clip),
        )

    def _thumbnail(self, dir_id: str, clip: index.ClipEntry | None) -> str | None:
        if clip is None or not clip.has_thumbnail:
            return None
        return self._url(dir_id, f"{clip.paths.identifier}.jpg")


def _day_title(day: str, today: date, texts: dict[str, str]) -> str:
    """Return "Today", "Yesterday" or the date."""
    if day == today.isoformat():
        return texts["today"]
    if day == (today - timedelta(days=1)).isoformat():
        return texts["yesterday"]
    return day


def clip_title(clip: index.ClipEntry, texts: dict[str, str]) -> str:
    """Return "14:03:12 · 18 s", marked when the recording did not end well."""
    title = clip.started.strftime("%H:%M:%S")
    if clip.duration is not None:
        title += f" · {round(clip.duration)} s"
    if clip.outcome is not None and clip.outcome not in GOOD_OUTCOMES:
        title += f" · ⚠ {texts['failed']}"
    return title
