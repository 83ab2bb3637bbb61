"""The dataSend recording stream: open checks, chunking, ack/close and release (§5.2-§5.4).

The camera's side, its packets and how its generator is pulled and closed, is `delegate.py`.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
import contextlib
import logging
from typing import TYPE_CHECKING, Any, Final

from .delegate import RecordingDelegate, RecordingPacket, close_iterator, next_packet
from .errors import HDSClosedError, HDSError, HDSProtocolError, OpackError
from .messages import (
    PROTOCOL_DATA_SEND,
    TOPIC_ACK,
    TOPIC_CLOSE,
    TOPIC_DATA,
    TOPIC_OPEN,
    DataSendCloseReason,
    HDSStatus,
    close_message,
    is_int,
    reject_message,
)

if TYPE_CHECKING:
    from .connection import HDSConnection

_LOGGER = logging.getLogger(__name__)

# Slice size of one dataSend.data event (HN CameraRecordingStream; real cameras, USPEC example).
MAX_CHUNK_SIZE: Final = 0x40000
# Close with CANCELLED when the hub neither acks nor closes after the generator finished
# (HN CameraRecordingStream closing timeout).
CLOSING_TIMEOUT: Final = 12.0
# How long stopping waits for a generator to return after its stream closed
# (HN CameraRecordingStream logs an error after 10 s).
GENERATOR_CLOSE_TIMEOUT: Final = 10.0
# Close reasons kept for diagnostics.
CLOSE_HISTORY: Final = 10

TARGET_CONTROLLER: Final = "controller"
TYPE_RECORDING: Final = "ipcamera.recording"
DATA_TYPE_INIT: Final = "mediaInitialization"
DATA_TYPE_FRAGMENT: Final = "mediaFragment"


class RecordingStream:
    """One accepted dataSend stream, keyed by (connection, streamId)."""

    __slots__ = ("active", "connection", "started", "stream_id", "task", "timer")

    def __init__(self, connection: HDSConnection, stream_id: int) -> None:
        """Create an active stream."""
        self.connection = connection
        self.stream_id = stream_id
        self.active = True
        # A task cancelled before its first step never runs its finally; such a task is
        # left to start, notice the release and close the iterator itself.
        self.started = False
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None

    def released(self) -> bool:
        """Return True once the stream slot was released (re-read after every await)."""
        return not self.active


class RecordingStreams:
    """The recording streams of one camera: at most one is active at a time."""

    def __init__(
        self, delegate: RecordingDelegate, log_name: str, loop: asyncio.AbstractEventLoop
    ) -> None:
        """Create an empty registry."""
        self._delegate = delegate
        self._log_name = log_name
        self._loop = loop
        self._streams: dict[tuple[HDSConnection, int], RecordingStream] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.streams_opened = 0
        self.opens_rejected = 0
        self.close_reasons: deque[str] = deque(maxlen=CLOSE_HISTORY)

    @property
    def active(self) -> bool:
        """Return True while a recording stream holds the camera."""
        return bool(self._streams)

    def attach(self, connection: HDSConnection) -> None:
        """Register the dataSend handlers on a new connection."""
        connection.add_request_handler(PROTOCOL_DATA_SEND, TOPIC_OPEN, self._handle_open)
        connection.add_event_handler(PROTOCOL_DATA_SEND, TOPIC_ACK, self._handle_ack)
        connection.add_event_handler(PROTOCOL_DATA_SEND, TOPIC_CLOSE, self._handle_close)

    def connection_closed(self, connection: HDSConnection) -> None:
        """Release the streams of a closed connection (reason None: socket lost)."""
        for stream in [s for s in self._streams.values() if s.connection is connection]:
            self._release(stream, None, "HDS connection closed")

    def close_all(self, reason: DataSendCloseReason) -> None:
        """Close every stream from the accessory side, telling the hub why."""
        for stream in list(self._streams.values()):
            self._release(stream, reason, "closed by the accessory", send_close=True)

    async def async_stop(self) -> None:
        """Release every stream and wait for its task to close the delegate's iterator."""
        for stream in list(self._streams.values()):
            self._release(stream, None, "server stopped")
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=GENERATOR_CLOSE_TIMEOUT)
        for task in pending:
            _LOGGER.error("%s: recording generator did not return after close", self._log_name)
            task.cancel()
        if pending:
            await asyncio.wait(pending)

    # -- hub messages -----------------------------------------------------------------------

    def _open_rejection(
        self, connection: HDSConnection, message: dict[Any, Any]
    ) -> DataSendCloseReason | None:
        """Return why an open must be refused, checked in HN's order (§5.2)."""
        delegate = self._delegate
        if (
            message.get("target") != TARGET_CONTROLLER
            or message.get("type") != TYPE_RECORDING
            or not is_int(message.get("streamId"))
        ):
            return DataSendCloseReason.UNEXPECTED_FAILURE
        if not delegate.recording_active or not delegate.camera_active:
            return DataSendCloseReason.NOT_ALLOWED
        # HN stays silent for a second open on the same connection; we answer BUSY (§5.4).
        if self._streams:
            return DataSendCloseReason.BUSY
        if not delegate.has_selected_configuration:
            return DataSendCloseReason.INVALID_CONFIGURATION
        return None

    def _handle_open(
        self, connection: HDSConnection, request_id: int, message: dict[Any, Any]
    ) -> None:
        """Accept or refuse a dataSend open request."""
        if (reason := self._open_rejection(connection, message)) is not None:
            self.opens_rejected += 1
            _LOGGER.info(
                "%s: refusing recording stream %r: %s",
                self._log_name,
                message.get("streamId"),
                reason.name,
            )
            connection.send_response(
                PROTOCOL_DATA_SEND,
                TOPIC_OPEN,
                request_id,
                HDSStatus.PROTOCOL_SPECIFIC_ERROR,
                reject_message(reason),
            )
            if reason is not DataSendCloseReason.UNEXPECTED_FAILURE:
                self._delegate.recording_stream_refused(message["streamId"], reason)
            return
        stream_id: int = message["streamId"]
        connection.send_response(
            PROTOCOL_DATA_SEND, TOPIC_OPEN, request_id, HDSStatus.SUCCESS, {"status": 0}
        )
        stream = RecordingStream(connection, stream_id)
        self._streams[(connection, stream_id)] = stream
        self.streams_opened += 1
        _LOGGER.info(
            "%s: recording stream %s opened (reason %r)",
            self._log_name,
            stream_id,
            message.get("reason"),
        )
        try:
            iterator = self._delegate.handle_recording_stream_request(stream_id)
        except HDSProtocolError as err:
            self._release(stream, err.reason, f"delegate refused: {err}", send_close=True)
            return
        except Exception as err:  # a failing delegate ends only its stream
            _LOGGER.exception("%s: recording delegate failed to start", self._log_name)
            reason = DataSendCloseReason.UNEXPECTED_FAILURE
            self._release(stream, reason, f"delegate failed: {err!r}", send_close=True)
            return
        task = self._loop.create_task(
            self._run(stream, iterator), name=f"hksv-hds-stream-{self._log_name}-{stream_id}"
        )
        stream.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _stream_for(
        self, connection: HDSConnection, message: dict[Any, Any]
    ) -> RecordingStream | None:
        """Return the stream a hub event refers to, if it is ours and active."""
        stream_id = message.get("streamId")
        if not is_int(stream_id):
            return None
        return self._streams.get((connection, stream_id))

    def _handle_ack(self, connection: HDSConnection, message: dict[Any, Any]) -> None:
        """Release a stream the hub acknowledged; nothing is sent back (HN)."""
        if (stream := self._stream_for(connection, message)) is None:
            _LOGGER.debug("%s: ignoring ack for unknown stream %r", self._log_name, message)
            return
        self._release(stream, DataSendCloseReason.NORMAL, "acknowledged by the hub", ack=True)

    def _handle_close(self, connection: HDSConnection, message: dict[Any, Any]) -> None:
        """Release a stream the hub closed; nothing is sent back (HN)."""
        if (stream := self._stream_for(connection, message)) is None:
            _LOGGER.debug("%s: ignoring close for unknown stream %r", self._log_name, message)
            return
        # USPEC's example writes "status"; HN and the ADK write "reason".
        raw = message.get("reason", message.get("status"))
        reason = DataSendCloseReason(raw) if is_int(raw) else None
        label = reason.name if reason is not None else repr(raw)
        self._release(stream, reason, f"closed by the hub ({label})")

    # -- streaming --------------------------------------------------------------------------

    async def _run(self, stream: RecordingStream, iterator: AsyncIterator[RecordingPacket]) -> None:
        """Pull packets while the socket is writable and send them in chunks."""
        stream.started = True
        failure: HDSProtocolError | None = None
        finished = False
        try:
            finished = await self._pump(stream, iterator)
        except HDSClosedError:
            pass  # the connection's cleanup already released the stream as socket loss
        except HDSProtocolError as err:
            failure = err
        except (HDSError, OpackError) as err:
            failure = HDSProtocolError(DataSendCloseReason.UNEXPECTED_FAILURE, str(err))
        finally:
            await close_iterator(iterator, failure, self._log_name, stream.stream_id)
        if stream.released():
            return
        if failure is not None:
            self._release(stream, failure.reason, f"stream failed: {failure}", send_close=True)
        elif finished:
            stream.timer = self._loop.call_at(
                self._loop.time() + CLOSING_TIMEOUT, self._on_closing_timeout, stream
            )

    async def _pump(
        self, stream: RecordingStream, iterator: AsyncIterator[RecordingPacket]
    ) -> bool:
        """Send packets until is_last; return True if the generator finished."""
        sequence = 0
        while True:
            await self._drain(stream)
            if stream.released():
                return False
            packet = await next_packet(iterator, self._log_name)
            if stream.released():
                return False
            if packet is None:
                _LOGGER.warning(
                    "%s: recording of stream %s ended without RecordingPacket.is_last",
                    self._log_name,
                    stream.stream_id,
                )
                return True
            data, is_last = packet
            if not data.nbytes:
                if is_last:
                    # An empty end marker is never sent (HN sends nothing; peers.md: a clip
                    # with dataTotalSize 0 is discarded), so it counts as a plain finish.
                    _LOGGER.warning(
                        "%s: empty last packet on stream %s was not sent",
                        self._log_name,
                        stream.stream_id,
                    )
                    return True
                continue
            sequence += 1
            await self._send_packet(stream, sequence, data, is_last)
            if stream.released():
                return False
            if is_last:
                return True

    async def _send_packet(
        self, stream: RecordingStream, sequence: int, view: memoryview, is_last: bool
    ) -> None:
        """Send one packet as chunks of MAX_CHUNK_SIZE, waiting for the socket between them."""
        connection = stream.connection
        total = view.nbytes
        data_type = DATA_TYPE_INIT if sequence == 1 else DATA_TYPE_FRAGMENT
        chunk = 1
        offset = 0
        while True:
            end = offset + MAX_CHUNK_SIZE
            last_chunk = end >= total
            metadata: dict[str, Any] = {
                "dataType": data_type,
                "dataSequenceNumber": sequence,
                "dataChunkSequenceNumber": chunk,
                "isLastDataChunk": last_chunk,
            }
            if chunk == 1:
                metadata["dataTotalSize"] = total
            message: dict[str, Any] = {
                "streamId": stream.stream_id,
                "packets": [{"data": view[offset:end], "metadata": metadata}],
            }
            if last_chunk:
                message["endOfStream"] = is_last
            connection.send_event(PROTOCOL_DATA_SEND, TOPIC_DATA, message)
            if last_chunk:
                return
            offset = end
            chunk += 1
            await self._drain(stream)
            if stream.released():
                return

    async def _drain(self, stream: RecordingStream) -> None:
        """Wait until the socket takes more data.

        A hub that reads nothing makes the connection raise HDSSendStalledError (TIMEOUT):
        the stream fails at its next send, or at once while it waits here.
        """
        await stream.connection.drain()

    def _on_closing_timeout(self, stream: RecordingStream) -> None:
        """Close a finished stream the hub never acknowledged or closed."""
        stream.timer = None
        self._release(
            stream,
            DataSendCloseReason.CANCELLED,
            f"no ack or close {CLOSING_TIMEOUT} s after the end",
            send_close=True,
        )

    # -- release ----------------------------------------------------------------------------

    def _release(
        self,
        stream: RecordingStream,
        reason: DataSendCloseReason | None,
        description: str,
        *,
        send_close: bool = False,
        ack: bool = False,
    ) -> None:
        """Free the stream slot once, stop its task and timer, tell the hub and the delegate."""
        key = (stream.connection, stream.stream_id)
        if self._streams.get(key) is not stream:
            return
        del self._streams[key]
        stream.active = False
        if stream.timer is not None:
            stream.timer.cancel()
            stream.timer = None
        task = stream.task
        if stream.started and task is not None and task is not asyncio.current_task():
            task.cancel()
        self.close_reasons.append(f"stream {stream.stream_id}: {description}")
        _LOGGER.info(
            "%s: recording stream %s ended: %s", self._log_name, stream.stream_id, description
        )
        if send_close and reason is not None and not stream.connection.is_closed:
            with contextlib.suppress(HDSClosedError):
                stream.connection.send_event(
                    PROTOCOL_DATA_SEND, TOPIC_CLOSE, close_message(stream.stream_id, reason)
                )
        delegate = self._delegate
        try:
            if ack:
                delegate.acknowledge_stream(stream.stream_id)
            else:
                delegate.close_recording_stream(stream.stream_id, reason)
        except Exception:  # a failing delegate must not leak the stream slot
            _LOGGER.exception("%s: recording delegate failed on stream end", self._log_name)
