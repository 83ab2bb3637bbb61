"""The home hub's end of a HomeKit Data Stream, for tests against the real accessory.

`HDSClient` connects over TCP with the two keys derived on the controller side, speaks the
control and dataSend protocols, records every received message and dataSend chunk, and can
misbehave on purpose (garbage, wrong key, raw frames, silence, abrupt disconnect, no reading).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
import itertools
import os
import socket
from typing import Any, Final, Self

from custom_components.hksv.hds.errors import HDSClosedError, HDSError, OpackError
from custom_components.hksv.hds.frame import (
    HEADER_LENGTH,
    DecryptCipher,
    EncryptCipher,
    HDSFrameReader,
    decode_payload,
    derive_keys,
    encode_payload,
)
from custom_components.hksv.hds.messages import (
    PROTOCOL_CONTROL,
    PROTOCOL_DATA_SEND,
    TOPIC_ACK,
    TOPIC_CLOSE,
    TOPIC_DATA,
    TOPIC_HELLO,
    TOPIC_OPEN,
    MessageType,
    event_header,
    parse_header,
    request_header,
)

DEFAULT_TIMEOUT: Final = 10.0


@dataclass(frozen=True, slots=True)
class HDSMessage:
    """One decoded message from the accessory."""

    type: MessageType
    protocol: str
    topic: str
    id: int | None
    status: int | None
    header: dict[Any, Any]
    message: dict[Any, Any]
    payload: bytes  # the frame plaintext
    frame_length: int  # header + ciphertext + tag
    counter: int  # the a2c nonce counter it was sealed with

    def is_event(self, protocol: str, topic: str) -> bool:
        """Return True for an event of protocol/topic."""
        return self.type is MessageType.EVENT and (self.protocol, self.topic) == (protocol, topic)


@dataclass(frozen=True, slots=True)
class ReceivedChunk:
    """One dataSend.data event (one packet entry of it)."""

    stream_id: int
    data: bytes
    metadata: dict[str, Any]
    end_of_stream: bool | None  # None when the key is absent


@dataclass(slots=True)
class Recording:
    """Everything received for one stream id."""

    stream_id: int
    chunks: list[ReceivedChunk] = field(default_factory=list)
    close_reason: int | None = None  # from an accessory dataSend.close

    @property
    def ended(self) -> bool:
        """Return True once a chunk carried endOfStream true."""
        return any(chunk.end_of_stream for chunk in self.chunks)

    @property
    def closed(self) -> bool:
        """Return True once the accessory closed the stream."""
        return self.close_reason is not None

    @property
    def packets(self) -> list[bytes]:
        """Return the packets reassembled from their chunks, in dataSequenceNumber order."""
        return self._reassemble(complete_only=False)

    @property
    def complete_packets(self) -> list[bytes]:
        """Return only the packets whose last chunk arrived (a hub may close mid-packet)."""
        return self._reassemble(complete_only=True)

    def _reassemble(self, *, complete_only: bool) -> list[bytes]:
        """Join chunks by dataSequenceNumber."""
        parts: dict[int, list[bytes]] = {}
        done: set[int] = set()
        for chunk in self.chunks:
            number = chunk.metadata["dataSequenceNumber"]
            parts.setdefault(number, []).append(chunk.data)
            if chunk.metadata.get("isLastDataChunk"):
                done.add(number)
        return [
            b"".join(parts[number])
            for number in sorted(parts)
            if not complete_only or number in done
        ]


class HDSClient(asyncio.Protocol):
    """A controller-side HDS connection: c2a to send, a2c to receive."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        accessory_to_controller_key: bytes,
        controller_to_accessory_key: bytes,
        name: str = "hub",
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        """Prepare a client; every wait gives up after timeout seconds."""
        self.host = host
        self.timeout = timeout
        self.port = port
        self.name = name
        self.c2a_key = controller_to_accessory_key
        self.a2c_key = accessory_to_controller_key
        self._encrypt = EncryptCipher(controller_to_accessory_key)
        self._decrypt = DecryptCipher(accessory_to_controller_key)
        self._reader = HDSFrameReader()
        self._transport: asyncio.Transport | None = None
        self._closed: asyncio.Future[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._ids = itertools.count(1)
        self._unread: list[HDSMessage] = []
        self.messages: list[HDSMessage] = []
        self.recordings: dict[int, Recording] = {}
        self.errors: list[Exception] = []
        self.bytes_received = 0

    @classmethod
    def from_shared_secret(
        cls,
        host: str,
        port: int,
        shared_secret: bytes,
        controller_salt: bytes,
        accessory_salt: bytes,
        *,
        name: str = "hub",
    ) -> Self:
        """Derive the keys as the controller does and return a client."""
        keys = derive_keys(shared_secret, controller_salt, accessory_salt)
        return cls(
            host,
            port,
            accessory_to_controller_key=keys.accessory_to_controller,
            controller_to_accessory_key=keys.controller_to_accessory,
            name=name,
        )

    # -- connection -------------------------------------------------------------------------

    async def connect(self, *, receive_buffer: int | None = None) -> None:
        """Open the TCP connection; receive_buffer shrinks SO_RCVBUF (slow-reader tests)."""
        loop = asyncio.get_running_loop()
        self._closed = loop.create_future()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if receive_buffer is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
            sock.setblocking(False)
            await loop.sock_connect(sock, (self.host, self.port))
        except BaseException:
            sock.close()
            raise
        await loop.create_connection(lambda: self, sock=sock)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Keep the transport."""
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        """Decrypt and record every complete frame."""
        self.bytes_received += len(data)
        try:
            self._reader.add_data(data)
            while (frame := self._reader.read_frame()) is not None:
                counter = self._decrypt.counter
                header, body = frame
                payload = self._decrypt.open(header, body)
                self._receive(payload, HEADER_LENGTH + len(body), counter)
        except (HDSError, OpackError) as err:
            self.errors.append(err)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        """Wake every waiter; the connection is gone."""
        if exc is not None:
            self.errors.append(exc)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._wake()

    @property
    def closed(self) -> bool:
        """Return True once the TCP connection is closed."""
        return self._closed is not None and self._closed.done()

    def pause_reading(self) -> None:
        """Stop reading from the socket, like a hub that stalls."""
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        """Read again."""
        if self._transport is not None:
            self._transport.resume_reading()

    def abort(self) -> None:
        """Drop the connection abruptly, without sending anything more."""
        if self._transport is not None:
            self._transport.abort()

    async def close(self) -> None:
        """Close the connection and wait until it is gone."""
        if self._transport is not None:
            self._transport.close()
        await self.wait_closed()

    async def wait_closed(self) -> None:
        """Wait until the accessory (or we) closed the connection."""
        if self._closed is None:
            return
        async with asyncio.timeout(self.timeout):
            await asyncio.shield(self._closed)

    # -- sending ----------------------------------------------------------------------------

    def send_raw(self, data: bytes) -> None:
        """Write raw bytes to the socket."""
        if self._transport is None or self.closed:
            raise HDSClosedError(f"{self.name}: not connected")
        self._transport.write(data)

    def send_garbage(self, length: int = 64) -> None:
        """Write random bytes that start like a frame header but are not a sealed frame."""
        body = os.urandom(length)
        self.send_raw(bytes((1, 0, 0, length - 16)) + body if length >= 16 else body)

    def send_frame(self, plaintext: bytes, *, key: bytes | None = None, counter: int = 0) -> None:
        """Seal plaintext as one frame; with key, use that key and counter instead of c2a."""
        cipher = self._encrypt if key is None else EncryptCipher(key, counter)
        header, sealed = cipher.seal(plaintext)
        self.send_raw(header + sealed)

    def send_message(self, header: dict[str, Any], message: dict[str, Any]) -> None:
        """Encode and send one message."""
        self.send_frame(bytes(encode_payload(header, message)))

    def send_request(
        self,
        protocol: str,
        topic: str,
        message: dict[str, Any] | None = None,
        *,
        request_id: int | None = None,
    ) -> int:
        """Send a request (id as Int64, like HN) and return its id."""
        if request_id is None:
            request_id = next(self._ids)
        self.send_message(request_header(protocol, topic, request_id), message or {})
        return request_id

    def send_event(self, protocol: str, topic: str, message: dict[str, Any]) -> None:
        """Send an event."""
        self.send_message(event_header(protocol, topic), message)

    async def request(
        self,
        protocol: str,
        topic: str,
        message: dict[str, Any] | None = None,
        *,
        request_id: int | None = None,
    ) -> HDSMessage:
        """Send a request and return its response."""
        request_id = self.send_request(protocol, topic, message, request_id=request_id)
        return await self.response(request_id)

    async def hello(self) -> HDSMessage:
        """Send control/hello and return the response."""
        return await self.request(PROTOCOL_CONTROL, TOPIC_HELLO, {})

    def open_message(
        self,
        stream_id: int = 1,
        *,
        reason: str = "motion",
        target: str = "controller",
        stream_type: str = "ipcamera.recording",
    ) -> dict[str, Any]:
        """Return a dataSend open message."""
        return {"target": target, "type": stream_type, "streamId": stream_id, "reason": reason}

    async def open_recording(self, stream_id: int = 1, **kwargs: Any) -> HDSMessage:
        """Send dataSend/open (kwargs as for open_message) and return the response."""
        self.recordings.setdefault(stream_id, Recording(stream_id))
        message = self.open_message(stream_id, **kwargs)
        return await self.request(PROTOCOL_DATA_SEND, TOPIC_OPEN, message)

    def ack(self, stream_id: int = 1) -> None:
        """Acknowledge the end of a stream."""
        self.send_event(PROTOCOL_DATA_SEND, TOPIC_ACK, {"streamId": stream_id, "endOfStream": True})

    def close_stream(self, stream_id: int = 1, reason: int = 0) -> None:
        """Close a stream from the hub side."""
        self.send_event(PROTOCOL_DATA_SEND, TOPIC_CLOSE, {"streamId": stream_id, "reason": reason})

    # -- receiving --------------------------------------------------------------------------

    def _receive(self, payload: bytes, frame_length: int, counter: int) -> None:
        """Decode, record and queue one message."""
        raw_header, message = decode_payload(payload)
        header = parse_header(raw_header)
        if header is None:
            raise HDSError(f"{self.name}: invalid header {raw_header!r}")
        received = HDSMessage(
            type=header.type,
            protocol=header.protocol,
            topic=header.topic,
            id=header.id,
            status=header.status,
            header=raw_header,
            message=message,
            payload=payload,
            frame_length=frame_length,
            counter=counter,
        )
        self.messages.append(received)
        self._unread.append(received)
        if received.is_event(PROTOCOL_DATA_SEND, TOPIC_DATA):
            self._record_data(message)
        elif received.is_event(PROTOCOL_DATA_SEND, TOPIC_CLOSE):
            recording = self.recordings.setdefault(
                message["streamId"], Recording(message["streamId"])
            )
            recording.close_reason = message.get("reason")
        self._wake()

    def _record_data(self, message: dict[Any, Any]) -> None:
        """Store every packet entry of a dataSend.data event."""
        stream_id = message["streamId"]
        recording = self.recordings.setdefault(stream_id, Recording(stream_id))
        for packet in message["packets"]:
            recording.chunks.append(
                ReceivedChunk(stream_id, packet["data"], packet["metadata"], None)
            )
        if "endOfStream" in message:
            last = recording.chunks[-1]
            recording.chunks[-1] = ReceivedChunk(
                last.stream_id, last.data, last.metadata, message["endOfStream"]
            )

    def _wake(self) -> None:
        """Wake every wait_until()."""
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    async def wait_until(self, condition: Callable[[], bool]) -> None:
        """Wait until condition() holds, re-checked after every message and on close."""
        async with asyncio.timeout(self.timeout):
            while not condition():
                if self.closed:
                    raise HDSClosedError(f"{self.name}: connection closed while waiting")
                waiter = asyncio.get_running_loop().create_future()
                self._waiters.append(waiter)
                await waiter

    async def next_message(
        self, predicate: Callable[[HDSMessage], bool] | None = None
    ) -> HDSMessage:
        """Return (and consume) the first unread message matching predicate."""
        found: list[HDSMessage] = []

        def match() -> bool:
            for index, message in enumerate(self._unread):
                if predicate is None or predicate(message):
                    found.append(self._unread.pop(index))
                    return True
            return False

        await self.wait_until(match)
        return found[0]

    async def response(self, request_id: int) -> HDSMessage:
        """Return the response to request_id."""
        return await self.next_message(
            lambda m: m.type is MessageType.RESPONSE and m.id == request_id
        )

    async def event(self, protocol: str, topic: str) -> HDSMessage:
        """Return the next event of protocol/topic."""
        return await self.next_message(lambda m: m.is_event(protocol, topic))

    async def receive_recording(self, stream_id: int = 1) -> Recording:
        """Wait until the stream ends (endOfStream true) or is closed, and return it."""
        recording = self.recordings.setdefault(stream_id, Recording(stream_id))
        await self.wait_until(lambda: recording.ended or recording.closed)
        return recording

    async def expect_silence(self, seconds: float) -> list[HDSMessage]:
        """Let the loop run for seconds and return the messages that arrived meanwhile."""
        before = len(self.messages)
        await asyncio.sleep(seconds)
        return self.messages[before:]
