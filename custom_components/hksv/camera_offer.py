"""The recording offer of one camera: from its format and the options, following lasting changes."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
import time
from typing import Any

from homeassistant.core import callback

from .const import LOGGER, OPT_MAX_RESOLUTION, OPT_PREBUFFER, RESOLUTION_HEIGHT
from .hap.accessory import HksvCamera
from .hap.recording_config import LastingChange, RecordingOffer, SourceVideo, build_offer


class CameraOffer:
    """Build the offer and move the accessory to a new one when the camera's format changes."""

    def __init__(
        self,
        *,
        name: str,
        options: dict[str, Any],
        doorbell: bool,
        stored: Callable[[], dict[str, Any]],
        save: Callable[[], None],
        accessory: Callable[[], HksvCamera | None],
    ) -> None:
        """Follow the format into ``stored()["source"]`` (saved by ``save``) and the accessory."""
        self._name = name
        self._options = options
        self._doorbell = doorbell
        self._stored = stored
        self._save = save
        self._accessory = accessory
        self._change = LastingChange()

    def build(self, source: SourceVideo) -> RecordingOffer:
        """Derive the offer from the camera's stream and the options."""
        return build_offer(
            source,
            max_height=RESOLUTION_HEIGHT[self._options[OPT_MAX_RESOLUTION]],
            prebuffer_ms=int(self._options[OPT_PREBUFFER]) * 1000,
            doorbell=self._doorbell,
        )

    @callback
    def async_source_profile(self, source: SourceVideo) -> None:
        """Follow what the camera sends: the offer changes only when that change lasts.

        The first format learnt (a new install) is adopted at once; later a format that
        offers differently must last (``LastingChange``), so a camera that switches its
        picture for a moment never costs the hub's selection. The frame rate never matters.
        """
        offer = self.build(source)
        accessory = self._accessory()
        stored = self._stored()
        if "source" in stored and accessory is not None:
            current = accessory.offer.fingerprint
            if not self._change.observe(offer.fingerprint, current, time.monotonic()):
                return
            LOGGER.info(
                "%s: the camera's format changed for good (%sx%s, audio %s %s Hz)",
                self._name,
                source.width,
                source.height,
                source.audio_codec,
                source.audio_sample_rate,
            )
        stored["source"] = asdict(source)
        self._save()
        if accessory is not None:
            accessory.update_offer(offer)
