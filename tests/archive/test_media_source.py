"""The archive in Home Assistant's media browser: browse, resolve, play over HTTP.

hksv is set up for real (media-source platforms are found among loaded integrations, lazily
from 2026.7); listings come from clip files on disk, playback from a clip the real recorder
archived, served by Home Assistant's own /media route.
"""

from __future__ import annotations

from datetime import datetime
import json
from pathlib import Path
from typing import Any
from unittest.mock import patch

from freezegun.api import FrozenDateTimeFactory
from homeassistant.components import media_source
from homeassistant.components.media_player.errors import BrowseError
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import pytest

from custom_components.hksv import media_source as hksv_media_source
from custom_components.hksv.archive.layout import ClipPaths

PREFIX = "media-source://hksv"


def _clip(
    root: Path,
    camera: str,
    started: str,
    *,
    duration: float = 18.2,
    outcome: str = "completed",
    name: str = "Front door",
    thumbnail: bool = True,
) -> ClipPaths:
    """Write a clip's files as the archive leaves them."""
    moment = datetime.fromisoformat(started)
    paths = ClipPaths(root, camera, moment.strftime("%Y-%m-%d"), moment.strftime("%H%M%S"))
    paths.folder.mkdir(parents=True, exist_ok=True)
    paths.video.write_bytes(b"\x00" * 64)
    if thumbnail:
        paths.thumbnail.write_bytes(b"\xff\xd8\xff\xd9")
    paths.sidecar.write_text(json.dumps({"camera": name, "duration": duration, "outcome": outcome}))
    return paths


async def _write(hass: HomeAssistant, *clips: tuple[Any, ...]) -> list[ClipPaths]:
    def write() -> list[ClipPaths]:
        return [_clip(*args[:3], **(args[3] if len(args) > 3 else {})) for args in clips]

    return await hass.async_add_executor_job(write)


async def test_browse_camera_day_clip_newest_first(
    hass: HomeAssistant, archive_root: Path, freezer: FrozenDateTimeFactory
) -> None:
    """Cameras with their newest thumbnail; days "Today (n)"; clips "HH:MM:SS · n s"."""
    freezer.move_to(datetime(2026, 12, 7, 15, 0, tzinfo=dt_util.get_default_time_zone()))
    await _write(
        hass,
        (archive_root, "front_door", "2026-12-07T14:03:12"),
        (
            archive_root,
            "front_door",
            "2026-12-07T09:00:01",
            {"outcome": "hub_error", "duration": 3.6},
        ),
        (archive_root, "front_door", "2026-12-07T11:30:00", {"thumbnail": False}),
        (archive_root, "front_door", "2026-12-06T23:59:59"),
        (archive_root, "front_door", "2026-12-01T08:00:00"),
        (archive_root, "garden", "2026-12-05T10:00:00", {"name": "Garden"}),
    )
    root = await media_source.async_browse_media(hass, PREFIX)
    assert root.title == "HomeKit Secure Video"
    assert [(c.title, c.identifier) for c in root.children] == [
        ("Front door", "front_door"),
        ("Garden", "garden"),
    ]
    assert root.children[0].thumbnail == "/media/local/hksv/front_door/2026-12-07/140312.jpg"
    assert root.children[0].can_expand and not root.children[0].can_play

    camera = await media_source.async_browse_media(hass, f"{PREFIX}/front_door")
    assert [c.title for c in camera.children] == ["Today (3)", "Yesterday (1)", "2026-12-01 (1)"]

    day = await media_source.async_browse_media(hass, f"{PREFIX}/front_door/2026-12-07")
    assert [c.title for c in day.children] == [
        "14:03:12 · 18 s",
        "11:30:00 · 18 s",
        "09:00:01 · 4 s · ⚠ failed",
    ]
    assert [c.thumbnail for c in day.children] == [
        "/media/local/hksv/front_door/2026-12-07/140312.jpg",
        None,
        "/media/local/hksv/front_door/2026-12-07/090001.jpg",
    ]
    assert all(c.can_play and c.media_content_type == "video/mp4" for c in day.children)
    assert day.children[0].media_content_id == f"{PREFIX}/front_door/2026-12-07/140312"


async def test_listings_are_capped(hass: HomeAssistant, archive_root: Path) -> None:
    """The browser has no paging: days and clips stop at their caps, newest kept."""
    await _write(
        hass,
        *[
            (archive_root, "front_door", f"2026-11-0{d}T10:00:0{s}")
            for d in (1, 2, 3)
            for s in (1, 2, 3)
        ],
    )
    with (
        patch.object(hksv_media_source, "MAX_DAYS", 2),
        patch.object(hksv_media_source, "MAX_CLIPS_PER_DAY", 2),
    ):
        camera = await media_source.async_browse_media(hass, f"{PREFIX}/front_door")
        day = await media_source.async_browse_media(hass, f"{PREFIX}/front_door/2026-11-03")
    assert [c.identifier for c in camera.children] == [
        "front_door/2026-11-03",
        "front_door/2026-11-02",
    ]
    assert [c.identifier for c in day.children] == [
        "front_door/2026-11-03/100003",
        "front_door/2026-11-03/100002",
    ]


@pytest.mark.parametrize(
    ("identifier", "key"),
    [
        ("..", "archive_invalid_item"),
        ("front_door/..", "archive_invalid_item"),
        ("front_door/2026-12-07/../../../secrets", "archive_invalid_item"),
        ("Front Door", "archive_invalid_item"),
        ("front_door/2026-12-07/250000", "archive_invalid_item"),
        ("back_door", "archive_unknown_item"),
        ("front_door/2026-12-08", "archive_unknown_item"),
        ("front_door/2026-12-07/101010", "archive_unknown_item"),
    ],
)
async def test_bad_or_stale_ids_are_refused_with_a_translated_error(
    hass: HomeAssistant, archive_root: Path, identifier: str, key: str
) -> None:
    """Browse and resolve refuse what is not (or no longer) an archived clip."""
    await _write(hass, (archive_root, "front_door", "2026-12-07T14:03:12"))
    with pytest.raises(BrowseError) as browse:
        await media_source.async_browse_media(hass, f"{PREFIX}/{identifier}")
    assert browse.value.translation_key == key
    assert browse.value.translation_domain == "hksv"
    with pytest.raises(media_source.Unresolvable) as resolve:
        await media_source.async_resolve_media(hass, f"{PREFIX}/{identifier}", None)
    assert resolve.value.translation_key in {"archive_invalid_item", "archive_unknown_item"}


async def test_a_clip_deleted_after_listing_is_stale(
    hass: HomeAssistant, archive_root: Path
) -> None:
    """A clip removed in "My media" after it was listed no longer resolves."""
    (paths,) = await _write(hass, (archive_root, "front_door", "2026-12-07T14:03:12"))
    await hass.async_add_executor_job(paths.video.unlink)
    with pytest.raises(media_source.Unresolvable) as err:
        await media_source.async_resolve_media(hass, f"{PREFIX}/{paths.identifier}", None)
    assert err.value.translation_key == "archive_unknown_item"


async def test_resolve_gives_the_media_url_and_file(
    hass: HomeAssistant, recorded: dict[str, Any], archive_root: Path
) -> None:
    """The clip resolves to core's /media URL (no query string) and its file."""
    played = await media_source.async_resolve_media(hass, recorded["media_content_id"], None)
    assert played.url == recorded["url"]
    assert played.url.startswith("/media/local/hksv/front_door/")
    assert "?" not in played.url
    assert played.mime_type == "video/mp4"
    assert played.path == archive_root / played.url.removeprefix("/media/local/hksv/")


async def test_websocket_resolve_signs_the_url(
    hass: HomeAssistant, recorded: dict[str, Any], hass_ws_client: Any
) -> None:
    """The frontend's resolve gets a signed URL (authSig) to put in <video>."""
    client = await hass_ws_client(hass)
    await client.send_json_auto_id(
        {"type": "media_source/resolve_media", "media_content_id": recorded["media_content_id"]}
    )
    response = await client.receive_json()
    assert response["success"], response
    url = response["result"]["url"]
    assert url.startswith(recorded["url"] + "?authSig=")
    assert response["result"]["mime_type"] == "video/mp4"


async def test_http_range_requests_play_the_clip(
    hass: HomeAssistant,
    recorded: dict[str, Any],
    hass_client: Any,
    hass_client_no_auth: Any,
) -> None:
    """Range → 206 with Content-Range and video/mp4, no attachment; no auth → 401."""
    client = await hass_client()
    whole = await client.get(recorded["url"])
    assert whole.status == 200
    body = await whole.read()
    size = len(body)
    assert whole.headers["Content-Type"] == "video/mp4"
    assert "Content-Disposition" not in whole.headers
    part = await client.get(recorded["url"], headers={"Range": "bytes=100-199"})
    assert part.status == 206
    assert part.headers["Content-Range"] == f"bytes 100-199/{size}"
    assert part.headers["Content-Type"] == "video/mp4"
    assert await part.read() == body[100:200]
    thumb = await client.get(recorded["thumbnail_url"])
    assert thumb.status == 200
    assert thumb.headers["Content-Type"] == "image/jpeg"

    anonymous = await hass_client_no_auth()
    assert (await anonymous.get(recorded["url"])).status == 401
