"""The camera behind dataSend: the packets a recording yields, and driving its generator.

A failing delegate ends only its own stream: its errors become `HDSProtocolError`, and its
generator is closed on every exit path, told why when the stream failed (§5.2-§5.4).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
import contextlib
import logging
from typing import Any, NamedTuple, Protocol

from .errors import HDSProtocolError
from .messages import DataSendCloseReason

_LOGGER = logging.getLogger(__name__)


class RecordingPacket(NamedTuple):
    """One MP4 segment from the delegate: the init segment first, then moof+mdat fragments."""

    data: bytes | memoryview
    is_last: bool


class RecordingDelegate(Protocol):
    """The camera behind a DataStreamServer."""

    @property
    def recording_active(self) -> bool:
        """Return the recording Active characteristic."""

    @property
    def camera_active(self) -> bool:
        """Return HomeKitCameraActive."""

    @property
    def has_selected_configuration(self) -> bool:
        """Return True once the hub selected a recording configuration."""

    def handle_recording_stream_request(self, stream_id: int) -> AsyncIterator[RecordingPacket]:
        """Return the packets of a recording; called after the open response is sent."""

    def acknowledge_stream(self, stream_id: int) -> None:
        """Handle the hub's ack of endOfStream."""

    def close_recording_stream(self, stream_id: int, reason: DataSendCloseReason | None) -> None:
        """Handle the end of a stream; reason is None when the HDS socket was lost."""

    def recording_stream_refused(self, stream_id: int, reason: DataSendCloseReason) -> None:
        """Note a well-formed open that was refused (so the refusal can be shown)."""


async def next_packet(
    iterator: AsyncIterator[RecordingPacket], log_name: str
) -> tuple[memoryview, bool] | None:
    """Return the next packet as a byte view, None at the end; delegate errors as HDS."""
    try:
        packet = await anext(iterator)
    except StopAsyncIteration:
        return None
    except HDSProtocolError:
        raise
    except Exception as err:  # a failing delegate ends only its stream
        _LOGGER.exception("%s: recording delegate failed", log_name)
        raise HDSProtocolError(
            DataSendCloseReason.UNEXPECTED_FAILURE, f"delegate failed: {err!r}"
        ) from err
    try:
        data, is_last = packet
        view = memoryview(data).cast("B")
    except (TypeError, ValueError) as err:
        raise HDSProtocolError(
            DataSendCloseReason.UNEXPECTED_FAILURE, f"delegate yielded {type(packet)!r}"
        ) from err
    return view, bool(is_last)


async def close_iterator(
    iterator: AsyncIterator[RecordingPacket],
    failure: HDSProtocolError | None,
    log_name: str,
    stream_id: int,
) -> None:
    """Close the delegate's generator on every exit path, telling it why it failed."""
    athrow: Callable[[BaseException], Any] | None = getattr(iterator, "athrow", None)
    aclose: Callable[[], Any] | None = getattr(iterator, "aclose", None)
    try:
        if failure is not None and athrow is not None:
            # The generator learns the stream's failure (e.g. the hub stopped reading).
            with contextlib.suppress(HDSProtocolError, StopAsyncIteration):
                await athrow(failure)
        if aclose is not None:
            await aclose()
    except Exception:  # a failing delegate ends only its stream
        _LOGGER.exception(
            "%s: recording generator of stream %s failed to close",
            log_name,
            stream_id,
        )
