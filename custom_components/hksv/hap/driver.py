"""HAP-python driver for one HKSV camera: per-connection secrets, strict reads and writes.

HAP-python alone is not enough for HKSV (docs/home-assistant.md §3):
- HDS keys derive from the pair-verify shared secret, which HAP-python drops; a protocol
  subclass keeps it per connection (no global patching: HA's homekit shares the library).
- Writes need the writing controller (admin-only characteristics, which HAP connection asked
  for a data stream), specific HAP statuses (-70410 for an out-of-offer selection), refusal
  *before* a value is stored, and enforced timed writes (HAP-python accepts plain writes to
  ``tw`` characteristics; HAP-NodeJS answers -70410).
- ``/resource`` must refuse unverified connections and answer the snapshot rules with 207.
- ``/pairings`` from an unverified connection answers 500 instead of an auth error.

How each request is bounded, parsed and refused is ``request_guard.py``; this module holds
what the accessory is asked: who is on a connection, and the reads and writes themselves.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
import logging
import time
from typing import Any, Protocol, cast, override
from uuid import UUID

from pyhap.accessory_driver import AccessoryDriver
from pyhap.characteristic import Characteristic
from pyhap.const import STANDALONE_AID
from pyhap.hap_handler import HAPResponse
from pyhap.hap_server import HAPServer
from pyhap.util import callback as pyhap_callback

from .definitions import EV, PR, PW, TW, HapStatus, HapStatusError
from .request_guard import HksvProtocol, parse_aid_iid
from .srp import FixedWidthSrpServer
from .state_file import write_state_file

_LOGGER = logging.getLogger(__name__)

type ClientAddress = tuple[str, int]


@dataclass(frozen=True, slots=True)
class HapClient:
    """The controller on one HAP connection, as a write handler sees it."""

    address: ClientAddress
    client_uuid: UUID | None
    is_admin: bool
    shared_key: bytes | None
    # The accessory's own address on this connection (live view answers with it).
    local_address: str | None = None


class CharacteristicPolicy(Protocol):
    """What the accessory tells the driver about reading and writing one characteristic."""

    admin_write: bool
    read_as: Callable[[ClientAddress | None], Any] | None

    def read(self) -> Any:
        """Return the value to serve, or raise HapStatusError."""

    def write(self, value: Any, client: HapClient) -> Any:
        """Apply a controller write; return a write-response value or None."""


class HksvAccessoryProtocol(Protocol):
    """The parts of the camera accessory the driver calls."""

    def policy_for(self, char: Characteristic) -> CharacteristicPolicy | None:
        """Return the read/write policy of ``char`` (None: HAP-python defaults)."""

    async def async_handle_resource(
        self, request: dict[str, Any], response: HAPResponse, client: HapClient
    ) -> bytes:
        """Answer a /resource request, setting the status on ``response`` when refusing."""


class HksvServer(HAPServer):
    """HAP server that speaks through HksvProtocol; ``host=None`` listens on every address."""

    @override
    async def async_start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Start listening."""
        self.loop = loop
        self.server = await loop.create_server(
            lambda: HksvProtocol(loop, self.connections, self.accessory_handler),
            self._addr_port[0],
            self._addr_port[1],
        )
        self.async_cleanup_connections()


class HksvDriver(AccessoryDriver):
    """AccessoryDriver for one HKSV camera accessory (AID 1)."""

    def __init__(
        self,
        *,
        listen_address: str | None,
        on_paired_changed: Callable[[bool], None],
        on_connection_lost: Callable[[ClientAddress], None],
        **kwargs: Any,
    ) -> None:
        """Create the driver; runs in an executor (it generates keys)."""
        super().__init__(**kwargs)
        self.http_server = HksvServer((listen_address, self.state.port), self)
        self._on_paired_changed = on_paired_changed
        self._on_connection_lost = on_connection_lost
        # Kept per address because HAP-python may drop the connection object before
        # connection_lost runs (docs/home-assistant.md §3.5).
        self._shared_keys: dict[ClientAddress, bytes] = {}
        # Delayed responses (snapshots) in flight; async_stop cancels them.
        self._resource_tasks: set[asyncio.Task[bytes]] = set()

    @override
    async def async_start(self) -> None:
        """Start; a start that fails after the HAP port is bound frees the port again.

        HAP-python binds first and registers mDNS afterwards; when the registration fails
        its ``async_stop`` is never reached, and the bound port would block every retry.
        """
        try:
            await super().async_start()
        except BaseException:
            if self.http_server.server is not None:
                self.http_server.async_stop()
            raise

    @override
    async def async_stop(self) -> None:
        """Stop serving, then cancel the delayed responses still in flight."""
        await super().async_stop()
        tasks = list(self._resource_tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def async_create_resource_task(self, coro: Coroutine[Any, Any, bytes]) -> asyncio.Task[bytes]:
        """Run a delayed response (a snapshot) as a task that async_stop ends."""
        task = asyncio.get_running_loop().create_task(coro, name="hksv HAP resource")
        self._resource_tasks.add(task)
        task.add_done_callback(self._resource_tasks.discard)
        return task

    @property
    def hksv_accessory(self) -> HksvAccessoryProtocol:
        """Return the camera accessory."""
        return cast("HksvAccessoryProtocol", self.accessory)

    @override
    def persist(self) -> None:
        """Write keys and pairings durably, with a last good copy (state_file.py); executor."""
        write_state_file(self.persist_file, self.encoder, self.state)

    @override
    def setup_srp_verifier(self) -> None:
        """Start a pair-setup SRP session with fixed-width numbers."""
        self.srp_verifier = FixedWidthSrpServer(self.state.pincode)

    def remember_shared_key(self, address: ClientAddress, key: bytes) -> None:
        """Store the pair-verify secret of a connection."""
        self._shared_keys[address] = key

    def client_for(self, address: ClientAddress) -> HapClient:
        """Return who is on the connection from ``address``."""
        proto = self.http_server.connections.get(address)
        client_uuid = proto.handler.client_uuid if proto is not None else None
        transport = proto.transport if proto is not None else None
        sockname = transport.get_extra_info("sockname") if transport is not None else None
        return HapClient(
            address=address,
            client_uuid=client_uuid,
            is_admin=client_uuid is not None and self.state.is_admin(client_uuid),
            shared_key=self._shared_keys.get(address),
            local_address=str(sockname[0]) if sockname else None,
        )

    @override
    def connection_lost(self, client: ClientAddress) -> None:
        """Drop subscriptions, prepared writes and everything bound to the connection."""
        super().connection_lost(client)
        self._shared_keys.pop(client, None)
        self._on_connection_lost(client)

    @override
    @pyhap_callback
    def pair(
        self, client_username_bytes: bytes, client_public: bytes, client_permissions: bytes
    ) -> bool:
        """Record a new pairing and tell the bridge."""
        was_paired = self.state.paired
        result = bool(super().pair(client_username_bytes, client_public, client_permissions))
        if not was_paired and self.state.paired:
            self._on_paired_changed(True)
        return result

    @override
    @pyhap_callback
    def unpair(self, client_uuid: UUID) -> None:
        """Remove a pairing; tell the bridge when the last one is gone."""
        super().unpair(client_uuid)
        if not self.state.paired:
            self._on_paired_changed(False)

    def read_characteristics(
        self, ids: list[str], client_addr: ClientAddress | None = None
    ) -> list[dict[str, Any]]:
        """Return one result per ``"aid.iid"``, with a value or a HAP status.

        A policy with ``read_as`` answers per connection (live view's SetupEndpoints).
        """
        results = []
        for aid_iid in ids:
            aid, iid = parse_aid_iid(aid_iid)
            result: dict[str, Any] = {"aid": aid, "iid": iid}
            char = self._characteristic(aid, iid)
            if char is None:
                result["status"] = HapStatus.RESOURCE_DOES_NOT_EXIST
            elif PR not in char.properties["Permissions"]:
                result["status"] = HapStatus.WRITE_ONLY_CHARACTERISTIC
            else:
                try:
                    policy = self.hksv_accessory.policy_for(char)
                    if policy is None:
                        result["value"] = char.get_value()
                    elif policy.read_as is not None:
                        result["value"] = policy.read_as(client_addr)
                    else:
                        result["value"] = policy.read()
                    result["status"] = HapStatus.SUCCESS
                except HapStatusError as err:
                    result["status"] = err.status
            results.append(result)
        return results

    def write_characteristics(
        self, query: dict[str, Any], client_addr: ClientAddress
    ) -> dict[str, Any] | None:
        """Apply a PUT /characteristics; return None when everything simply succeeded."""
        timed_ok = False
        if "pid" in query:
            expires = self.prepared_writes.get(client_addr, {}).pop(query["pid"], None)
            timed_ok = expires is not None and time.time() <= expires
        client = self.client_for(client_addr)
        results = []
        for item in query["characteristics"]:
            result = self._write_one(item, client, timed_ok)
            results.append(result)
        if all(r["status"] == HapStatus.SUCCESS and "value" not in r for r in results):
            return None
        return {"characteristics": results}

    def _write_one(self, item: Any, client: HapClient, timed_ok: bool) -> dict[str, Any]:
        """Apply one characteristic write or subscription."""
        if not isinstance(item, dict):
            return {"status": HapStatus.INVALID_VALUE_IN_REQUEST}
        aid, iid = item.get("aid"), item.get("iid")
        result: dict[str, Any] = {"aid": aid, "iid": iid, "status": HapStatus.SUCCESS}
        char = self._characteristic(aid, iid)
        if char is None:
            result["status"] = HapStatus.RESOURCE_DOES_NOT_EXIST
            return result
        perms = char.properties["Permissions"]
        if "ev" in item:
            if EV not in perms:
                result["status"] = HapStatus.NOTIFICATION_NOT_SUPPORTED
                return result
            topic = f"{aid}.{iid}"
            self.async_subscribe_client_topic(client.address, topic, bool(item["ev"]))
        if "value" not in item:
            return result
        policy = self.hksv_accessory.policy_for(char)
        status = _write_refusal(perms, policy, client, timed_ok)
        if status is not None:
            result["status"] = status
            return result
        try:
            if policy is not None:
                response = policy.write(item["value"], client)
            else:
                response = char.client_update_value(item["value"], client.address)
        except HapStatusError as err:
            _LOGGER.info("%s: write to %s refused: %s", client.address, char.display_name, err)
            result["status"] = err.status
            return result
        except ValueError as err:
            _LOGGER.info("%s: invalid value for %s: %s", client.address, char.display_name, err)
            result["status"] = HapStatus.INVALID_VALUE_IN_REQUEST
            return result
        if response is not None and item.get("r"):
            result["value"] = response
        return result

    def _characteristic(self, aid: Any, iid: Any) -> Characteristic | None:
        """Return the characteristic at ``aid``/``iid``, or None."""
        if aid != STANDALONE_AID or not isinstance(iid, int) or isinstance(iid, bool):
            return None
        obj = self.accessory.iid_manager.get_obj(iid) if self.accessory else None
        return obj if isinstance(obj, Characteristic) else None


def _write_refusal(
    perms: list[str], policy: CharacteristicPolicy | None, client: HapClient, timed_ok: bool
) -> HapStatus | None:
    """Return why a write may not happen at all, before any value is looked at."""
    if PW not in perms:
        return HapStatus.READ_ONLY_CHARACTERISTIC
    if policy is not None and policy.admin_write and not client.is_admin:
        return HapStatus.INSUFFICIENT_PRIVILEGES
    if TW in perms and not timed_ok:
        # HAP-NodeJS answers a plain write to a timed-write characteristic with -70410.
        return HapStatus.INVALID_VALUE_IN_REQUEST
    return None
