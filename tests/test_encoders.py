"""The shared H.264 encoder choice: hardware first, libx264 last, a real-size fallback.

PyAV's real codec registry and real encoders throughout. Where this machine has no working
hardware encoder, only the chooser's trial encode of one is simulated (by encoding with
libx264 in its place): opening the real hardware encoder still fails here, for real.
"""

from __future__ import annotations

import asyncio
import io
import logging
from pathlib import Path

import av
import pytest

from custom_components.hksv.hap.recording_config import H264Level, H264Profile
from custom_components.hksv.media.encoders import (
    CANDIDATES,
    HARDWARE_ENCODERS,
    PROBE_SIZE,
    SOFTWARE_ENCODER,
    EncoderChooser,
    NoEncoderError,
    has_encoder,
    trial_encode,
)
from custom_components.hksv.recording.encoding import TranscodeTarget
from custom_components.hksv.recording.transcode import Transcoder
from tests.media import ClipSpec, write_clip
from tests.recording.transcode_helpers import make_fmp4

IN_THIS_BUILD = [name for name in HARDWARE_ENCODERS if has_encoder(name)]


def _works_here(name: str) -> bool:
    """Return whether ``name`` really encodes on this machine."""
    try:
        trial_encode(name, *PROBE_SIZE)
    except av.FFmpegError, ValueError, OSError:
        return False
    return True


def _simulated(working: str, *, fails_at: tuple[int, int] | None = None) -> object:
    """Return a trial in which hardware encoder ``working`` passes (libx264 encodes for it).

    At ``fails_at`` the trial is the real one, which fails where that hardware is absent.
    Every other encoder gets the real trial.
    """
    trials: list[tuple[str, int, int]] = []

    def trial(name: str, width: int, height: int) -> None:
        trials.append((name, width, height))
        if name == working and (width, height) != fails_at:
            name = SOFTWARE_ENCODER
        trial_encode(name, width, height)

    trial.calls = trials  # type: ignore[attr-defined]
    return trial


def test_real_registry_decides_in_order(caplog: pytest.LogCaptureFixture) -> None:
    """Every candidate is tried in order until one works; the decision is logged."""
    caplog.set_level(logging.INFO, "custom_components.hksv.media.encoders")
    chooser = EncoderChooser()
    decision = chooser.decide()
    names = [name for name, _ in decision.tried]
    assert names == list(CANDIDATES[: len(names)])
    assert names[-1] == decision.encoder
    expected = next((n for n in HARDWARE_ENCODERS if has_encoder(n) and _works_here(n)), None)
    assert decision.encoder == (expected or SOFTWARE_ENCODER)
    assert decision.hardware == (expected is not None)
    for name, what in decision.tried[:-1]:
        if has_encoder(name):
            assert what.startswith("does not open"), (name, what)
        else:
            assert what == "not in this PyAV build", (name, what)
    assert chooser.decide() is decision  # probed once
    assert f"H.264 encoder for recording and live view: {decision.encoder}" in caplog.text
    assert chooser.diagnostics()["decision"]["encoder"] == decision.encoder


@pytest.mark.skipif(not IN_THIS_BUILD, reason="this PyAV has no hardware H.264 encoder")
def test_hardware_is_chosen_before_libx264() -> None:
    """A hardware encoder that works wins; the ones before it were tried for real first."""
    working = IN_THIS_BUILD[-1]
    chooser = EncoderChooser(trial=_simulated(working))  # type: ignore[arg-type]
    decision = chooser.decide()
    assert decision.encoder == working and decision.hardware
    names = [name for name, _ in decision.tried]
    assert names == list(HARDWARE_ENCODERS[: HARDWARE_ENCODERS.index(working) + 1])
    assert SOFTWARE_ENCODER not in names


@pytest.mark.skipif(not IN_THIS_BUILD, reason="this PyAV has no hardware H.264 encoder")
def test_hardware_that_fails_at_the_real_size_falls_back_to_libx264(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The probe passes at the probe size; the real size fails for real: libx264, remembered."""
    working = IN_THIS_BUILD[-1]
    if _works_here(working):
        pytest.skip(f"{working} really works here")
    trial = _simulated(working, fails_at=(1920, 1080))
    chooser = EncoderChooser(trial=trial)  # type: ignore[arg-type]
    assert chooser.encoder_for(1280, 720) == working
    assert chooser.encoder_for(1920, 1080) == SOFTWARE_ENCODER
    assert chooser.encoder_for(1920, 1080) == SOFTWARE_ENCODER
    calls = trial.calls  # type: ignore[attr-defined]
    assert calls.count((working, 1920, 1080)) == 1  # each size is tried once
    fallbacks = chooser.diagnostics()["fallbacks"]
    assert len(fallbacks) == 1 and fallbacks[0].startswith(f"{working} failed at 1920x1080")
    assert "using libx264 there" in caplog.text


def test_no_encoder_at_all() -> None:
    """Without any usable candidate the chooser says which were tried and why."""
    chooser = EncoderChooser(("no_such_encoder", *IN_THIS_BUILD[:1]))
    with pytest.raises(NoEncoderError, match="no_such_encoder: not in this PyAV build"):
        chooser.decide()


async def test_async_decide_runs_off_the_loop() -> None:
    """The first decision runs on a worker thread and is then cached."""
    chooser = EncoderChooser((SOFTWARE_ENCODER,))
    decision = await chooser.async_decide()
    assert decision.encoder == SOFTWARE_ENCODER
    assert await asyncio.wait_for(chooser.async_decide(), 1) is decision


@pytest.mark.skipif(not IN_THIS_BUILD, reason="this PyAV has no hardware H.264 encoder")
async def test_recording_transcode_falls_back_when_the_hardware_encoder_fails(
    tmp_path: Path,
) -> None:
    """A recording transcode asks the chooser; a hardware open that fails gives way to libx264.

    The chooser's trial says the hardware encoder works at every size; the recording's real
    encoder then fails to open (no such hardware here), and the clip is made with libx264.
    """
    working = IN_THIS_BUILD[-1]
    if _works_here(working):
        pytest.skip(f"{working} really works here")
    chooser = EncoderChooser(trial=_simulated(working))  # type: ignore[arg-type]
    spec = ClipSpec(seconds=4.0, width=640, height=360, fps=25, gop_seconds=2.0, container="mp4")
    clip = write_clip(tmp_path / "clip.mp4", spec)
    init, fragments = make_fmp4(clip, part_seconds=1.0)
    target = TranscodeTarget(
        width=640,
        height=360,
        fps=25,
        profile=H264Profile.MAIN,
        level=H264Level.LEVEL3_1,
        bitrate_kbps=800,
        fragment_length_ms=4000,
        audio=None,
    )
    transcoder = Transcoder(target, log_name="test", encoders=chooser)
    await transcoder.start(init)
    for fragment in fragments:
        await transcoder.feed(fragment)
    transcoder.end_of_input()
    output = []
    while (chunk := await transcoder.read()) is not None:
        output.append(chunk)
    await transcoder.close()
    stats = transcoder.stats
    assert stats.last_error is None
    assert stats.encoder == SOFTWARE_ENCODER
    with av.open(io.BytesIO(b"".join(output))) as container:
        frames = list(container.decode(video=0))
    assert len(frames) == 100 and {(f.width, f.height) for f in frames} == {(640, 360)}
    assert chooser.diagnostics()["fallbacks"][0].startswith(f"{working} failed at 640x360")
    assert chooser.encoder_for(640, 360) == SOFTWARE_ENCODER
