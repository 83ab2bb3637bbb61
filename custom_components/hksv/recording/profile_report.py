"""What the camera sends, measured from the prebuffer's GOPs and told to the bridge (the offer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Final

from homeassistant.core import HomeAssistant, callback

from ..hap.recording_config import SourceVideo
from ..source.gop import Gop, SourceProfile, profile_source

PROFILE_EVERY_GOPS: Final = 8


class SourceProfileReporter:
    """Report the camera's format now and then; remember the last measured profile."""

    def __init__(
        self,
        hass: HomeAssistant,
        *,
        buffered_gops: Callable[[], Sequence[Gop]],
        on_source_profile: Callable[[SourceVideo], None],
    ) -> None:
        """Measure ``buffered_gops()`` when due and pass the result to ``on_source_profile``."""
        self._hass = hass
        self._buffered_gops = buffered_gops
        self._on_source_profile = on_source_profile
        self._gops_seen = 0
        self.profile: SourceProfile | None = None  # measured from complete GOPs
        self._pending_report: asyncio.Handle | None = None

    @callback
    def on_gop(self, gop: Gop) -> None:
        """Refresh the source profile now and then (it shapes the offer).

        This runs inside Home Assistant's part callback: the measuring and whatever the
        offer does with it run in a later loop iteration, after that callback returned.
        """
        self._gops_seen += 1
        # The second GOP gives the first keyframe interval; later ones follow camera changes.
        due = self._gops_seen == 2 or self._gops_seen % PROFILE_EVERY_GOPS == 0
        if due and self._pending_report is None:
            self._pending_report = self._hass.loop.call_soon(self._report_buffered)

    @callback
    def _report_buffered(self) -> None:
        """Measure the buffered GOPs and report them (scheduled by ``on_gop``)."""
        self._pending_report = None
        if gops := self._buffered_gops():
            self.report(gops)

    def cancel(self) -> None:
        """Drop a report not sent yet (the recorder stops)."""
        if self._pending_report is not None:
            self._pending_report.cancel()
            self._pending_report = None

    def report(self, gops: Sequence[Gop]) -> None:
        """Tell the bridge what the camera sends."""
        profile = self.profile = profile_source(gops)
        video, audio = profile.video, profile.audio
        audio_name = None
        if audio is not None:
            audio_name = (
                "aac-lc" if audio.codec == "mp4a" and audio.object_type == 2 else audio.codec
            )
        self._on_source_profile(
            SourceVideo(
                width=video.width if video else None,
                height=video.height if video else None,
                fps=round(profile.fps, 2) if profile.fps else None,
                audio_codec=audio_name,
                audio_sample_rate=audio.sample_rate if audio else None,
                audio_channels=audio.channels if audio else None,
            )
        )

    def profile_for(self, start: Gop) -> SourceProfile:
        """Return the camera's measured profile, or what the GOP in progress shows of it."""
        profile = self.profile
        if profile is not None and profile.video == start.init.video:
            return profile
        return profile_source([start])
