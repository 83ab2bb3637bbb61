"""One live transcoder per target, shared by every viewer that wants the same picture.

A ``TranscodedFeed`` runs one ``LiveVideoTranscoder`` for every viewer that wants the same
picture (size, rate, bitrate): it takes the camera's parts from the feed and hands the encoded
access units to each of its sessions, which pace and packetize them like copied ones. It stops
with its last viewer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
import logging
import time
from typing import TYPE_CHECKING, Any, Final

from .session import RTP_CLOCK, SOURCE_TRANSCODER, AccessUnit, ParameterSets
from .transcode import LiveVideoTranscoder
from .transcode_codec import EncodedSample, LiveTranscodeError, LiveVideoTarget

if TYPE_CHECKING:
    from ..media.budget import Reservation
    from ..media.fmp4 import InitSegment, Sample
    from ..source.gop import Gop
    from ..source.part import MediaPart
    from .session import LiveSession

_LOGGER = logging.getLogger(__name__)

# The transcoder's output carries SPS/PPS in-band on every IDR.
_IN_BAND: Final = ParameterSets([], [], 4)


def codec_extradata(init: InitSegment) -> tuple[str, bytes] | None:
    """Return the video decoder name and its extradata (avcC or hvcC payload) of an init."""
    video = init.video
    if video is None:
        return None
    if video.avcc is not None:
        return "h264", video.avcc
    data = init.data
    at = data.find(b"hvcC")
    if at < 4:
        return None
    size = int.from_bytes(data[at - 4 : at])
    if size < 8 or at - 4 + size > len(data):
        return None
    return "hevc", bytes(data[at + 4 : at - 4 + size])


class TranscodedFeed:
    """One live transcoder and the sessions watching its output."""

    def __init__(
        self,
        target: LiveVideoTarget,
        *,
        catchup_seconds: float,
        log_name: str,
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
        on_failed: Callable[[TranscodedFeed], None],
        reservation: Reservation | None = None,
    ) -> None:
        """Prepare; the transcoder starts with the first part (it needs the init).

        ``on_failed`` is called once when the transcoder cannot run (its sessions get no
        video); ``spawn`` runs the close of a transcoder replaced by a new epoch or init;
        ``reservation`` is this feed's share of the transcode budget, released on close.
        """
        self.target = target
        self._spawn = spawn
        self._on_failed = on_failed
        self._reservation = reservation
        self.catchup_seconds = catchup_seconds
        self._log_name = log_name
        self.sessions: list[LiveSession] = []
        self._transcoder: LiveVideoTranscoder | None = None
        self._source: tuple[int, bytes] | None = None  # (epoch, init fingerprint)
        self._epoch = 0
        self._loop = asyncio.get_running_loop()
        self.restarts = 0
        self.failed: str | None = None

    def add(self, session: LiveSession, pending: Gop | None) -> None:
        """Serve ``session`` too; a new viewer gets an IDR soon."""
        self.sessions.append(session)
        if self._transcoder is not None:
            self._transcoder.force_keyframe()
        elif (
            pending is not None
            and pending.duration_seconds <= self.catchup_seconds
            and self._ensure(pending.epoch, pending.init)
        ):
            self._put(pending.init, pending.video)

    def force_keyframe(self) -> None:
        """Make the transcoder's next frame an IDR (a viewer moving over waits for one)."""
        if self._transcoder is not None:
            self._transcoder.force_keyframe()

    def remove(self, session: LiveSession) -> None:
        """Stop serving ``session``."""
        if session in self.sessions:
            self.sessions.remove(session)

    def reconfigure(self, bitrate_kbps: int) -> None:
        """Encode at a new bitrate (every viewer of this target gets it)."""
        if self._transcoder is not None:
            self._transcoder.reconfigure(bitrate_kbps)

    def on_part(self, part: MediaPart) -> None:
        """Feed the camera's video to the transcoder (FeedListener)."""
        if self.failed is not None or not self.sessions:
            return
        transcoder = self._transcoder
        if transcoder is not None and transcoder.error is not None:
            self._fail(f"live transcoder stopped: {transcoder.error}")
            return
        if self._ensure(part.epoch, part.init):
            self._put(part.init, part.video)

    def _fail(self, reason: str) -> None:
        """Give up: keep the reason and tell the owner (it ends this feed's sessions)."""
        self.failed = reason
        self._on_failed(self)

    def _ensure(self, epoch: int, init: InitSegment) -> bool:
        """Start a transcoder for this epoch and init (a restarted worker gets a new one).

        Return False if none can run (the feed has failed).
        """
        key = (epoch, init.fingerprint)
        if self._source == key and self._transcoder is not None:
            return True
        extradata = codec_extradata(init)
        if self._transcoder is not None:
            # Its thread stops now, not when the last viewer leaves.
            replaced, self._transcoder = self._transcoder, None
            self.restarts += 1
            self._spawn(replaced.async_close(), f"{self._log_name} live transcoder stop")
        self._source = key
        if extradata is None:
            self._fail(f"cannot decode {init.video.codec if init.video else 'no video'}")
            return False
        self._epoch += 1
        epoch_out = self._epoch

        def on_sample(sample: EncodedSample) -> None:
            self._loop.call_soon_threadsafe(self._deliver, sample, epoch_out)

        try:
            self._transcoder = LiveVideoTranscoder(
                codec=extradata[0],
                extradata=extradata[1],
                target=self.target,
                on_sample=on_sample,
                name=self._log_name,
            )
        except LiveTranscodeError as err:
            _LOGGER.warning("%s: live transcoder unavailable: %s", self._log_name, err)
            self._fail(str(err))
            return False
        return True

    def _put(self, init: InitSegment, samples: list[Sample]) -> None:
        """Queue samples (90 kHz timestamps) for the transcoder."""
        transcoder = self._transcoder
        video = init.video
        if transcoder is None or video is None:
            return
        scale = video.timescale
        for sample in samples:
            dts = sample.decode_time * RTP_CLOCK // scale
            pts = (sample.decode_time + sample.composition_offset) * RTP_CLOCK // scale
            transcoder.put(bytes(sample.data), pts, sample.is_sync, dts)

    def _deliver(self, sample: EncodedSample, epoch: int) -> None:
        """Hand one encoded AU to every session (event loop)."""
        if epoch != self._epoch:
            return  # from a transcoder being replaced
        now = time.monotonic()
        for session in self.sessions:
            session.push(
                AccessUnit(
                    sample.data,
                    sample.pts,
                    sample.pts,
                    sample.keyframe,
                    epoch,
                    now,
                    _IN_BAND,
                    source=SOURCE_TRANSCODER,
                )
            )

    def stats(self) -> dict[str, object]:
        """Return the transcoder's counters."""
        stats = self._transcoder.stats() if self._transcoder is not None else None
        return {
            "target": f"{self.target.width}x{self.target.height}@{self.target.fps}",
            "bitrate_kbps": stats.bitrate_kbps if stats else None,
            "encoder": stats.encoder if stats else None,
            "frames_in": stats.frames_in if stats else 0,
            "frames_out": stats.frames_out if stats else 0,
            "busy_seconds": round(stats.busy_seconds, 3) if stats else 0.0,
            "viewers": len(self.sessions),
            "restarts": self.restarts,
            "failed": self.failed,
        }

    def release(self) -> None:
        """Give this feed's share of the transcode budget back (idempotent)."""
        if self._reservation is not None:
            self._reservation.release()

    async def async_close(self) -> None:
        """Stop the transcoder and give its share of the budget back."""
        self.release()
        transcoder, self._transcoder = self._transcoder, None
        if transcoder is not None:
            await transcoder.async_close()
