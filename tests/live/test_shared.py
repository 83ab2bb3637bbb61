"""Shared live media on real HA parts: Opus codec setup off the loop, failures, replacements.

The parts come from Home Assistant's own stream worker (tests/recording/ha_parts.py), parsed
as the live feed parses them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import replace
import logging
from pathlib import Path
import threading
import time
from typing import Any

import av
import pytest

from custom_components.hksv.live import shared as shared_module
from custom_components.hksv.live.audio import OpusLiveEncoder
from custom_components.hksv.live.shared import OpusFeed, TranscodedFeed
from custom_components.hksv.live.transcode import LiveVideoTarget
from custom_components.hksv.source.part import MediaPart, PartParser
from tests.media import ClipSpec, write_clip
from tests.recording.ha_parts import ha_segments

TIMEOUT = 60.0  # generous: the machine is shared


def _parts(path: Path, spec: ClipSpec) -> list[MediaPart]:
    """Return HA's parts of a clip made to ``spec``, as the live feed hands them out."""
    segments = ha_segments(write_clip(path, spec), ll_hls=True)
    parser = PartParser()
    return [
        parser.parse(segment.init, part.data, 1, time.monotonic())
        for segment in segments
        for part in segment.parts
    ]


@pytest.fixture(scope="module")
def parts_32k(tmp_path_factory: pytest.TempPathFactory) -> list[MediaPart]:
    """Parts of a 3 s clip with 32 kHz mono AAC."""
    spec = ClipSpec(seconds=3, width=160, height=96, audio_rate=32000, audio_channels=1)
    return _parts(tmp_path_factory.mktemp("shared") / "a.ts", spec)


@pytest.fixture(scope="module")
def parts_48k(tmp_path_factory: pytest.TempPathFactory) -> list[MediaPart]:
    """Parts of a 3 s clip with 48 kHz stereo AAC (another AudioSpecificConfig)."""
    spec = ClipSpec(seconds=3, width=160, height=96, audio_rate=48000, audio_channels=2)
    return _parts(tmp_path_factory.mktemp("shared") / "b.ts", spec)


class _Sender:
    """An audio sender that keeps what it is handed."""

    silent = False

    def __init__(self) -> None:
        self.packets: list[bytes] = []

    def push(self, packet: bytes) -> None:
        self.packets.append(packet)


def _threads(prefix: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(prefix))


async def _until(condition: Any) -> None:
    async with asyncio.timeout(TIMEOUT):
        while not condition():
            await asyncio.sleep(0.02)


async def test_opus_codec_setup_runs_off_the_loop(
    parts_32k: list[MediaPart], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The part callback only queues: the codecs open on another thread, packets come out."""
    opened_on: list[int] = []

    class Recording(OpusLiveEncoder):
        def __init__(self, **kwargs: Any) -> None:
            opened_on.append(threading.get_ident())
            super().__init__(**kwargs)

    monkeypatch.setattr(shared_module, "OpusLiveEncoder", Recording)
    feed = OpusFeed(sample_rate=16000, packet_time_ms=20, bitrate_kbps=24, log_name="test")
    sender = _Sender()
    feed.senders.append(sender)  # type: ignore[arg-type]
    for part in parts_32k:
        feed.on_part(part)
    await _until(lambda: len(sender.packets) >= 50)
    assert opened_on and threading.get_ident() not in opened_on
    assert feed.failed is None
    await feed.async_close()


async def test_opus_codec_setup_failure_ends_only_that_encoder(
    parts_32k: list[MediaPart], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A codec that cannot open: the part callback never raises; one log line; a reason."""
    attempts: list[int] = []

    def broken(*args: Any, **kwargs: Any) -> Any:
        attempts.append(1)
        raise av.error.InvalidDataError(1094995529, "Invalid data found when processing input")

    monkeypatch.setattr(OpusLiveEncoder, "_open_encoder", staticmethod(broken))
    failed: list[OpusFeed] = []
    feed = OpusFeed(
        sample_rate=16000,
        packet_time_ms=20,
        bitrate_kbps=24,
        log_name="test",
        on_failed=failed.append,
    )
    feed.senders.append(_Sender())  # type: ignore[arg-type]
    with caplog.at_level(logging.WARNING, logger=shared_module.__name__):
        for part in parts_32k:
            feed.on_part(part)  # must not raise into Home Assistant's part loop
            await asyncio.sleep(0)
        await _until(lambda: feed.failed is not None)
        for part in parts_32k:
            feed.on_part(part)
            await asyncio.sleep(0)
    assert failed == [feed]
    assert feed.failed is not None and "Invalid data" in feed.failed
    assert attempts == [1]
    warnings = [r for r in caplog.records if r.name == shared_module.__name__]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    await feed.async_close()
    assert _threads("hksv_opus") == 0


async def test_replaced_opus_encoder_stops_its_thread(
    parts_32k: list[MediaPart], parts_48k: list[MediaPart]
) -> None:
    """A new AAC configuration opens a new encoder and stops the old one's thread."""
    before = _threads("hksv_opus")
    feed = OpusFeed(sample_rate=16000, packet_time_ms=20, bitrate_kbps=24, log_name="test")
    sender = _Sender()
    feed.senders.append(sender)  # type: ignore[arg-type]
    for part in parts_32k:
        feed.on_part(part)
    await _until(lambda: len(sender.packets) >= 50)
    assert _threads("hksv_opus") == before + 1
    count = len(sender.packets)
    for part in parts_48k:
        feed.on_part(part)
    await _until(lambda: len(sender.packets) >= count + 50)
    assert _threads("hksv_opus") == before + 1, "the replaced encoder kept its thread"
    await feed.async_close()
    assert _threads("hksv_opus") == before


class _Session:
    """A session as the transcoded feed sees it."""

    def __init__(self) -> None:
        self.units: list[Any] = []

    def push(self, unit: Any) -> None:
        self.units.append(unit)


async def test_replaced_transcoder_stops_its_thread(parts_32k: list[MediaPart]) -> None:
    """A camera stream restart (new epoch) starts a new transcoder and stops the old one."""
    tasks: list[asyncio.Task[None]] = []

    def spawn(coro: Coroutine[Any, Any, None], name: str) -> None:
        tasks.append(asyncio.get_running_loop().create_task(coro, name=name))

    failed: list[TranscodedFeed] = []
    feed = TranscodedFeed(
        LiveVideoTarget(160, 96, 15, 200),
        catchup_seconds=1.0,
        log_name="test",
        spawn=spawn,
        on_failed=failed.append,
    )
    session = _Session()
    feed.add(session, None)  # type: ignore[arg-type]
    before = _threads("hksv_live_transcode")
    for part in parts_32k:
        feed.on_part(part)
    await _until(lambda: len(session.units) >= 5)
    assert _threads("hksv_live_transcode") == before + 1
    count = len(session.units)
    for part in parts_32k:
        feed.on_part(replace(part, epoch=2, arrived=time.monotonic()))
    await _until(lambda: len(session.units) >= count + 5)
    await asyncio.gather(*tasks)
    assert feed.restarts == 1
    assert _threads("hksv_live_transcode") == before + 1, "the replaced transcoder kept running"
    assert failed == []
    await feed.async_close()
    assert _threads("hksv_live_transcode") == before


async def test_nobody_listening_encodes_nothing(parts_32k: list[MediaPart]) -> None:
    """With every sender muted no Opus is encoded; their RTP clocks still run on."""

    class Muted(_Sender):
        silent = True

        def __init__(self) -> None:
            super().__init__()
            self.skipped = 0.0

        def skip_seconds(self, seconds: float) -> None:
            self.skipped += seconds

    before = _threads("hksv_opus")
    feed = OpusFeed(sample_rate=16000, packet_time_ms=20, bitrate_kbps=24, log_name="test")
    sender = Muted()
    feed.senders.append(sender)  # type: ignore[arg-type]
    for part in parts_32k:
        feed.on_part(part)
    await asyncio.sleep(0.2)
    assert feed.packets == 0 and sender.packets == []
    assert _threads("hksv_opus") == before
    audio_seconds = sum(len(p.audio) for p in parts_32k) * 1024 / 32000
    assert sender.skipped == pytest.approx(audio_seconds)
    await feed.async_close()
