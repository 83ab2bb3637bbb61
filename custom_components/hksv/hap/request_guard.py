"""Request hardening for every HAP connection: bounded, strictly parsed, quietly refused.

What an unauthenticated or misbehaving controller sends must never reach HAP-python's handlers
in a shape that makes them answer 500 with a traceback, log an ERROR per attempt, or buffer
without bound (docs/architecture.md "HAP side"):
- unknown paths and methods, non-ASCII headers: a HAP status and one debug line;
- malformed pairing messages and ``/prepare`` bodies: 400 and -70410;
- pair-verify from a controller that was never paired (or with a bad proof): refused before
  HAP-python's step, which would log every paired key;
- ``/resource`` and ``/pairings`` only for verified (admin) controllers;
- request bodies and headers bounded while they arrive (``http_limits.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from http import HTTPStatus
import json
import logging
import time
from typing import TYPE_CHECKING, Final, TypeIs, cast, override
from urllib.parse import parse_qs, urlparse
from uuid import UUID

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
import h11
from pyhap import tlv
from pyhap.hap_handler import (
    HAP_TLV_STATES,
    HAP_TLV_TAGS,
    HAPResponse,
    HAPServerHandler,
    UnprivilegedRequestException,
)
from pyhap.hap_protocol import HAPServerProtocol
from pyhap.util import to_hap_json

from .definitions import HapStatus
from .http_limits import MAX_CHARACTERISTICS_BODY, BoundedConnection, unverified_admission
from .srp import with_fixed_width_numbers

if TYPE_CHECKING:
    from .driver import HksvDriver

_LOGGER = logging.getLogger(__name__)

# A controller batch is a handful of characteristics; refuse absurd requests early.
MAX_CHARACTERISTICS_PER_REQUEST: Final = 100
MAX_REQUEST_BODY: Final = MAX_CHARACTERISTICS_BODY
# An "aid.iid" number; longer digit strings are refused before int() (and its digit limit).
MAX_ID_DIGITS: Final = 20
# Prepared timed writes kept per connection; the oldest is forgotten beyond this.
MAX_PREPARED_WRITES: Final = 16
# Longest timed-write window a controller may ask for (HAP-NodeJS uses a few seconds).
MAX_PREPARE_TTL_MS: Final = 60_000
# What a malformed request can raise from HAP-python's pairing steps and TLV parser.
_MALFORMED_INPUT: Final = (KeyError, IndexError, ValueError, TypeError, InvalidTag)


class HksvHandler(HAPServerHandler):
    """HAP request handler with hardened /resource, /pairings and characteristic parsing."""

    # Pair-setup with fixed-width SRP numbers (see srp.py): HAP-python's own steps, re-bound.
    _pairing_one = with_fixed_width_numbers(HAPServerHandler._pairing_one)
    _pairing_three = with_fixed_width_numbers(HAPServerHandler._pairing_three)
    _pairing_four = with_fixed_width_numbers(HAPServerHandler._pairing_four)
    _pairing_five = with_fixed_width_numbers(HAPServerHandler._pairing_five)

    @property
    def driver(self) -> HksvDriver:
        """Return the driver this handler serves."""
        return cast("HksvDriver", self.accessory_handler)

    @override
    def dispatch(self, request: h11.Request, body: bytes | None = None) -> HAPResponse:
        """Refuse what HAP-python would answer with a 500 and a traceback, then dispatch.

        HAP-python logs every handler exception with its traceback; an unauthenticated peer
        must not be able to fill the log, so unknown paths, unknown methods and non-ASCII
        headers are answered here with a HAP status and one debug line.
        """
        try:
            method = request.method.decode("ascii")
            path = urlparse(request.target.decode("ascii")).path
            for name, value in request.headers:
                name.decode("ascii")
                value.decode("ascii")
        except UnicodeDecodeError:
            return self._refusal(HTTPStatus.BAD_REQUEST, HapStatus.INVALID_VALUE_IN_REQUEST)
        handlers = self.HANDLERS.get(method)
        if handlers is None:
            _LOGGER.debug("%s: unknown method %r refused", self.client_address, method)
            return self._refusal(HTTPStatus.METHOD_NOT_ALLOWED, HapStatus.INVALID_VALUE_IN_REQUEST)
        if path not in handlers:
            _LOGGER.debug("%s: unknown path %r refused", self.client_address, path[:64])
            return self._refusal(HTTPStatus.NOT_FOUND, HapStatus.RESOURCE_DOES_NOT_EXIST)
        return cast("HAPResponse", super().dispatch(request, body))

    def _refusal(self, http_status: HTTPStatus, status: HapStatus) -> HAPResponse:
        """Return a response carrying only a HAP status."""
        response = HAPResponse()
        self.response = response
        self._send_status(http_status, status)
        self.response = None
        return response

    @override
    def handle_pairing(self) -> None:
        """Pair-setup; a malformed message gets 400 and -70410 instead of a 500."""
        self._guard_malformed(super().handle_pairing, "/pair-setup")

    @override
    def handle_pair_verify(self) -> None:
        """Pair-verify; a malformed message gets 400 and -70410 instead of a 500."""
        self._guard_malformed(super().handle_pair_verify, "/pair-verify")

    @override
    def _pair_verify_two(self, tlv_objects: dict[bytes, bytes]) -> None:
        """Refuse an unknown controller or a bad proof with one debug line.

        HAP-python logs an ERROR for each (listing every paired public key), which anyone on
        the network could repeat at will. The step is checked here first and only a
        controller that will pass is handed on.
        """
        client = self._verify_two_client(tlv_objects)
        if client is None:
            _LOGGER.debug("%s: pair-verify from an unknown controller", self.client_address)
            self._send_authentication_error_tlv_response(HAP_TLV_STATES.M4)
            return
        super()._pair_verify_two(tlv_objects)

    def _verify_two_client(self, tlv_objects: dict[bytes, bytes]) -> UUID | None:
        """Return the paired controller whose proof opens pair-verify M3, or None."""
        context = self.enc_context
        if context is None:
            return None
        try:
            plaintext = ChaCha20Poly1305(context["pre_session_key"]).decrypt(
                self.PVERIFY_2_NONCE, bytes(tlv_objects[HAP_TLV_TAGS.ENCRYPTED_DATA]), b""
            )
            inner = tlv.decode(plaintext)
            identifier = bytes(inner[HAP_TLV_TAGS.USERNAME])
            client_uuid = UUID(identifier.decode())
            known = self.state.paired_clients.get(client_uuid)
            if known is None:
                return None
            accessory_public = context["public_key"].public_bytes(Encoding.Raw, PublicFormat.Raw)
            Ed25519PublicKey.from_public_bytes(known).verify(
                bytes(inner[HAP_TLV_TAGS.PROOF]),
                context["client_public"] + identifier + accessory_public,
            )
        except (*_MALFORMED_INPUT, InvalidSignature):
            return None
        return client_uuid

    def _guard_malformed(self, step: Callable[[], None], path: str) -> None:
        """Run a pairing step; answer malformed input with one debug line and a status."""
        response = self.response
        try:
            step()
        except _MALFORMED_INPUT as err:
            _LOGGER.debug("%s: malformed %s refused: %r", self.client_address, path, err)
            if response is not None:
                response.headers.clear()
                response.shared_key = None
                response.pairing_changed = False
            self._send_status(HTTPStatus.BAD_REQUEST, HapStatus.INVALID_VALUE_IN_REQUEST)
            return
        if response is not None and not response.body and response.status_code >= 500:
            # HAP-python answers an unknown pairing state with an empty 500.
            _LOGGER.debug("%s: %s in an unknown state refused", self.client_address, path)
            self._send_status(HTTPStatus.BAD_REQUEST, HapStatus.INVALID_VALUE_IN_REQUEST)

    @override
    def handle_prepare(self) -> None:
        """Record a timed-write window; anything but ``{"ttl": int, "pid": int}`` gets 400."""
        if not self.is_encrypted:
            raise UnprivilegedRequestException
        try:
            request = json.loads((self.request_body or b"").decode())
        except UnicodeDecodeError, ValueError:
            request = None
        ttl = request.get("ttl") if isinstance(request, dict) else None
        pid = request.get("pid") if isinstance(request, dict) else None
        if not (_is_int(ttl) and 0 < ttl <= MAX_PREPARE_TTL_MS and _is_int(pid) and pid >= 0):
            _LOGGER.debug("%s: malformed /prepare refused", self.client_address)
            self._send_status(HTTPStatus.BAD_REQUEST, HapStatus.INVALID_VALUE_IN_REQUEST)
            return
        prepared = self.driver.prepared_writes.setdefault(self.client_address, {})
        prepared.pop(pid, None)
        while len(prepared) >= MAX_PREPARED_WRITES:
            del prepared[next(iter(prepared))]
        prepared[pid] = time.time() + ttl / 1000
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", self.JSON_RESPONSE_TYPE)
        self.end_response(to_hap_json({"status": HapStatus.SUCCESS}))

    @override
    def handle_resource(self) -> None:
        """Serve a snapshot only to a pair-verified controller, through the accessory's rules."""
        if not self.is_encrypted:
            raise UnprivilegedRequestException
        try:
            request = json.loads((self.request_body or b"").decode())
        except UnicodeDecodeError, ValueError:
            request = None
        if not isinstance(request, dict) or request.get("resource-type") != "image":
            self._send_status(HTTPStatus.BAD_REQUEST, HapStatus.INVALID_VALUE_IN_REQUEST)
            return
        response = self.response
        if TYPE_CHECKING:
            assert response is not None
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "image/jpeg")
        response.task = self.driver.async_create_resource_task(
            self.driver.hksv_accessory.async_handle_resource(
                request, response, self.driver.client_for(self.client_address)
            )
        )

    @override
    def handle_pairings(self) -> None:
        """Refuse pairing changes from unverified or non-admin controllers with the TLV error."""
        if (
            not self.is_encrypted
            or self.client_uuid is None
            or not self.state.is_admin(self.client_uuid)
        ):
            self._send_authentication_error_tlv_response(b"\x02")
            return
        try:
            super().handle_pairings()
        except KeyError, IndexError, ValueError:
            _LOGGER.warning("%s: malformed /pairings request refused", self.client_address)
            if self.response is not None:
                self.response.headers.clear()
            self._send_authentication_error_tlv_response(b"\x02")

    @override
    def handle_get_characteristics(self) -> None:
        """Answer reads; unparseable ids get a clear status instead of a 500."""
        if not self.is_encrypted:
            raise UnprivilegedRequestException
        if TYPE_CHECKING:
            assert self.parsed_url is not None
        ids = parse_qs(self.parsed_url.query).get("id", [""])[0].split(",")
        if not ids or len(ids) > MAX_CHARACTERISTICS_PER_REQUEST:
            self._send_status(HTTPStatus.BAD_REQUEST, HapStatus.INVALID_VALUE_IN_REQUEST)
            return
        results = self.driver.read_characteristics(ids, self.client_address)
        if any(r["status"] != HapStatus.SUCCESS for r in results):
            self.send_response(HTTPStatus.MULTI_STATUS)
        else:
            self.send_response(HTTPStatus.OK)
            for result in results:
                del result["status"]
        self.send_header("Content-Type", self.JSON_RESPONSE_TYPE)
        self.end_response(to_hap_json({"characteristics": results}))

    @override
    def handle_set_characteristics(self) -> None:
        """Apply writes through the driver; malformed JSON gets 400 and -70410."""
        if not self.is_encrypted:
            raise UnprivilegedRequestException
        body = self.request_body or b""
        try:
            if len(body) > MAX_REQUEST_BODY:
                raise ValueError("request too large")
            query = json.loads(body.decode())
            chars = query["characteristics"]
            if not isinstance(chars, list) or len(chars) > MAX_CHARACTERISTICS_PER_REQUEST:
                raise ValueError("bad characteristics list")
        except UnicodeDecodeError, ValueError, KeyError, TypeError:
            self._send_status(HTTPStatus.BAD_REQUEST, HapStatus.INVALID_VALUE_IN_REQUEST)
            return
        response = self.driver.write_characteristics(query, self.client_address)
        if response is None:
            self.send_response(HTTPStatus.NO_CONTENT)
            return
        self.send_response(HTTPStatus.MULTI_STATUS)
        self.send_header("Content-Type", self.JSON_RESPONSE_TYPE)
        self.end_response(to_hap_json(response))

    def _send_status(self, http_status: HTTPStatus, status: HapStatus) -> None:
        """Answer with a HAP status body."""
        self.send_response_with_status(http_status, int(status))


class HksvProtocol(HAPServerProtocol):
    """A HAP connection that keeps its pair-verify shared secret for HDS key derivation."""

    hap_shared_key: bytes | None = None

    @override
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Install the hardened handler."""
        super().connection_made(transport)
        self.handler = HksvHandler(self.accessory_driver, self.peername)
        # Before any data: bound headers and refuse oversized bodies while they arrive.
        self.conn = BoundedConnection()
        admit, evict = unverified_admission(self, list(self.connections.values()))
        if evict is not None:
            _LOGGER.debug("%s: closing idle unverified HAP connection", evict.peername)
            evict.close()
        if not admit:
            _LOGGER.debug("%s: too many unverified HAP connections, refused", self.peername)
            self.close()

    @override
    def close(self) -> None:
        """Close, and drop the pending event batch (HAP-python leaves its timer running)."""
        timer: asyncio.TimerHandle | None = self._event_timer  # type: ignore[has-type]
        if timer is not None:
            timer.cancel()
            self._event_timer = None
        super().close()

    @override
    def _handle_invalid_conn_state(self, message: Exception | str) -> bool:
        """Answer a refused request (413, 431, 400) when possible, log one line, close."""
        _LOGGER.debug("%s: HAP request refused: %s", self.peername, message)
        transport = self.transport
        if (
            isinstance(message, h11.RemoteProtocolError)
            and transport is not None
            and not transport.is_closing()
        ):
            try:
                head = self.conn.send(
                    h11.Response(
                        status_code=message.error_status_hint,
                        headers=[("Connection", "close"), ("Content-Length", "0")],
                    )
                )
                self.write((head or b"") + (self.conn.send(h11.EndOfMessage()) or b""))
            except h11.LocalProtocolError:
                pass  # mid-response already: just close
        self.close()
        return False

    @override
    def _handle_response_ready(self, task: asyncio.Task[bytes]) -> None:
        """Send a delayed response; one cancelled by the driver's stop is dropped."""
        if task.cancelled():
            self.response = None
            return
        super()._handle_response_ready(task)

    @override
    def _process_response(self, response: HAPResponse) -> None:
        """Keep the shared secret before HAP-python turns it into session keys and drops it."""
        if response.shared_key:
            self.hap_shared_key = bytes(response.shared_key)
            if self.peername is not None:
                driver = cast("HksvDriver", self.accessory_driver)
                driver.remember_shared_key(self.peername, self.hap_shared_key)
        super()._process_response(response)


def parse_aid_iid(text: str) -> tuple[int | str, int | str]:
    """Split ``"1.9"``; keep the raw text where it is not a plain ASCII number."""
    aid, _, iid = text.partition(".")
    return _parse_id(aid), _parse_id(iid)


def _parse_id(text: str) -> int | str:
    """Return an id as int; Unicode digits ("²") and absurd lengths stay text (-70409)."""
    if text.isascii() and text.isdigit() and len(text) <= MAX_ID_DIGITS:
        return int(text)
    return text[:MAX_ID_DIGITS]


def _is_int(value: object) -> TypeIs[int]:
    """Return True for a JSON integer (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)
