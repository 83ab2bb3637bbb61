"""HDS message routing on one connection: requests and events to their handlers (§5.1).

The control protocol is always routed: hello to the connection, which it makes ready, and
version answered here. Requests nobody handles get an error status (ADK, not HN); such events
are ignored.
"""

from __future__ import annotations

from collections.abc import Callable
import logging
import reprlib
from typing import TYPE_CHECKING, Any

from .errors import HDSError, OpackError
from .messages import (
    HDS_VERSION,
    PROTOCOL_CONTROL,
    TOPIC_HELLO,
    TOPIC_VERSION,
    HDSStatus,
    Header,
    MessageType,
)

if TYPE_CHECKING:
    from .connection import HDSConnection

_LOGGER = logging.getLogger(__name__)

type RequestHandler = Callable[[HDSConnection, int, dict[Any, Any]], None]
type EventHandler = Callable[[HDSConnection, dict[Any, Any]], None]


def answer_version(connection: HDSConnection, request_id: int, message: dict[Any, Any]) -> None:
    """Answer control/version with HDS 1.1 like the ADK (HN does not answer)."""
    connection.send_response(
        PROTOCOL_CONTROL,
        TOPIC_VERSION,
        request_id,
        HDSStatus.SUCCESS,
        {"version": HDS_VERSION},
    )


class MessageRouter:
    """The handlers of one connection, by (protocol, topic)."""

    __slots__ = ("_event_handlers", "_log_name", "_protocols", "_request_handlers")

    def __init__(self, log_name: str, hello: RequestHandler) -> None:
        """Route the control protocol: hello to the given handler, version answered here."""
        self._log_name = log_name
        self._request_handlers: dict[tuple[str, str], RequestHandler] = {
            (PROTOCOL_CONTROL, TOPIC_HELLO): hello,
            (PROTOCOL_CONTROL, TOPIC_VERSION): answer_version,
        }
        self._event_handlers: dict[tuple[str, str], EventHandler] = {}
        self._protocols: set[str] = {PROTOCOL_CONTROL}

    def add_request_handler(self, protocol: str, topic: str, handler: RequestHandler) -> None:
        """Route requests for (protocol, topic) to handler."""
        self._request_handlers[(protocol, topic)] = handler
        self._protocols.add(protocol)

    def add_event_handler(self, protocol: str, topic: str, handler: EventHandler) -> None:
        """Route events for (protocol, topic) to handler."""
        self._event_handlers[(protocol, topic)] = handler
        self._protocols.add(protocol)

    def route(
        self,
        connection: HDSConnection,
        raw_header: dict[Any, Any],
        header: Header | None,
        message: dict[Any, Any],
    ) -> None:
        """Dispatch one message by kind; unparsable headers and responses are ignored."""
        if header is None:
            _LOGGER.warning(
                "%s: ignoring HDS message with header %s",
                self._log_name,
                reprlib.repr(raw_header),
            )
        elif header.type is MessageType.REQUEST:
            self._dispatch_request(connection, header, message)
        elif header.type is MessageType.EVENT:
            self._dispatch_event(connection, header, message)
        else:
            _LOGGER.debug("%s: ignoring unsolicited HDS response %r", self._log_name, header)

    def _dispatch_request(
        self, connection: HDSConnection, header: Header, message: dict[Any, Any]
    ) -> None:
        """Call the request's handler, or answer with an error status (ADK, not HN)."""
        handler = self._request_handlers.get((header.protocol, header.topic))
        if TYPE_CHECKING:
            assert header.id is not None
        if handler is None:
            if header.protocol in self._protocols:
                status = HDSStatus.HEADER_ERROR
            else:
                status = HDSStatus.MISSING_PROTOCOL
            _LOGGER.info(
                "%s: no handler for HDS request %s/%s, answering %s",
                self._log_name,
                header.protocol,
                header.topic,
                status.name,
            )
            connection.send_response(header.protocol, header.topic, header.id, status, {})
            return
        self._call_handler(handler, header, connection, header.id, message)

    def _dispatch_event(
        self, connection: HDSConnection, header: Header, message: dict[Any, Any]
    ) -> None:
        """Call the event's handler; events nobody handles are ignored."""
        handler = self._event_handlers.get((header.protocol, header.topic))
        if handler is None:
            _LOGGER.debug(
                "%s: ignoring HDS event %s/%s", self._log_name, header.protocol, header.topic
            )
            return
        self._call_handler(handler, header, connection, message)

    def _call_handler(self, handler: Callable[..., None], header: Header, *args: Any) -> None:
        """Run one handler so that a failing consumer cannot kill the session."""
        try:
            handler(*args)
        except HDSError, OpackError:
            raise
        except Exception:  # per-handler isolation (STYLE Layer 2 §10)
            _LOGGER.exception(
                "%s: unexpected error in handler %r for %s/%s",
                self._log_name,
                handler,
                header.protocol,
                header.topic,
            )
