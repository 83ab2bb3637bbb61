"""Fixtures for the HDS tests: a real DataStreamServer on 127.0.0.1 and hub clients."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Awaitable, Callable, Hashable
from typing import Any

import pytest

from custom_components.hksv.hds import DataStreamServer
from tests.hub.hds_client import HDSClient

from .common import ACCESSORY_SALT, CONTROLLER_SALT, SHARED_SECRET, FakeDelegate

HOST = "127.0.0.1"

type ConnectFactory = Callable[..., Awaitable[HDSClient]]


@pytest.fixture
def delegate() -> FakeDelegate:
    """Return a delegate that is ready to record, with no packets."""
    return FakeDelegate()


@pytest.fixture
async def server(socket_enabled: None, delegate: FakeDelegate) -> AsyncGenerator[DataStreamServer]:
    """Return a started server whose accessory salt is the golden vectors' one."""
    server = DataStreamServer(
        host=HOST, delegate=delegate, log_name="Test camera", salt_factory=salt_factory
    )
    await server.async_start()
    yield server
    await server.async_stop()


def salt_factory(length: int) -> bytes:
    """Return the fixed accessory salt of hds_key_derivation."""
    assert length == len(ACCESSORY_SALT)
    return ACCESSORY_SALT


@pytest.fixture
async def connect(server: DataStreamServer) -> AsyncGenerator[ConnectFactory]:
    """Return a factory: prepare a session, connect a hub client and (optionally) say hello."""
    clients: list[HDSClient] = []

    async def factory(
        hap_connection: Hashable = "hap-1",
        *,
        hello: bool = True,
        controller_salt: bytes = CONTROLLER_SALT,
        prepare: bool = True,
        **connect_kwargs: Any,
    ) -> HDSClient:
        salt = ACCESSORY_SALT
        if prepare:
            salt = server.prepare_session(hap_connection, SHARED_SECRET, controller_salt)
        client = HDSClient.from_shared_secret(
            HOST, server.port, SHARED_SECRET, controller_salt, salt, name=f"hub-{len(clients)}"
        )
        clients.append(client)
        await client.connect(**connect_kwargs)
        if hello:
            response = await client.hello()
            assert response.status == 0
        return client

    yield factory
    for client in clients:
        client.abort()
    for client in clients:
        await client.wait_closed()
