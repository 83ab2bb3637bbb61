"""The opt-in direct path: live view read from the camera's own stream, packet by packet.

Home Assistant's stream hands video over a part at a time, so a viewer is always some part of
a second behind (docs/live-view.md §2.8). With "Lowest latency live view" on, copied viewers
read the camera's stream source themselves instead: one demuxer per camera (PyAV on its own
thread, a second connection to the camera) shared by every direct viewer, each packet sent as
soon as it is demuxed. It starts with the first viewer and stops after the last one. On any
error (no stream source, a codec other than H.264, the camera closing or going silent) every
viewer falls back to Home Assistant's stream at its next keyframe, and the reason is kept for
diagnostics. Recording never uses this path (docs/live-view.md §2.11).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
import contextlib
from dataclasses import dataclass, replace
import logging
import re
import threading
import time
from typing import TYPE_CHECKING, Any, Final

import av

from .avcc import annexb_to_avcc
from .h264_rtp import avcc_parameter_sets
from .session import RTP_CLOCK, SOURCE_DIRECT, SOURCE_PARTS, AccessUnit, ParameterSets

if TYPE_CHECKING:
    from .session import LiveSession
    from .viewers import Viewer

_LOGGER = logging.getLogger(__name__)

OPEN_TIMEOUT_SECONDS: Final = 10.0
READ_TIMEOUT_SECONDS: Final = 5.0
# Demuxed packets not yet taken by the event loop; beyond this the thread skips to the next
# keyframe rather than queue without bound.
MAX_IN_FLIGHT: Final = 150
# The GOP in progress is kept for a new viewer's start only while this young (seconds).
CATCHUP_SECONDS: Final = 1.0
# Low-delay demuxing with a probe that ends at the camera's first SPS (docs/live-view.md
# §2.11): no frame-rate probe (copy needs none; HA's worker needs it for DTS, we do not), and
# no `nobuffer`, which drops the packets read while probing: the first keyframe with them, so
# every start waited a whole GOP more (measured: the first keyframe handed out 2.08 s after
# the camera sent it with 2 s GOPs, against 80 ms without).
DEMUX_OPTIONS: Final = {
    "flags": "low_delay",
    "rtsp_transport": "tcp",
    "probesize": "500000",
    "analyzeduration": "1000000",
    "fpsprobesize": "0",
}
_NO_PARAMETERS: Final = ParameterSets([], [], 4)
# user[:password]@ after a URL scheme: stream sources carry camera credentials.
_URL_CREDENTIALS: Final = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/@\s'\"]+@")


class DirectError(Exception):
    """The camera's stream cannot be read directly."""


@dataclass(slots=True)
class _Viewer:
    """A session fed by the direct path, and what to do when the path fails."""

    session: LiveSession
    on_failed: Callable[[str], None]


@dataclass(frozen=True, slots=True)
class DirectFormat:
    """The camera's video as the direct demuxer opened it (always H.264)."""

    width: int
    height: int
    level_idc: int | None  # from the SPS; None when the SPS only comes in-band


def parameter_sets(extradata: bytes | None) -> ParameterSets:
    """Return SPS/PPS from a decoder's extradata (avcC or Annex B); in-band if there is none."""
    if not extradata:
        return _NO_PARAMETERS
    if extradata[0] == 1:
        sps, pps = avcc_parameter_sets(extradata)
        return ParameterSets(sps, pps, 4)
    nals = [n for n in _annexb_units(extradata) if n]
    return ParameterSets(
        [n for n in nals if n[0] & 0x1F == 7], [n for n in nals if n[0] & 0x1F == 8], 4
    )


def without_credentials(text: str) -> str:
    """Return ``text`` with the user and password of any URL in it masked (FFmpeg quotes URLs)."""
    return _URL_CREDENTIALS.sub(r"\1***@", text)


def _annexb_units(data: bytes) -> list[bytes]:
    """Split Annex B data into NAL units."""
    avcc = annexb_to_avcc(data)
    units, pos = [], 0
    while pos + 4 <= len(avcc):
        size = int.from_bytes(avcc[pos : pos + 4])
        units.append(avcc[pos + 4 : pos + 4 + size])
        pos += 4 + size
    return units


class DirectFeed:
    """One demuxer of one camera's stream source, shared by its direct viewers."""

    def __init__(
        self,
        source_url: Callable[[], Awaitable[str | None]],
        *,
        log_name: str,
        options: dict[str, str] | None = None,
    ) -> None:
        """Prepare; nothing connects before the first viewer."""
        self._source_url = source_url
        self._log_name = log_name
        self._options = dict(DEMUX_OPTIONS if options is None else options)
        self._viewers: list[_Viewer] = []
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._epoch = 0
        self._gop: list[AccessUnit] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Task[None] | None = None
        self._format_waiters: list[asyncio.Future[DirectFormat | None]] = []
        self.format: DirectFormat | None = None  # of the connection in use
        self.connects = 0
        self.packets = 0
        self.skipped = 0
        self.last_error: str | None = None
        self.connected_at: float | None = None

    @property
    def running(self) -> bool:
        """Return True while the demuxer thread runs."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def viewers(self) -> int:
        """Return how many sessions are fed."""
        return len(self._viewers)

    async def async_add(
        self, session: LiveSession, on_failed: Callable[[str], None]
    ) -> list[AccessUnit]:
        """Feed ``session`` from now on; return the GOP in progress to start from.

        Raise DirectError when the camera has no stream source.
        """
        if self._stopping is not None:
            await self._stopping  # the last viewer just left: let that thread end first
        if self._thread is None:
            self._start(await self._async_url())
        self._viewers.append(_Viewer(session, on_failed))
        return self._replay()

    async def async_format(self) -> DirectFormat | None:
        """Connect (unless connected) and return the camera's video format.

        None when the camera cannot be read directly or the connection fails or stops first.
        A caller that adds no viewer after this calls ``release``.
        """
        if self._stopping is not None:
            await self._stopping
        if self._thread is None:
            try:
                self._start(await self._async_url())
            except DirectError as err:
                self.last_error = str(err)
                return None
        if self.format is not None:
            return self.format
        waiter: asyncio.Future[DirectFormat | None] = asyncio.get_running_loop().create_future()
        self._format_waiters.append(waiter)
        try:
            async with asyncio.timeout(OPEN_TIMEOUT_SECONDS + READ_TIMEOUT_SECONDS):
                return await waiter
        except TimeoutError:
            return None
        finally:
            if waiter in self._format_waiters:
                self._format_waiters.remove(waiter)

    async def _async_url(self) -> str:
        """Return the camera's stream source; DirectError when it has none or cannot say."""
        try:
            url = await self._source_url()
        except Exception as err:  # camera integrations raise anything: re-raised as ours
            raise DirectError(f"no stream source: {err}") from err
        if not url:
            raise DirectError("the camera has no stream source")
        return url

    def release(self) -> None:
        """Stop the demuxer if no viewer uses it (after ``async_format`` led to no viewer)."""
        if not self._viewers and self._thread is not None and self._stopping is None:
            loop = asyncio.get_running_loop()
            self._stopping = loop.create_task(self.async_stop(), name=f"{self._log_name} direct")

    def remove(self, session: LiveSession) -> None:
        """Stop feeding ``session``; the demuxer stops after the last viewer."""
        self._viewers = [v for v in self._viewers if v.session is not session]
        self.release()

    async def async_stop(self) -> None:
        """Stop the demuxer and close the camera connection (unload; idempotent)."""
        self._viewers.clear()
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        stopping = self._stopping
        if stopping is not None and stopping is not asyncio.current_task():
            await asyncio.gather(stopping, return_exceptions=True)
        self._gop.clear()
        self._answer_format(None)
        self._stopping = None

    def _start(self, url: str) -> None:
        """Start the demuxer thread."""
        self._loop = asyncio.get_running_loop()
        self._stop = threading.Event()
        self._epoch += 1
        self._gop.clear()
        self.connected_at = None
        self.format = None
        self._thread = threading.Thread(
            target=self._run, args=(url, self._epoch, self._stop), name="hksv_direct", daemon=True
        )
        self._thread.start()

    def _replay(self) -> list[AccessUnit]:
        """Return the GOP in progress as catch-up units, if recent enough."""
        gop = self._gop
        if not gop or (gop[-1].dts - gop[0].dts) > CATCHUP_SECONDS * RTP_CLOCK:
            return []
        return [replace(unit, catchup=True) for unit in gop]

    # -- demuxer thread -------------------------------------------------------------------

    def _run(self, url: str, epoch: int, stop: threading.Event) -> None:
        """Demux the camera's video until stopped; report a failure to the loop."""
        try:
            self._demux(url, epoch, stop)
            if not stop.is_set():
                raise DirectError("the camera ended the stream")
        except (DirectError, av.error.FFmpegError, OSError, ValueError, IndexError) as err:
            if not stop.is_set():
                reason = without_credentials(f"{type(err).__name__}: {err}")
                self._call(self._failed, epoch, reason)

    def _demux(self, url: str, epoch: int, stop: threading.Event) -> None:
        """Read packets and hand each one to the loop as an access unit."""
        container = av.open(
            url, options=self._options, timeout=(OPEN_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS)
        )
        try:
            if not container.streams.video:
                raise DirectError("the stream has no video")
            stream = container.streams.video[0]
            if stream.codec_context.name != "h264":
                raise DirectError(f"the camera sends {stream.codec_context.name}, not H.264")
            extradata = stream.codec_context.extradata
            avcc = extradata is not None and extradata[:1] == b"\x01"
            params = parameter_sets(extradata)
            level = params.sps[0][3] if params.sps and len(params.sps[0]) > 3 else None
            ctx = stream.codec_context
            self._call(self._connected, epoch, DirectFormat(ctx.width, ctx.height, level))
            skipping = False
            for packet in container.demux(stream):
                if stop.is_set():
                    return
                if packet.pts is None or packet.size == 0 or packet.time_base is None:
                    continue
                keyframe = bool(packet.is_keyframe)
                with self._lock:
                    if self._in_flight >= MAX_IN_FLIGHT:
                        skipping = True
                    if skipping and not keyframe:
                        self.skipped += 1
                        continue
                    skipping = False
                    self._in_flight += 1
                data = bytes(packet)
                scale = packet.time_base * RTP_CLOCK
                dts = packet.dts if packet.dts is not None else packet.pts
                unit = AccessUnit(
                    data if avcc else annexb_to_avcc(data),
                    int(dts * scale),
                    int(packet.pts * scale),
                    keyframe,
                    epoch,
                    0.0,
                    params,
                    source=SOURCE_DIRECT,
                )
                self._call(self._deliver, epoch, unit)
        finally:
            container.close()

    def _call(self, callback: Callable[..., None], *args: Any) -> None:
        """Run ``callback`` on the event loop (dropped once the loop is closed)."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            # The loop may close in between: then nobody is left to feed.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(callback, *args)

    # -- event loop -----------------------------------------------------------------------

    def _connected(self, epoch: int, video: DirectFormat) -> None:
        """Count a connection that delivered a video stream, and say what it carries."""
        if epoch == self._epoch:
            self.connects += 1
            self.connected_at = time.monotonic()
            self.format = video
            self._answer_format(video)

    def _answer_format(self, video: DirectFormat | None) -> None:
        """Settle every ``async_format`` waiting for the connection."""
        waiters, self._format_waiters = self._format_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(video)

    def _deliver(self, epoch: int, unit: AccessUnit) -> None:
        """Hand one access unit to every direct viewer (event loop)."""
        with self._lock:
            self._in_flight -= 1
        if epoch != self._epoch or self._thread is None:
            return
        self.packets += 1
        unit.arrived = time.monotonic()
        if unit.keyframe:
            self._gop = []
        if self._gop or unit.keyframe:
            self._gop.append(unit)
        for viewer in list(self._viewers):
            viewer.session.push(unit)

    def _failed(self, epoch: int, reason: str) -> None:
        """Fall every viewer back to Home Assistant's stream (event loop)."""
        if epoch != self._epoch:
            return
        self.last_error = reason
        _LOGGER.warning(
            "%s: direct live view failed (%s); using Home Assistant's stream",
            self._log_name,
            reason,
        )
        viewers, self._viewers = self._viewers, []
        self._thread = None  # the thread has ended (or is ending) on its own
        self._gop.clear()
        self.format = None
        self._answer_format(None)
        for viewer in viewers:
            viewer.on_failed(reason)

    def diagnostics(self) -> dict[str, Any]:
        """Return the direct path's state for diagnostics."""
        return {
            "running": self.running,
            "viewers": len(self._viewers),
            "connects": self.connects,
            "packets": self.packets,
            "skipped_packets": self.skipped,
            "last_error": self.last_error,
        }


async def async_use_direct(viewer: Viewer, direct: DirectFeed) -> None:
    """Move a copied viewer to the direct path at its first keyframe (HA's parts until then)."""
    session = viewer.session

    def use_direct() -> None:
        viewer.direct = True  # HA's parts stop reaching the session

    def fall_back(reason: str) -> None:
        viewer.record["direct"] = f"fell back to Home Assistant's stream: {reason}"
        if not viewer.direct:
            session.cancel_switch()  # never left HA's parts
            return
        viewer.direct = False  # HA's parts reach the session again
        session.switch_source(
            source=SOURCE_PARTS,
            request_keyframe=lambda: None,
            on_switched=lambda: None,
            same_timeline=False,
        )

    session.switch_source(
        source=SOURCE_DIRECT,
        request_keyframe=lambda: None,
        on_switched=use_direct,
        same_timeline=False,
    )
    try:
        replay = await direct.async_add(session, fall_back)
    except DirectError as err:
        fall_back(str(err))
        return
    if session.closed:
        direct.remove(session)  # ended while the direct path started
        return
    viewer.record["direct"] = "camera stream read directly"
    for unit in replay:
        session.push(unit)
