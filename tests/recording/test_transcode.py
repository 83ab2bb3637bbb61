"""Tests for the transcoding fallback: real media in, decoded and checked output out."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import replace
import gc
import io
import logging
from pathlib import Path
import random
import threading

import av
import pytest

from custom_components.hksv.media.encoders import (
    HARDWARE_ENCODERS,
    SOFTWARE_ENCODER,
    EncoderChooser,
    has_encoder,
)
from custom_components.hksv.media.h264 import H264Level, H264Profile
from custom_components.hksv.recording.av_media import SourceDemuxer
from custom_components.hksv.recording.encoding import (
    AudioTarget,
    TranscodeTarget,
    fit_level,
    picture_size,
    scaled_size,
)
from custom_components.hksv.recording.transcode import Transcoder
from tests.media import ClipSpec, write_clip

from .transcode_helpers import (
    InputItem,
    NewInit,
    OutputReport,
    check_output,
    make_fmp4,
    run_transcoder,
)

type Media = Callable[..., tuple[bytes, list[bytes]]]

AAC_32K_MONO = AudioTarget(sample_rate=32000, channels=1, bitrate_kbps=64)
TARGET = TranscodeTarget(
    width=640,
    height=360,
    fps=25,
    profile=H264Profile.MAIN,
    level=H264Level.LEVEL4_0,
    bitrate_kbps=800,
    fragment_length_ms=4000,
    audio=AAC_32K_MONO,
)
SMALL = ClipSpec(seconds=6.2, width=640, height=360, fps=25, gop_seconds=2, container="mp4")
AVC_PROFILE_IDC = {H264Profile.BASELINE: 66, H264Profile.MAIN: 77, H264Profile.HIGH: 100}
AVC_LEVEL_IDC = {H264Level.LEVEL3_1: 31, H264Level.LEVEL3_2: 32, H264Level.LEVEL4_0: 40}
AAC_FRAME_SECONDS = 1024 / 32000
HARDWARE_IN_THIS_BUILD = [name for name in HARDWARE_ENCODERS if has_encoder(name)]


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Media:
    """Return a function that writes a clip once and returns it as HA-like fMP4."""
    root = tmp_path_factory.mktemp("transcode")
    clips: dict[ClipSpec, Path] = {}
    cache: dict[tuple[ClipSpec, float | None, float], tuple[bytes, list[bytes]]] = {}

    def get(
        spec: ClipSpec, *, part_seconds: float | None = 1.0, offset_seconds: float = 0.0
    ) -> tuple[bytes, list[bytes]]:
        if spec not in clips:
            clips[spec] = write_clip(root / f"clip{len(clips)}.{spec.container}", spec)
        key = (spec, part_seconds, offset_seconds)
        if key not in cache:
            cache[key] = make_fmp4(
                clips[spec], part_seconds=part_seconds, offset_seconds=offset_seconds
            )
        return cache[key]

    return get


def frames_of(spec: ClipSpec) -> int:
    """Return how many frames ``write_clip`` writes for ``spec``."""
    return round(spec.seconds * spec.fps)


def source_avcc(init: bytes) -> bytes:
    """Return the avcC record of a source init segment."""
    with av.open(io.BytesIO(init)) as container:
        return container.streams.video[0].codec_context.extradata or b""


async def transcode(
    media: Media, spec: ClipSpec, target: TranscodeTarget, **kwargs: float | None
) -> OutputReport:
    """Transcode ``spec`` as HA-like input and return the checked output."""
    init, fragments = media(spec, **kwargs)
    out_init, out_fragments, stats = await run_transcoder(target, init, fragments)
    assert stats.last_error is None
    assert out_init is not None
    assert stats.fragments_out == len(out_fragments)
    assert stats.bytes_out == len(out_init) + sum(map(len, out_fragments))
    report = check_output(out_init, out_fragments, target.fragment_length_ms)
    assert stats.media_seconds == pytest.approx(report.video_seconds)
    assert stats.frames_out == len(report.counters)
    assert stats.speed > 0
    return report


def assert_video(report: OutputReport, target: TranscodeTarget, size: tuple[int, int]) -> None:
    """Assert the output is H.264 at ``size`` with the target's profile and level."""
    assert report.video_codec == "h264"
    assert (report.width, report.height) == size
    assert report.profile_idc == AVC_PROFILE_IDC[target.profile]
    assert report.level_idc == AVC_LEVEL_IDC[target.level]


def assert_plays_all(report: OutputReport, spec: ClipSpec) -> None:
    """Assert the output shows every source frame once, in order."""
    assert report.counters == list(range(frames_of(spec)))
    assert report.video_seconds == pytest.approx(spec.seconds, abs=1 / spec.fps)


def assert_aac(report: OutputReport, audio: AudioTarget, *, silent: bool) -> None:
    """Assert the output carries AAC-LC audio as selected, as long as the video."""
    assert report.audio is not None
    assert report.audio["codec"] == "aac"
    assert report.audio["profile"] == "LC"
    assert report.audio["rate"] == audio.sample_rate
    assert report.audio["channels"] == audio.channels
    assert report.audio["seconds"] == pytest.approx(report.video_seconds, abs=0.1)
    if silent:
        assert report.audio["peak"] < 1e-4
    else:
        assert report.audio["peak"] > 0.05  # the generator's 440 Hz tone at 0.1


@pytest.mark.parametrize(
    ("spec", "target", "size"),
    [
        (
            replace(SMALL, seconds=12.4, gop_seconds=8.0),
            TARGET,
            (640, 360),
        ),
        (replace(SMALL, video_codec="hevc"), TARGET, (640, 360)),
        (
            ClipSpec(seconds=4.5, width=1920, height=1080, fps=30, container="mp4"),
            replace(TARGET, width=1280, height=720, fps=30, bitrate_kbps=2000),
            (1280, 720),
        ),
        (SMALL, replace(TARGET, width=1280, height=720), (1280, 720)),
        (replace(SMALL, width=640, height=480), TARGET, (640, 360)),
        (
            replace(SMALL, width=1280, height=720, h264_level="5.1"),
            replace(TARGET, width=1280, height=720),
            (1280, 720),
        ),
        (
            replace(SMALL, width=1280, height=720, h264_profile="high"),
            replace(
                TARGET, width=1280, height=720, profile=H264Profile.HIGH, level=H264Level.LEVEL3_1
            ),
            (1280, 720),
        ),
        (
            SMALL,
            replace(TARGET, profile=H264Profile.BASELINE, level=H264Level.LEVEL3_2),
            (640, 360),
        ),
    ],
    ids=[
        "h264_8s_gop_to_4s_fragments",
        "h265_to_h264",
        "1080p_to_720p",
        "small_source_fills_the_selection",
        "four_by_three_pillarboxed",
        "level_5_1_to_4_0",
        "high_profile_level_3_1",
        "baseline_level_3_2",
    ],
)
async def test_video_transcode(
    media: Media, spec: ClipSpec, target: TranscodeTarget, size: tuple[int, int]
) -> None:
    """Every case plays end to end in keyframe-aligned fragments of the target's format."""
    report = await transcode(media, spec, target)
    assert_video(report, target, size)
    assert_plays_all(report, spec)
    assert_aac(report, AAC_32K_MONO, silent=False)
    # Keyframes come only at fragment boundaries, whatever the source's GOP (2 s or 8 s).
    full = int(spec.seconds * 1000) // target.fragment_length_ms
    assert report.fragment_seconds[:full] == [target.fragment_length_ms / 1000] * full


async def test_level_5_1_source_is_really_5_1(media: Media) -> None:
    """The level case above starts from a source whose avcC says 5.1."""
    init, _ = media(replace(SMALL, width=1280, height=720, h264_level="5.1"))
    assert source_avcc(init)[3] == 51


async def test_frame_rate_is_capped_by_timestamp(media: Media) -> None:
    """A 30 fps source under a 15 fps target keeps every other frame, in order."""
    spec = replace(SMALL, fps=30)
    report = await transcode(media, spec, replace(TARGET, fps=15))
    steps = {b - a for a, b in zip(report.counters, report.counters[1:], strict=False)}
    assert steps <= {1, 2}
    assert len(report.counters) == pytest.approx(frames_of(spec) / 2, abs=1)
    assert report.counters[-1] >= frames_of(spec) - 2


async def test_input_starting_mid_gop(media: Media) -> None:
    """Parts before the first keyframe are dropped, audio included; output starts at 0."""
    init, fragments = media(SMALL)  # 1 s parts, 2 s GOP: the second part has no keyframe
    out_init, out, stats = await run_transcoder(TARGET, init, fragments[1:])
    assert out_init is not None
    report = check_output(out_init, out, TARGET.fragment_length_ms)
    assert report.counters == list(range(2 * SMALL.fps, frames_of(SMALL)))
    assert stats.frames_dropped == SMALL.fps  # the part from 1 s to 2 s
    assert_aac(report, AAC_32K_MONO, silent=False)


async def test_whole_gops_as_input(media: Media) -> None:
    """Input fragments holding whole GOPs (no HA parts) work the same."""
    report = await transcode(media, SMALL, TARGET, part_seconds=None)
    assert_plays_all(report, SMALL)


@pytest.mark.parametrize(
    ("spec", "audio", "silent"),
    [
        (replace(SMALL, audio_codec=None), AAC_32K_MONO, True),
        (replace(SMALL, audio_rate=48000, audio_channels=2), AAC_32K_MONO, False),
        (SMALL, AudioTarget(sample_rate=16000, channels=2, bitrate_kbps=48), False),
        (replace(SMALL, audio_codec="libmp3lame", audio_rate=44100), AAC_32K_MONO, False),
    ],
    ids=[
        "no_source_audio_gets_silent_aac",
        "aac_48k_stereo_to_32k_mono",
        "aac_32k_mono_to_16k_stereo",
        "mp3_to_aac",
    ],
)
async def test_audio(media: Media, spec: ClipSpec, audio: AudioTarget, silent: bool) -> None:
    """Audio is AAC-LC at the selected rate and channels, silent when the source has none."""
    report = await transcode(media, spec, replace(TARGET, audio=audio))
    assert_plays_all(report, spec)
    assert_aac(report, audio, silent=silent)


async def test_source_audio_that_stops_continues_as_silence(media: Media) -> None:
    """When the camera's audio stops, silence keeps the audio track level with the video."""
    tail = replace(SMALL, seconds=5.0, audio_codec=None)
    init, first_part = media(SMALL)
    _, second_part = media(tail, offset_seconds=SMALL.seconds)  # same timeline, no audio
    out_init, out, stats = await run_transcoder(TARGET, init, [*first_part, *second_part])
    assert out_init is not None
    report = check_output(out_init, out, TARGET.fragment_length_ms)
    assert report.counters == [*range(frames_of(SMALL)), *range(frames_of(tail))]
    assert stats.discontinuities == 0
    assert_aac(report, AAC_32K_MONO, silent=False)


async def test_audio_off_means_no_audio_track(media: Media) -> None:
    """RecordingAudioActive = 0: the output has no audio track at all."""
    report = await transcode(media, SMALL, replace(TARGET, audio=None))
    assert report.audio is None
    assert_plays_all(report, SMALL)


async def test_copy_video_reencodes_only_audio(media: Media) -> None:
    """copy_video keeps the camera's H.264 bytes and cuts fragments at its keyframes."""
    spec = replace(SMALL, audio_rate=48000, audio_channels=2)
    init, _ = media(spec)
    report = await transcode(media, spec, replace(TARGET, copy_video=True))
    assert report.extradata == source_avcc(init)
    assert report.fragment_seconds[:3] == [2.0, 2.0, 2.0]  # the source's 2 s GOP
    assert_plays_all(report, spec)
    assert_aac(report, AAC_32K_MONO, silent=False)


async def test_copy_video_warns_about_a_long_gop(
    media: Media, caplog: pytest.LogCaptureFixture
) -> None:
    """Copied video with a GOP longer than a fragment is reported (choose_mode avoids it)."""
    init, fragments = media(replace(SMALL, seconds=9.0, gop_seconds=8.0))
    with caplog.at_level(logging.WARNING):
        _, out, stats = await run_transcoder(replace(TARGET, copy_video=True), init, fragments)
    assert stats.last_error is None
    assert len(out) == 2
    assert "exceeds the fragment length" in caplog.text


@pytest.mark.parametrize("offset_seconds", [0.0, 100.0], ids=["restart_at_zero", "jump_ahead"])
async def test_timestamp_discontinuity(media: Media, offset_seconds: float) -> None:
    """Timestamps that restart or jump still give one gapless, monotonic output."""
    second = replace(SMALL, seconds=5.0)
    init, first_part = media(SMALL)
    _, second_part = media(second, offset_seconds=offset_seconds)
    out_init, out, stats = await run_transcoder(TARGET, init, [*first_part, *second_part])
    assert out_init is not None
    report = check_output(out_init, out, TARGET.fragment_length_ms)
    assert report.counters == [*range(frames_of(SMALL)), *range(frames_of(second))]
    assert report.video_seconds == pytest.approx(SMALL.seconds + second.seconds, abs=0.1)
    assert stats.discontinuities == 1


async def test_new_source_init(media: Media) -> None:
    """A new init (camera restarted as H.265 at 720p) continues the same output."""
    second = replace(SMALL, seconds=5.0, width=1280, height=720, video_codec="hevc")
    init, first_part = media(SMALL)
    second_init, second_part = media(second)
    items: list[InputItem] = [*first_part, NewInit(second_init), *second_part]
    out_init, out, stats = await run_transcoder(TARGET, init, items)
    assert out_init is not None
    report = check_output(out_init, out, TARGET.fragment_length_ms)
    assert (report.width, report.height) == (640, 360)
    assert report.counters == [*range(frames_of(SMALL)), *range(frames_of(second))]
    assert stats.discontinuities == 1
    assert report.audio is not None
    assert report.audio["seconds"] == pytest.approx(report.video_seconds, abs=0.1)


async def test_copy_video_rejects_changed_video(media: Media) -> None:
    """Copied video cannot switch to a source with other coded parameters."""
    init, first_part = media(SMALL)
    other_init, other_part = media(replace(SMALL, width=1280, height=720))
    items: list[InputItem] = [*first_part, NewInit(other_init), *other_part]
    out_init, out, stats = await run_transcoder(replace(TARGET, copy_video=True), init, items)
    assert out_init is not None
    assert len(out) == 3  # the 2 s GOPs before the change, up to the last keyframe
    assert stats.last_error is not None
    assert "video parameters changed" in stats.last_error


def garbage(size: int, seed: int) -> bytes:
    """Return reproducible random bytes."""
    return random.Random(seed).randbytes(size)


async def test_garbage_init_ends_with_an_error() -> None:
    """An unreadable init ends the session at once: read() returns None, stats say why."""
    transcoder = Transcoder(TARGET, log_name="test")
    try:
        await transcoder.start(garbage(4000, 1))
        await transcoder.feed(garbage(4000, 2))
        assert await transcoder.read() is None
        assert await transcoder.read() is None
    finally:
        await transcoder.close()
    assert transcoder.stats.last_error is not None
    assert "init" in transcoder.stats.last_error


async def test_garbage_fragments_are_skipped(media: Media) -> None:
    """Unreadable fragments between good ones are skipped and counted."""
    init, fragments = media(SMALL, part_seconds=None)  # whole GOPs: nothing else lost
    mdat_only = b"\x00\x00\x00\x10mdat" + garbage(8, 3)
    items = [fragments[0], garbage(5000, 4), fragments[1], mdat_only, *fragments[2:]]
    out_init, out, stats = await run_transcoder(TARGET, init, items)
    assert stats.last_error is None
    assert stats.skipped_fragments == 2
    assert out_init is not None
    report = check_output(out_init, out, TARGET.fragment_length_ms)
    assert report.counters == list(range(frames_of(SMALL)))


async def test_only_garbage_ends_with_an_error(media: Media) -> None:
    """Fragment after fragment of garbage ends the session with an error, not a hang."""
    init, _ = media(SMALL)
    items = [garbage(3000, seed) for seed in range(10)]
    out_init, out, stats = await run_transcoder(TARGET, init, items)
    assert out_init is not None  # the init went out before any input
    assert out == []
    assert stats.last_error is not None
    assert "unreadable input fragments" in stats.last_error


def worker_threads() -> list[threading.Thread]:
    """Return the transcoder threads still alive."""
    return [t for t in threading.enumerate() if t.name.startswith("hksv-transcode")]


def native_transcode_threads() -> int:
    """Return how many of this process's OS threads carry a transcoder's name.

    PyAV's codecs start their own threads (x264's, a decoder's); they inherit the OS name of
    the thread that opened the codec ("hksv-transcode", cut to 15 bytes), and end only when
    the codec context is freed.
    """
    names = (Path(task, "comm").read_text().strip() for task in Path("/proc/self/task").iterdir())
    return sum(1 for name in names if name.startswith("hksv-transcode"))


async def test_close_frees_the_codecs_without_the_garbage_collector(media: Media) -> None:
    """A closed transcoder leaves no codec (and no codec thread) for the cyclic GC to find.

    In a day-long run the GC's oldest generation is collected rarely: codecs kept alive by a
    reference cycle held their threads and buffers for many minutes (the soak's RSS).
    """
    init, fragments = media(SMALL)
    gc.collect()
    gc.disable()
    before = native_transcode_threads()
    try:
        transcoder = Transcoder(TARGET, log_name="g")
        await transcoder.start(init)
        for fragment in fragments[:3]:
            await transcoder.feed(fragment)
        assert await transcoder.read() is not None
        assert native_transcode_threads() > before + 1, "the codecs run threads of their own"
        await transcoder.close()
        del transcoder
        assert native_transcode_threads() == before
    finally:
        gc.enable()


@pytest.mark.parametrize("audio", [True, False], ids=["audio", "silent"])
async def test_a_finished_transcode_frees_the_codecs_without_the_garbage_collector(
    media: Media, audio: bool
) -> None:
    """A clip that runs to its end, across a new source init, leaves no codec thread either.

    Audio is resampled through filter graphs (ours, and the one PyAV's AAC encoder keeps),
    which have threads of their own and, with PyAV 19, a reference cycle too; a source
    without audio takes the silent-audio path of the soak's camera.
    """
    init, fragments = media(SMALL if audio else replace(SMALL, audio_codec=None))
    gc.collect()
    gc.disable()
    before = native_transcode_threads()
    try:
        items: list[InputItem] = [*fragments[:3], NewInit(init), *fragments[3:]]
        out_init, out, stats = await run_transcoder(TARGET, init, items)
        assert stats.last_error is None
        assert out_init is not None
        assert out
        assert native_transcode_threads() == before
    finally:
        gc.enable()


async def test_a_failed_transcode_frees_the_codecs_without_the_garbage_collector(
    media: Media,
) -> None:
    """A transcode that ends with an error mid-way leaves no codec (thread) behind either.

    The worker keeps the error, and its traceback keeps the frames it passed through (and
    their locals) in a reference cycle: closing must free the codecs, not just drop them.
    """
    init, fragments = media(SMALL)
    gc.collect()
    gc.disable()
    before = native_transcode_threads()
    try:
        transcoder = Transcoder(TARGET, log_name="g")
        await transcoder.start(init)
        for fragment in fragments[:3]:
            await transcoder.feed(fragment)
        assert await transcoder.read() is not None
        assert native_transcode_threads() > before + 1, "the codecs run threads of their own"
        for seed in range(3):
            await transcoder.feed(garbage(3000, seed))
        while await transcoder.read() is not None:
            pass
        assert "unreadable input fragments" in (transcoder.stats.last_error or "")
        await transcoder.close()
        del transcoder
        assert native_transcode_threads() == before
    finally:
        gc.enable()


@pytest.mark.skipif(not HARDWARE_IN_THIS_BUILD, reason="this PyAV has no hardware H.264 encoder")
async def test_hardware_fallback_frees_the_codecs_without_the_garbage_collector(
    media: Media,
) -> None:
    """A hardware encoder that fails to open gives way to libx264; closing frees them all.

    The chooser is told the hardware encoder works; opening it for real fails here (no such
    device), so the session drops its first muxer (close_muxer) and starts again.
    """
    hardware = HARDWARE_IN_THIS_BUILD[-1]
    chooser = EncoderChooser((hardware, SOFTWARE_ENCODER), trial=lambda *_: None)
    init, fragments = media(SMALL)
    gc.collect()
    gc.disable()
    before = native_transcode_threads()
    try:
        transcoder = Transcoder(TARGET, log_name="g", encoders=chooser)
        await transcoder.start(init)
        for fragment in fragments[:3]:
            await transcoder.feed(fragment)
        assert await transcoder.read() is not None
        if transcoder.stats.encoder != SOFTWARE_ENCODER:
            pytest.skip(f"{hardware} really works here")
        assert native_transcode_threads() > before + 1, "the codecs run threads of their own"
        await transcoder.close()
        del transcoder
        assert native_transcode_threads() == before
    finally:
        gc.enable()


def test_demuxed_fragments_are_not_kept_for_the_garbage_collector(media: Media) -> None:
    """The bytes of a demuxed fragment are let go at once, not kept by a closed container.

    With PyAV 19 a closed container is in a reference cycle and keeps its file: over a
    3-minute clip, the per-fragment demuxers would hold all of the clip's input.
    """
    init, fragments = media(SMALL)
    source = SourceDemuxer(init)
    gc.collect()
    gc.disable()
    try:
        for fragment in fragments[:3]:
            video, _ = source.demux(fragment)
            assert video
        held = [
            obj
            for obj in gc.get_objects()
            if isinstance(obj, io.BytesIO) and not obj.closed and len(obj.getbuffer()) > len(init)
        ]
        assert held == []
    finally:
        gc.enable()
        source.close()


async def test_init_comes_before_any_input(media: Media) -> None:
    """The output init is readable before the first fragment is fed."""
    init, _ = media(SMALL)
    transcoder = Transcoder(TARGET, log_name="test")
    try:
        await transcoder.start(init)
        out_init = await transcoder.read()
    finally:
        await transcoder.close()
    assert out_init is not None
    assert out_init[4:8] == b"ftyp"


async def test_close_mid_stream_leaves_no_thread(media: Media) -> None:
    """close() stops a busy worker, joins it, and may be called again."""
    init, fragments = media(SMALL)
    transcoder = Transcoder(TARGET, log_name="test", max_queued_output=1)
    await transcoder.start(init)
    for fragment in fragments[:4]:
        await transcoder.feed(fragment)
    assert await transcoder.read() is not None
    await transcoder.close()
    assert worker_threads() == []
    assert await transcoder.read() is None
    await transcoder.feed(fragments[4])  # dropped: the session is over
    await transcoder.close()


async def test_close_before_start() -> None:
    """close() on a transcoder that never started does nothing."""
    transcoder = Transcoder(TARGET, log_name="test")
    await transcoder.close()
    with pytest.raises(RuntimeError):
        await transcoder.start(b"")


async def test_backpressure(media: Media) -> None:
    """With bounded queues and no reader, feeding waits; reading lets it finish."""
    init, fragments = media(SMALL)
    transcoder = Transcoder(TARGET, log_name="test", max_queued_input=1, max_queued_output=1)
    try:
        await transcoder.start(init)

        async def feed() -> None:
            for fragment in fragments:
                await transcoder.feed(memoryview(fragment))
            transcoder.end_of_input()

        feeder = asyncio.create_task(feed())
        # It cannot finish: the worker is stuck behind the unread output queue.
        done, _ = await asyncio.wait({feeder}, timeout=1.0)
        assert not done
        out: list[bytes] = []
        while (chunk := await transcoder.read()) is not None:
            out.append(chunk)
        await feeder
    finally:
        await transcoder.close()
    report = check_output(out[0], out[1:], TARGET.fragment_length_ms)
    assert report.counters == list(range(frames_of(SMALL)))


async def test_misuse_is_refused(media: Media) -> None:
    """Calls out of order raise instead of hanging."""
    init, fragments = media(SMALL)
    transcoder = Transcoder(TARGET, log_name="test")
    with pytest.raises(RuntimeError):
        await transcoder.feed(fragments[0])
    with pytest.raises(RuntimeError):
        await transcoder.read()
    try:
        await transcoder.start(init)
        with pytest.raises(RuntimeError):
            await transcoder.start(init)
        transcoder.end_of_input()
        with pytest.raises(RuntimeError):
            await transcoder.feed(fragments[0])
        assert await transcoder.read() is not None
    finally:
        await transcoder.close()


@pytest.mark.parametrize(
    ("source", "maximum", "expected"),
    [
        ((1920, 1080), (1280, 720), (1280, 720)),
        ((640, 360), (1280, 720), (640, 360)),
        ((1200, 1600), (1920, 1080), (810, 1080)),
        ((1921, 1081), (3840, 2160), (1920, 1080)),
        ((2560, 1440), (1920, 1080), (1920, 1080)),
        ((3840, 2160), (3840, 2160), (1920, 1080)),
    ],
    ids=["down", "never_up", "portrait", "odd_to_even", "1440p", "past_level_4_0"],
)
def test_scaled_size(
    source: tuple[int, int], maximum: tuple[int, int], expected: tuple[int, int]
) -> None:
    """Sizes fit inside the target, keep aspect, stay even and within level 4.0."""
    assert scaled_size(*source, *maximum) == expected


@pytest.mark.parametrize(
    ("source", "frame", "expected"),
    [
        ((1280, 960), (1280, 720), (160, 0, 960, 720)),
        ((640, 480), (1280, 720), (160, 0, 960, 720)),
        ((640, 360), (1280, 720), (0, 0, 1280, 720)),
        ((1920, 1080), (1280, 720), (0, 0, 1280, 720)),
        ((1080, 1920), (1920, 1080), (656, 0, 608, 1080)),
        ((2560, 1080), (1280, 720), (0, 90, 1280, 540)),
    ],
    ids=["4_3_camera", "small_4_3", "small_16_9", "large_16_9", "portrait", "ultrawide"],
)
def test_picture_size(
    source: tuple[int, int], frame: tuple[int, int], expected: tuple[int, int, int, int]
) -> None:
    """The camera's shape is fitted inside the selected frame, centred, with even edges."""
    x, y, width, height = picture_size(*source, *frame)
    assert (x, y, width, height) == expected
    assert all(value % 2 == 0 for value in (x, y, width, height))
    assert x + width <= frame[0] and y + height <= frame[1]


@pytest.mark.parametrize(
    ("size", "fps", "requested", "expected"),
    [
        ((1280, 720), 30, H264Level.LEVEL3_1, (H264Level.LEVEL3_1, 30)),
        ((1920, 1080), 30, H264Level.LEVEL3_1, (H264Level.LEVEL4_0, 30)),
        ((1280, 720), 60, H264Level.LEVEL3_1, (H264Level.LEVEL3_2, 60)),
        ((1920, 1080), 60, H264Level.LEVEL4_0, (H264Level.LEVEL4_0, 30)),
        ((640, 360), 30, H264Level.LEVEL4_0, (H264Level.LEVEL4_0, 30)),
    ],
)
def test_fit_level(
    size: tuple[int, int],
    fps: int,
    requested: H264Level,
    expected: tuple[H264Level, int],
) -> None:
    """The level is raised to hold the picture, up to 4.0; past that fps drops."""
    assert fit_level(*size, fps, requested) == expected


@pytest.mark.parametrize(
    "build",
    [
        lambda: replace(TARGET, fragment_length_ms=0),
        lambda: replace(TARGET, width=0),
        lambda: AudioTarget(sample_rate=22050, channels=1, bitrate_kbps=64),
        lambda: AudioTarget(sample_rate=32000, channels=3, bitrate_kbps=64),
        lambda: Transcoder(TARGET, log_name="test", max_queued_input=0),
    ],
    ids=["fragment_length", "width", "sample_rate", "channels", "queue_bound"],
)
def test_invalid_settings(build: Callable[[], object]) -> None:
    """Settings no encoder can honour are refused up front."""
    with pytest.raises(ValueError):
        build()
