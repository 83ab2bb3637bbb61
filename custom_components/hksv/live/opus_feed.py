"""One Opus encoder per (sample rate, packet time), shared by every viewer's audio sender.

An ``OpusFeed`` takes the camera's AAC from the feed, encodes it once and hands each Opus packet
to every audio sender. It stops with its last viewer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
import logging
from typing import TYPE_CHECKING, Final

from .audio import AudioError, OpusLiveEncoder, aac_audio_specific_config

if TYPE_CHECKING:
    from ..source.part import MediaPart
    from .audio_sender import AudioSender

_LOGGER = logging.getLogger(__name__)

AAC_FRAME_SAMPLES: Final = 1024  # per AAC-LC access unit


class OpusFeed:
    """One Opus encoder for every viewer with the same sample rate and packet time.

    ``on_part`` only queues AAC (it runs inside Home Assistant's part loop); opening the
    codecs and encoding happen in the encode task, on the encoder's thread. Anything that
    goes wrong there ends this encoder alone: one log line, ``failed`` says why, and
    ``on_failed`` lets the owner detach it and tell its viewers.
    """

    def __init__(
        self,
        *,
        sample_rate: int,
        packet_time_ms: int,
        bitrate_kbps: int,
        log_name: str,
        on_failed: Callable[[OpusFeed], None] = lambda feed: None,
    ) -> None:
        """Prepare; the encoder opens with the first part that has AAC."""
        self.sample_rate = sample_rate
        self.packet_time_ms = packet_time_ms
        self.bitrate_kbps = bitrate_kbps
        self._log_name = log_name
        self._on_failed = on_failed
        self.senders: list[AudioSender] = []
        self._encoder: OpusLiveEncoder | None = None
        self._config: bytes | None = None  # of the open encoder
        self._work: asyncio.Queue[tuple[bytes, list[bytes]]] = asyncio.Queue(maxsize=16)
        self._task: asyncio.Task[None] | None = None
        self.failed: str | None = None
        self.packets = 0

    def on_part(self, part: MediaPart) -> None:
        """Queue the part's AAC for the encoder (FeedListener; never blocks)."""
        audio = part.init.audio
        if self.failed is not None or audio is None or not part.audio or not self.senders:
            return
        if audio.codec != "mp4a" or audio.object_type != 2:
            self._fail(f"camera audio is {audio.codec}/{audio.object_type}, not AAC-LC")
            return
        try:
            config = aac_audio_specific_config(audio.sample_rate, audio.channels)
        except AudioError as err:
            self._fail(str(err))
            return
        if all(sender.silent for sender in self.senders):
            # Nobody hears it: do not encode; the senders' clocks run on.
            seconds = len(part.audio) * AAC_FRAME_SAMPLES / audio.sample_rate
            for sender in self.senders:
                sender.skip_seconds(seconds)
            return
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._encode_loop(), name=f"{self._log_name} live opus"
            )
        try:
            self._work.put_nowait((config, [bytes(sample.data) for sample in part.audio]))
        except asyncio.QueueFull:
            _LOGGER.debug("%s: Opus encoder behind; dropping a part of audio", self._log_name)

    async def _encode_loop(self) -> None:
        """Open the codecs off the loop, encode queued AAC and fan the packets out."""
        try:
            while True:
                config, samples = await self._work.get()
                encoder = await self._encoder_for(config)
                packets = await encoder.async_encode(samples)
                self.packets += len(packets)
                for sender in self.senders:
                    for packet in packets:
                        sender.push(packet)
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - a codec failure ends this encoder, not HA
            self._fail(f"{type(err).__name__}: {err}")

    async def _encoder_for(self, config: bytes) -> OpusLiveEncoder:
        """Return the encoder for ``config``, opening it in a thread (a new one closes the old)."""
        encoder = self._encoder
        if encoder is not None and config == self._config:
            return encoder
        self._encoder = None
        if encoder is not None:
            await encoder.async_close()
        encoder = await asyncio.to_thread(
            OpusLiveEncoder,
            aac_config=config,
            sample_rate=self.sample_rate,
            packet_time_ms=self.packet_time_ms,
            bitrate_kbps=self.bitrate_kbps,
        )
        self._encoder, self._config = encoder, config
        return encoder

    def _fail(self, reason: str) -> None:
        """Stop for good with ``reason`` (logged once)."""
        if self.failed is not None:
            return
        self.failed = reason
        _LOGGER.warning("%s: live audio stopped: %s", self._log_name, reason)
        self._on_failed(self)

    async def async_close(self) -> None:
        """Stop the encoder."""
        task, self._task = self._task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        encoder, self._encoder = self._encoder, None
        if encoder is not None:
            await encoder.async_close()
