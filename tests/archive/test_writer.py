"""The archive copy of a recording: written as it goes, finalized into a progressive MP4.

Real HA stream-worker GOPs go through the real recorder (on a stand-in prebuffer, so 40 s
of media run in a moment); what the hub got is compared with the finalized file by decoding
both with PyAV.
"""

from __future__ import annotations

from datetime import timedelta
import io
import json
from pathlib import Path
import shutil
import threading
from typing import Any
from unittest.mock import patch

import av
from homeassistant.core import HomeAssistant
from homeassistant.helpers import issue_registry as ir
from homeassistant.util import dt as dt_util
from PIL import Image
import pytest
from pytest_homeassistant_custom_component.common import async_capture_events

from custom_components.hksv.archive import writer as writer_module
from custom_components.hksv.archive.layout import ClipPaths
from custom_components.hksv.archive.manager import NO_SPACE_ISSUE, recover_partials
from custom_components.hksv.const import DOMAIN
from custom_components.hksv.events import EVENT_RECORDING_FINISHED
from custom_components.hksv.hds import DataSendCloseReason, RecordingPacket
from custom_components.hksv.media.fmp4 import iter_boxes
from custom_components.hksv.recording import recorder as recorder_module
from custom_components.hksv.source.gop import Gop
from tests.archive.conftest import ControllerFactory
from tests.recording.ha_parts import decode
from tests.recording.test_recorder import _collect, _selection

CEILING_SECONDS = 24.0
GIB = 1024**3


async def _record(
    hass: HomeAssistant,
    make: ControllerFactory,
    gops: list[Gop],
    *,
    close: DataSendCloseReason = DataSendCloseReason.NORMAL,
    packets_wanted: int | None = None,
    **options: Any,
) -> tuple[list[RecordingPacket], list[Any], Any]:
    """Record ``gops`` (4 buffered, the rest live) and return packets, events and camera.

    The clip ends at a 24 s ceiling (on a real fragment), or after ``packets_wanted``.
    """
    events = async_capture_events(hass, EVENT_RECORDING_FINISHED)
    controller, stand_in, camera = await make(gops[:4], **options)
    stream = controller.open_stream(1, _selection(), True)
    packets = await _take(stream, stand_in, gops[4:], packets_wanted)
    controller.stream_closed(1, close)
    await hass.async_block_till_done()
    return packets, events, camera


async def _take(
    stream: Any, stand_in: Any, live: list[Gop], wanted: int | None
) -> list[RecordingPacket]:
    """Consume the stream to its ceiling, or take ``wanted`` packets and close it."""
    with patch.object(recorder_module, "MAX_RECORDING_SECONDS", CEILING_SECONDS):
        if wanted is None:
            return await _collect(stream, stand_in, live)
        packets = [await anext(stream)]
        for gop in live:
            stand_in.push(gop)
        packets += [await anext(stream) for _ in range(wanted - 1)]
        await stream.aclose()
        return packets


def _clip_files(media_dir: Path) -> list[Path]:
    return sorted(p for p in media_dir.rglob("*") if p.is_file())


async def test_a_recording_is_finalized_into_a_progressive_mp4(
    hass: HomeAssistant,
    archived_controller: ControllerFactory,
    clip_gops: list[Gop],
    media_dir: Path,
) -> None:
    """ftyp, moov, mdat in that order; every frame and sample the hub got; time from 0."""
    packets, events, _camera = await _record(hass, archived_controller, clip_gops)
    sent_init, sent = bytes(packets[0].data), [bytes(p.data) for p in packets[1:]]
    assert len(events) == 1
    data = events[0].data
    assert data["media_content_id"].startswith("media-source://hksv/front_door/")
    identifier = data["media_content_id"].removeprefix("media-source://hksv/")
    assert data["url"] == f"/media/local/hksv/{identifier}.mp4"
    assert data["thumbnail_url"] == f"/media/local/hksv/{identifier}.jpg"

    video = media_dir / "hksv" / f"{identifier}.mp4"
    names = sorted(p.name for p in video.parent.iterdir())
    stem = video.stem
    assert names == [f"{stem}.jpg", f"{stem}.json", f"{stem}.mp4"]  # no partial files left
    content = video.read_bytes()
    top = [box.type for box in iter_boxes(content)]
    assert top.index(b"ftyp") < top.index(b"moov") < top.index(b"mdat")
    assert b"moof" not in top

    expected = decode(sent_init, sent)
    got = decode(content, [])
    assert [f.counter for f in got.frames] == [f.counter for f in expected.frames]
    assert got.audio_samples == expected.audio_samples > 0
    assert got.frames[0].time == 0.0
    with av.open(str(video)) as container:
        first = {s.type: None for s in container.streams}
        for packet in container.demux():
            if packet.dts is not None and first[packet.stream.type] is None:
                first[packet.stream.type] = packet.pts
        assert min(v for v in first.values() if v is not None) == 0
        duration = container.duration / 1_000_000
    media_seconds = len(expected.frames) / 25
    assert abs(duration - media_seconds) < 0.1

    sidecar = json.loads((video.with_suffix(".json")).read_text())
    assert sidecar["outcome"] == "max_duration"
    assert sidecar["hub_close_reason"] == "NORMAL"
    assert sidecar["trigger"] == "motion"
    assert sidecar["mode"] == "copy"
    assert sidecar["bytes"] == len(content)
    assert abs(sidecar["duration"] - media_seconds) < 0.05
    assert sidecar["start"] == data["started_at"]
    with Image.open(video.with_suffix(".jpg")) as thumb:
        assert thumb.format == "JPEG"
        assert thumb.width == 320


async def test_a_clip_the_hub_ended_with_an_error_is_kept_and_labelled(
    hass: HomeAssistant,
    archived_controller: ControllerFactory,
    clip_gops: list[Gop],
    media_dir: Path,
) -> None:
    """The hub's error closes the stream; what it got is still archived, with the outcome."""
    _packets, events, _camera = await _record(
        hass, archived_controller, clip_gops, close=DataSendCloseReason.BAD_DATA, packets_wanted=3
    )
    assert events[0].data["url"] is not None
    sidecars = list(media_dir.rglob("*.json"))
    assert len(sidecars) == 1
    sidecar = json.loads(sidecars[0].read_text())
    assert sidecar["outcome"] == "hub_error"
    assert sidecar["hub_close_reason"] == "BAD_DATA"


async def test_archive_off_keeps_nothing(
    hass: HomeAssistant,
    archived_controller: ControllerFactory,
    clip_gops: list[Gop],
    media_dir: Path,
) -> None:
    """A camera with the archive off writes nothing; the event says so with None."""
    _packets, events, _camera = await _record(
        hass, archived_controller, clip_gops, packets_wanted=3, archive=False
    )
    assert _clip_files(media_dir) == []
    assert events[0].data["url"] is None
    assert events[0].data["media_content_id"] is None
    assert events[0].data["thumbnail_url"] is None


async def test_a_disk_that_refuses_writes_loses_only_the_copy(
    hass: HomeAssistant,
    archived_controller: ControllerFactory,
    clip_gops: list[Gop],
    media_dir: Path,
) -> None:
    """Every write fails (ENOSPC): the hub gets the whole clip, the archive nothing."""

    def refuse(self: Any, batch: list[bytes]) -> None:
        raise OSError(28, "No space left on device")

    with patch.object(writer_module.ArchiveClip, "_write_batch", refuse):
        packets, events, camera = await _record(hass, archived_controller, clip_gops)
    reference, _, _ = await _record(hass, archived_controller, clip_gops, archive=False)
    assert [bytes(p.data) for p in packets] == [bytes(p.data) for p in reference]
    assert packets[-1].is_last
    assert events[0].data["outcome"] == "max_duration"
    assert events[0].data["url"] is None
    assert "No space left on device" in (camera.last_error or "")
    assert camera.archive.stats.last_error == camera.last_error
    assert _clip_files(media_dir) == []


async def test_a_stalled_disk_never_holds_the_recording_back(
    hass: HomeAssistant,
    archived_controller: ControllerFactory,
    clip_gops: list[Gop],
    media_dir: Path,
) -> None:
    """Writes that hang: the queue bound gives the copy up; every packet still goes out."""
    release = threading.Event()
    original = writer_module.ArchiveClip._write_batch

    def stall(self: Any, batch: list[bytes]) -> None:
        release.wait(60)
        original(self, batch)

    try:
        with (
            patch.object(writer_module.ArchiveClip, "_write_batch", stall),
            patch.object(writer_module, "MAX_QUEUED_BYTES", 512 * 1024),
        ):
            events = async_capture_events(hass, EVENT_RECORDING_FINISHED)
            controller, stand_in, camera = await archived_controller(clip_gops[:4])
            stream = controller.open_stream(1, _selection(), True)
            packets = await _take(stream, stand_in, clip_gops[4:], None)
            # The whole recording went out while the disk had not finished one write.
            assert not release.is_set()
            assert sum(len(p.data) for p in packets) > 512 * 1024
            controller.stream_closed(1, DataSendCloseReason.NORMAL)
            release.set()
            await hass.async_block_till_done()
    finally:
        release.set()
    assert events[0].data["url"] is None
    assert "behind" in (camera.last_error or "")
    assert _clip_files(media_dir) == []


def _partial(media_dir: Path, init: bytes, fragments: list[bytes], tail: bytes) -> ClipPaths:
    paths = ClipPaths(media_dir / "hksv", "front_door", "2026-12-07", "101500")
    paths.folder.mkdir(parents=True)
    paths.partial.write_bytes(init + b"".join(fragments) + tail)
    paths.partial_meta.write_text(
        json.dumps({"camera": "Front door", "start": "2026-12-07T10:15:00+00:00"})
    )
    return paths


async def test_a_crash_leaves_a_partial_file_that_is_finalized_at_start(
    hass: HomeAssistant,
    archived_controller: ControllerFactory,
    clip_gops: list[Gop],
    media_dir: Path,
) -> None:
    """The complete fragments of a torn partial file become the clip; the torn one goes."""
    reference, _, _ = await _record(hass, archived_controller, clip_gops, archive=False)
    init, fragments = bytes(reference[0].data), [bytes(p.data) for p in reference[1:4]]
    torn = bytes(reference[4].data)[: len(reference[4].data) // 2]
    paths = _partial(media_dir, init, fragments, torn)
    empty = ClipPaths(media_dir / "hksv", "front_door", "2026-12-07", "101600")
    empty.partial.write_bytes(init)  # a crash before the first fragment: nothing to keep

    recovered = await hass.async_add_executor_job(recover_partials, media_dir / "hksv")
    assert recovered == (1, 1)
    assert not paths.partial.exists() and not paths.partial_meta.exists()
    assert not empty.partial.exists()
    got = decode(paths.video.read_bytes(), [])
    expected = decode(init, fragments)
    assert [f.counter for f in got.frames] == [f.counter for f in expected.frames]
    sidecar = json.loads(paths.sidecar.read_text())
    assert sidecar["outcome"] == "interrupted"
    assert sidecar["camera"] == "Front door"
    assert sidecar["start"] == "2026-12-07T10:15:00+00:00"


async def test_recovery_runs_when_the_archive_starts(
    hass: HomeAssistant,
    archived_controller: ControllerFactory,
    clip_gops: list[Gop],
    media_dir: Path,
) -> None:
    """The first camera to register finalizes what the last run left."""
    reference, _, _ = await _record(hass, archived_controller, clip_gops, archive=False)
    hass.data.pop("hksv_archive")
    paths = _partial(media_dir, bytes(reference[0].data), [bytes(reference[1].data)], b"")
    await archived_controller(clip_gops[:4])
    assert paths.video.exists()
    assert not paths.partial.exists()
    with av.open(io.BytesIO(paths.video.read_bytes())) as container:
        assert container.streams.video


async def test_a_doorbell_press_just_before_makes_a_doorbell_clip(
    hass: HomeAssistant,
    archived_controller: ControllerFactory,
    clip_gops: list[Gop],
    media_dir: Path,
) -> None:
    """A recording opened within 30 s of a press is labelled as the doorbell's."""
    controller, stand_in, camera = await archived_controller(clip_gops[:4])
    pressed = dt_util.utcnow() - timedelta(seconds=5)
    camera._doorbell_pressed_at = lambda: pressed
    stream = controller.open_stream(1, _selection(), True)
    await _take(stream, stand_in, clip_gops[4:], 3)
    controller.stream_closed(1, DataSendCloseReason.NORMAL)
    await hass.async_block_till_done()
    (sidecar,) = media_dir.rglob("*.json")
    assert json.loads(sidecar.read_text())["trigger"] == "doorbell"


async def test_a_disk_below_the_free_space_minimum_skips_the_clip_with_a_repair(
    hass: HomeAssistant,
    archived_controller: ControllerFactory,
    clip_gops: list[Gop],
    media_dir: Path,
) -> None:
    """Less free space than the minimum: the clip is not saved and a repair says why."""
    usage = shutil.disk_usage(media_dir)
    low = type(usage)(usage.total, usage.total - GIB, GIB)  # 1 GiB free, 2 GiB wanted
    with patch.object(shutil, "disk_usage", lambda _path: low):
        packets, events, camera = await _record(hass, archived_controller, clip_gops)
    assert packets[-1].is_last
    assert events[0].data["url"] is None
    assert _clip_files(media_dir) == []
    assert camera.last_error is None  # not a disk fault: the repair explains it
    issue = ir.async_get(hass).async_get_issue(DOMAIN, NO_SPACE_ISSUE)
    assert issue is not None
    assert issue.translation_placeholders["free"] == "1.0"


async def test_a_clip_that_sent_nothing_leaves_no_file_and_no_warning(
    hass: HomeAssistant,
    archived_controller: ControllerFactory,
    clip_gops: list[Gop],
    media_dir: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A stream the hub closes before any packet went out: nothing to keep, said quietly."""
    events = async_capture_events(hass, EVENT_RECORDING_FINISHED)
    controller, _stand_in, _camera = await archived_controller(clip_gops[:4])
    stream = controller.open_stream(1, _selection(), True)
    await stream.aclose()
    controller.stream_closed(1, DataSendCloseReason.NORMAL)
    await hass.async_block_till_done()
    assert _clip_files(media_dir) == []
    assert events[0].data["url"] is None
    assert "cannot finalize" not in caplog.text
