"""Live H.264 for viewers that cannot take the camera's stream as is (HEVC, watch, cellular).

`LiveVideoTranscoder` runs one `LiveVideoCodec` (transcode_codec.py) on its own `PyAVWorker`
thread (media/pyav_worker.py). Outputs are AVCC samples with SPS/PPS in-band on every IDR,
ready for `H264Packetizer` (which turns those into its STAP-A).

Threading: `put`, `reconfigure`, `force_keyframe` and `stats` never block and may be called
from the event loop. Results arrive through the `on_sample` callback, called on the worker
thread (hand them to the loop with `call_soon_threadsafe`). `close` joins the worker (a
frame's work at most); from the event loop use `async_close`.
"""

from __future__ import annotations

from collections.abc import Callable
import logging
import threading
from typing import Final

from ..media.encoders import EncoderChooser, shared_chooser
from ..media.pyav_worker import PyAVWorker
from .transcode_codec import (
    DECODERS,
    EncodedSample,
    LiveControls,
    LiveTranscodeError,
    LiveTranscodeStats,
    LiveVideoCodec,
    LiveVideoTarget,
)

_LOGGER = logging.getLogger(__name__)

INPUT_QUEUE: Final = 60  # samples: about 2 s of 30 fps before input is dropped


class LiveVideoTranscoder:
    """Decode, scale and encode one live picture size on a worker thread."""

    def __init__(
        self,
        *,
        codec: str,
        extradata: bytes,
        target: LiveVideoTarget,
        on_sample: Callable[[EncodedSample], None],
        encoders: EncoderChooser | None = None,
        name: str = "live",
    ) -> None:
        """Start the worker; it opens the decoder and the encoder ``encoders`` chooses.

        ``encoders`` defaults to the process's chooser, shared with recording.
        """
        decoder_name = DECODERS.get(codec.lower())
        if decoder_name is None:
            raise LiveTranscodeError(f"cannot decode {codec!r}")
        self._controls = LiveControls(target)
        self._name = name
        self._skip_to_keyframe = False
        self._started = threading.Event()
        self._codec: LiveVideoCodec | None = None  # worker thread only
        self._worker: PyAVWorker[EncodedSample] = PyAVWorker(
            f"hksv_live_transcode_{name}", max_jobs=INPUT_QUEUE, on_exit=self._on_exit
        )
        self._worker.start()

        def open_codec() -> None:
            self._codec = LiveVideoCodec(
                decoder_name=decoder_name,
                extradata=extradata,
                controls=self._controls,
                encoders=encoders or shared_chooser(),
                on_sample=on_sample,
                name=name,
            )
            self._started.set()

        self._worker.offer(open_codec)

    @property
    def target(self) -> LiveVideoTarget:
        """Return the target, with the bitrate last asked for."""
        return self._controls.target

    @property
    def running(self) -> bool:
        """Return whether the worker thread is alive."""
        return self._worker.running

    @property
    def error(self) -> BaseException | None:
        """Return what stopped the worker, if it failed."""
        return self._worker.error

    def stats(self) -> LiveTranscodeStats:
        """Return a snapshot of the counters."""
        return self._controls.stats

    def wait_started(self, timeout: float | None = None) -> bool:
        """Block until the worker has opened its codecs (or failed); return whether it did."""
        return self._started.wait(timeout)

    def put(
        self, sample: bytes, pts: int, keyframe: bool, dts: int | None = None, wait: float = 0.0
    ) -> bool:
        """Queue one source sample (90 kHz timestamps); False if it was dropped.

        With the queue full the sample waits up to ``wait`` seconds (never on the event loop),
        else it is dropped and so is everything up to the next keyframe.
        """
        if self._gone():
            return False
        if self._skip_to_keyframe and not keyframe:
            self._controls.count(input_dropped=1)
            return False
        if not self._worker.offer(lambda: self._transcode(sample, pts, dts, keyframe), wait):
            if self._gone():
                return False
            # The decoder must not miss a reference frame: skip to the next keyframe.
            self._skip_to_keyframe = True
            self._controls.count(input_dropped=1)
            return False
        self._skip_to_keyframe = False
        return True

    def reconfigure(self, bitrate_kbps: int) -> None:
        """Encode at a new bitrate from the next frame on, starting with an IDR."""
        self._controls.reconfigure(bitrate_kbps)

    def force_keyframe(self) -> None:
        """Make the next encoded frame an IDR (a viewer joined or lost packets)."""
        self._controls.force_keyframe()

    def close(self) -> None:
        """Stop the worker and wait for it to exit."""
        self._worker.join()

    async def async_close(self) -> None:
        """Close without blocking the event loop."""
        await self._worker.async_stop()

    def _gone(self) -> bool:
        """Return whether samples can no longer reach the codec."""
        return self._worker.stopping or self._worker.ended

    # -- worker thread ---------------------------------------------------------------------

    def _transcode(self, sample: bytes, pts: int, dts: int | None, keyframe: bool) -> None:
        """Decode and encode one sample (the codec opened in the worker's first job)."""
        if self._codec is not None:
            self._codec.transcode(sample, pts, dts, keyframe)

    def _on_exit(self, error: Exception | None) -> None:
        """Free the codecs here, report a failure; a worker that ends lets ``wait_started`` return.

        Freeing an encoder joins its threads: that belongs on this thread, not on the event
        loop where the last reference to the transcoder would otherwise drop.
        """
        self._codec = None
        if error is not None:
            _LOGGER.warning("%s: live transcoder stopped: %s", self._name, error)
        self._started.set()
