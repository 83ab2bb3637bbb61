"""A home hub's HAP side, played by aiohomekit, the real HomeKit controller library.

Pairs over 127.0.0.1 without mDNS (docs/hksv-protocol.md §8), then reads, writes, writes with
response ("r": true), timed writes (/prepare + pid), subscriptions, /resource requests, and
derives the HDS keys from its own side of the pair-verify secret.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Generator
from contextlib import contextmanager
import json
import random
from typing import Any
from unittest.mock import patch

from aiohomekit.characteristic_cache import CharacteristicCacheMemory
from aiohomekit.controller.ip import connection as ip_connection
from aiohomekit.controller.ip.discovery import IpDiscovery
from aiohomekit.controller.ip.pairing import IpPairing
from aiohomekit.exceptions import HttpErrorResponse
from aiohomekit.model.categories import Categories
from aiohomekit.model.feature_flags import FeatureFlags
from aiohomekit.model.status_flags import StatusFlags
from aiohomekit.protocol import get_session_keys as _real_get_session_keys
from aiohomekit.zeroconf import HomeKitService

HOST = "127.0.0.1"
HAP_BASE = "-0000-1000-8000-0026BB765291"

# Pair-verify "derive" functions, by controller pairing id; replaced on every reconnect.
_DERIVES: dict[str, Callable[..., bytes]] = {}


def _capturing_get_session_keys(
    pairing_data: dict[str, Any], *args: Any, **kwargs: Any
) -> Generator:
    """Run aiohomekit's pair-verify and keep its key-derivation closure for HDS."""
    machine = _real_get_session_keys(pairing_data, *args, **kwargs)
    response = None
    while True:
        try:
            request = machine.send(response)
        except StopIteration as stop:
            _DERIVES[pairing_data["iOSPairingId"]] = stop.value[1]
            return stop.value
        response = yield request


@contextmanager
def capture_session_keys() -> Generator[None]:
    """Patch aiohomekit (test process only) so HubController can derive HDS keys."""
    with patch.object(ip_connection, "get_session_keys", _capturing_get_session_keys):
        yield


def short(uuid_text: str) -> str:
    """Return the short HAP form of a type string from /accessories."""
    text = uuid_text.upper()
    if text.endswith(HAP_BASE):
        return text[:8].lstrip("0")
    return text


class _Controller:
    """The attributes aiohomekit's pairing objects expect from a Controller."""

    def __init__(self) -> None:
        self._char_cache = CharacteristicCacheMemory()
        self.pairings: dict[str, IpPairing] = {}


class HubController:
    """A paired HomeKit controller talking to one accessory on 127.0.0.1."""

    def __init__(self, port: int, *, alias: str = "hub") -> None:
        """Prepare a controller for the accessory on ``port``."""
        self.port = port
        self.alias = alias
        self._controller = _Controller()
        self.pairing: IpPairing | None = None
        self.accessories: list[dict[str, Any]] = []
        # (iid, value) of every notification, in arrival order, until consumed.
        self._events: list[tuple[int, Any]] = []
        self._event_arrived = asyncio.Event()

    def _description(self) -> HomeKitService:
        """Describe the accessory as mDNS would (we connect by address instead)."""
        return HomeKitService(
            name="hksv",
            id="00:00:00:00:00:00",
            model="hksv",
            feature_flags=FeatureFlags(0),
            status_flags=StatusFlags.UNPAIRED,
            config_num=1,
            state_num=1,
            category=Categories.IP_CAMERA,
            protocol_version="1.1",
            type="_hap._tcp.local.",
            address=HOST,
            addresses=[HOST],
            port=self.port,
        )

    async def pair(self, setup_code: str) -> None:
        """Pair with the setup code and load /accessories."""
        discovery = IpDiscovery(self._controller, self._description())
        try:
            finish = await discovery.async_start_pairing(self.alias)
            self.pairing = await finish(setup_code)
        finally:
            await discovery.close()
        self.pairing.listeners.add(self._on_event)
        self.accessories = await self.pairing.list_accessories_and_characteristics()

    async def try_pair(self, setup_code: str) -> Exception | None:
        """Attempt to pair; return the error instead of raising."""
        try:
            await self.pair(setup_code)
        except Exception as err:  # the test inspects the failure
            return err
        return None

    def adopt(self, pairing_data: dict[str, Any]) -> None:
        """Use existing pairing data (a second controller added by the admin, or a restart)."""
        self.pairing = IpPairing(self._controller, pairing_data)
        self.pairing.listeners.add(self._on_event)

    @property
    def pairing_data(self) -> dict[str, Any]:
        """Return the stored pairing data (keys, ids, address)."""
        assert self.pairing is not None
        return dict(self.pairing.pairing_data)

    async def close(self) -> None:
        """Close the HAP session."""
        if self.pairing is not None:
            await self.pairing.close()

    def _on_event(self, event: dict[tuple[int, int], dict[str, Any]]) -> None:
        """Queue characteristic events (empty ones signal reconnects)."""
        for (_aid, iid), result in event.items():
            if "value" in result:
                self._events.append((iid, result["value"]))
        self._event_arrived.set()

    # -- lookups --------------------------------------------------------------------------

    async def refresh(self) -> list[dict[str, Any]]:
        """Reload /accessories."""
        assert self.pairing is not None
        self.accessories = await self.pairing.list_accessories_and_characteristics()
        return self.accessories

    def service(self, service_type: str) -> dict[str, Any]:
        """Return the first service of a short type (e.g. "204")."""
        for service in self.accessories[0]["services"]:
            if short(service["type"]) == service_type:
                return service
        raise KeyError(service_type)

    def char(self, service_type: str, char_type: str) -> dict[str, Any]:
        """Return a characteristic description by short service and characteristic type."""
        for char in self.service(service_type)["characteristics"]:
            if short(char["type"]) == char_type:
                return char
        raise KeyError((service_type, char_type))

    def iid(self, service_type: str, char_type: str) -> int:
        """Return the IID of a characteristic."""
        return int(self.char(service_type, char_type)["iid"])

    # -- requests -------------------------------------------------------------------------

    async def read(self, iid: int, aid: int = 1) -> dict[str, Any]:
        """Read one characteristic: {"value": ...} or {"status": ...}."""
        assert self.pairing is not None
        result = await self.pairing.get_characteristics([(aid, iid)])
        return dict(result[(aid, iid)])

    async def read_tlv(self, iid: int) -> bytes:
        """Read a TLV8 characteristic and return its bytes."""
        result = await self.read(iid)
        return base64.b64decode(result["value"])

    async def write(
        self, iid: int, value: Any, *, aid: int = 1, pid: int | None = None
    ) -> dict[str, Any]:
        """Write one value; return the per-characteristic result ({} when 204)."""
        body: dict[str, Any] = {"characteristics": [{"aid": aid, "iid": iid, "value": value}]}
        if pid is not None:
            body["pid"] = pid
        return await self._put(body)

    async def write_with_response(self, iid: int, value: Any, aid: int = 1) -> dict[str, Any]:
        """Write with "r": true and return the result including the response value."""
        return await self._put(
            {"characteristics": [{"aid": aid, "iid": iid, "value": value, "r": True}]}
        )

    async def timed_write(self, iid: int, value: Any, ttl_ms: int = 2500) -> dict[str, Any]:
        """Do /prepare then the write with the same pid."""
        assert self.pairing is not None
        pid = random.randrange(1, 2**32)
        prepared = await self.pairing.connection.put_json("/prepare", {"ttl": ttl_ms, "pid": pid})
        assert prepared == {"status": 0}, prepared
        return await self.write(iid, value, pid=pid)

    async def _put(self, body: dict[str, Any]) -> dict[str, Any]:
        """PUT /characteristics; return the single result or {} for 204."""
        assert self.pairing is not None
        await self.pairing._ensure_connected()
        response = await self.pairing.connection.put_json("/characteristics", body)
        if not response:
            return {}
        if "characteristics" in response:
            return dict(response["characteristics"][0])
        return dict(response)

    async def raw(
        self,
        method: str,
        target: str,
        body: bytes = b"",
        content_type: str = "application/hap+json",
    ) -> tuple[int, bytes]:
        """Send any request on the verified session; return (HTTP status, body)."""
        assert self.pairing is not None
        await self.pairing._ensure_connected()
        headers = (
            [("Content-Length", str(len(body))), ("Content-Type", content_type)] if body else []
        )
        try:
            response = await self.pairing.connection.request(method, target, headers, body or None)
        except HttpErrorResponse as err:
            response = err.response
        return response.code, bytes(response.body)

    async def snapshot(
        self, width: int = 640, height: int = 360, reason: int | None = None
    ) -> tuple[int, bytes]:
        """POST /resource; return (HTTP status, body)."""
        request: dict[str, Any] = {
            "aid": 1,
            "resource-type": "image",
            "image-width": width,
            "image-height": height,
        }
        if reason is not None:
            request["reason"] = reason
        return await self.raw("POST", "/resource", json.dumps(request).encode())

    async def subscribe(self, *iids: int) -> None:
        """Subscribe to events of these characteristics."""
        assert self.pairing is not None
        await self.pairing.subscribe([(1, iid) for iid in iids])

    async def next_event(self, iid: int, timeout: float = 10.0) -> Any:
        """Wait for an event of ``iid`` and return its value."""
        async with asyncio.timeout(timeout):
            while True:
                for index, (event_iid, value) in enumerate(self._events):
                    if event_iid == iid:
                        del self._events[index]
                        return value
                self._event_arrived.clear()
                await self._event_arrived.wait()

    async def remove_pairing(self, pairing_id: str | None = None) -> None:
        """Remove a pairing (our own by default) through /pairings."""
        assert self.pairing is not None
        await self.pairing.remove_pairing(pairing_id or self.pairing.pairing_data["iOSPairingId"])

    # -- HDS ------------------------------------------------------------------------------

    def hds_keys(self, controller_salt: bytes, accessory_salt: bytes) -> tuple[bytes, bytes]:
        """Return (accessory→controller, controller→accessory) keys of the current session."""
        derive = _DERIVES[self.pairing_data["iOSPairingId"]]
        salt = controller_salt + accessory_salt
        return (
            derive(salt, b"HDS-Read-Encryption-Key"),
            derive(salt, b"HDS-Write-Encryption-Key"),
        )
