"""What a LAN peer or a buggy controller sends cannot exhaust HA, hide a hub's stream, or 500.

Every attack runs over real sockets against the real HAP-python server and the HDS listener of
a loaded entry; paired controllers are aiohomekit. Memory is measured with tracemalloc in
this process (Home Assistant's process). Attackers on another address use 127.0.0.2, which
Linux routes over loopback.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncGenerator, Callable, Iterator
from contextlib import contextmanager
import json
import logging
import tracemalloc
from typing import Any
from unittest.mock import patch
import uuid

from aiohomekit.exceptions import AuthenticationError
from cryptography.hazmat.primitives.asymmetric import ed25519
from homeassistant.config_entries import ConfigEntryState
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import FlowResultType, InvalidData
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.const import ADDRESS_ALL, CONF_ADDRESS, DEFAULT_OPTIONS
from custom_components.hksv.hap.definitions import HapStatus
from custom_components.hksv.hds import server as hds_server
from tests.hub.controller import HOST
from tests.hub.emulator import HomeHub
from tests.hub.hds_client import HDSClient
from tests.test_accessory import _user_controller

OTHER_HOST = "127.0.0.2"
MiB = 1024 * 1024
# Growth allowed while an attack runs: the bound is per request / per connection, far below.
MEMORY_BOUND = 3 * MiB
CLOSE_TIMEOUT = 30.0


@contextmanager
def memory_growth() -> Iterator[Callable[[], int]]:
    """Trace allocations; yield a function returning the peak growth so far, in bytes."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    try:
        yield lambda: tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def no_tracebacks(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Return what was logged at WARNING and above (HAP-python's tracebacks are ERRORs).

    DEBUG records with exc_info come from the attacking client's own asyncio transport, and
    aiohomekit (the controller side of these tests) logs its own failed connections.
    """
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and not r.name.startswith("aiohomekit")
    ]


async def _exchange(port: int, request: bytes, *, host: str = HOST) -> bytes:
    """Send raw bytes on a new unverified HAP connection; return all until the server closes."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), CLOSE_TIMEOUT)
    finally:
        writer.close()


async def _closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """Return True once the peer has closed (EOF or reset) within the generous timeout."""
    try:
        async with asyncio.timeout(CLOSE_TIMEOUT):
            while await reader.read(65536):
                pass
    except ConnectionError:
        return True
    except TimeoutError:
        return False
    return True


def _status_of(response: bytes) -> tuple[int, dict[str, Any] | None]:
    """Return the HTTP status and the HAP JSON body (if any) of a raw response."""
    head, _, body = response.partition(b"\r\n\r\n")
    code = int(head.split(b" ", 2)[1])
    return code, json.loads(body) if body.startswith(b"{") else None


# -- 1. HAP request size -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path", "declared"),
    [
        ("POST", "/pair-setup", 314572800),
        ("POST", "/pair-verify", 10 * MiB),
        ("PUT", "/characteristics", 65 * 1024 + 1),
        ("POST", "/identify", 4096),
    ],
)
async def test_declared_oversized_body_refused_before_buffering(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
    method: str,
    path: str,
    declared: int,
) -> None:
    """An unpaired peer declaring a huge body gets 413 from the headers alone, then a close."""
    bridge = init_integration.runtime_data
    caplog.clear()
    head = f"{method} {path} HTTP/1.1\r\nHost: hksv\r\nContent-Length: {declared}\r\n\r\n"
    response = await _exchange(bridge.port, head.encode())
    assert response.startswith(b"HTTP/1.1 413"), response[:80]
    assert no_tracebacks(caplog) == []


async def test_streamed_body_refused_with_bounded_memory(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """A chunked /pair-setup body is cut off at its limit: 16 MiB sent, HA grows < 3 MiB."""
    bridge = init_integration.runtime_data
    caplog.clear()
    chunk = b"10000\r\n" + bytes(0x10000) + b"\r\n"  # one 64 KiB HTTP chunk
    with memory_growth() as growth:
        reader, writer = await asyncio.open_connection(HOST, bridge.port)
        writer.write(
            b"POST /pair-setup HTTP/1.1\r\nHost: hksv\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        try:
            for _ in range(256):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass  # the accessory closed the connection: the point of the test
        closed = await _closed_by_peer(reader)
        writer.close()
        peak = growth()
    assert closed
    assert peak < MEMORY_BOUND, f"HA grew by {peak / MiB:.1f} MiB"
    assert no_tracebacks(caplog) == []
    # The accessory still pairs afterwards.
    hub = HomeHub(bridge.port)
    await hub.pair(bridge.setup_code)
    assert bridge.paired
    await hub.close()


async def test_endless_headers_refused(
    hass: HomeAssistant, init_integration: MockConfigEntry, caplog: pytest.LogCaptureFixture
) -> None:
    """A request whose headers never end is answered 431 and closed after 8 KiB."""
    bridge = init_integration.runtime_data
    caplog.clear()
    request = b"GET /accessories HTTP/1.1\r\nX-Filler: " + b"a" * (9 * 1024)
    response = await _exchange(bridge.port, request)
    assert response.startswith(b"HTTP/1.1 431"), response[:80]
    assert no_tracebacks(caplog) == []


# -- 2. HDS connections ------------------------------------------------------------------------


@pytest.fixture
async def home_hub(
    hass: HomeAssistant, init_integration: MockConfigEntry, session_keys: None
) -> AsyncGenerator[HomeHub]:
    """Return a paired admin hub that can open data streams."""
    bridge = init_integration.runtime_data
    hub = HomeHub(bridge.port)
    await hub.pair(bridge.setup_code)
    yield hub
    await hub.close()


async def _hub_connects(hub: HomeHub, setup: tuple[int, bytes, bytes]) -> None:
    """Connect the hub's HDS session prepared by ``setup`` and check hello succeeds."""
    port, controller_salt, accessory_salt = setup
    a2c, c2a = hub.hds_keys(controller_salt, accessory_salt)
    client = HDSClient(HOST, port, accessory_to_controller_key=a2c, controller_to_accessory_key=c2a)
    await client.connect()
    assert (await client.hello()).status == 0
    await client.close()


async def test_hds_from_unprepared_address_refused_with_bounded_memory(
    hass: HomeAssistant, init_integration: MockConfigEntry, home_hub: HomeHub
) -> None:
    """100 connections from an address that prepared nothing each send a 1 MiB frame's start.

    They are refused at accept (HA grows < 3 MiB; before: ~1 MiB buffered each for 10 s), and
    the hub's own pending session still connects.
    """
    bridge = init_integration.runtime_data
    setup = await home_hub.setup_data_stream()
    port = setup[0]
    flood = b"\x01\x0f\xff\xff" + bytes(256 * 1024)
    with memory_growth() as growth:
        streams = [
            await asyncio.open_connection(HOST, port, local_addr=(OTHER_HOST, 0))
            for _ in range(100)
        ]
        for _, writer in streams:
            writer.write(flood)
        closed = [await _closed_by_peer(reader) for reader, _ in streams]
        for _, writer in streams:
            writer.close()
        peak = growth()
    assert all(closed)
    assert peak < MEMORY_BOUND, f"HA grew by {peak / MiB:.1f} MiB"
    assert bridge.data_stream.diagnostics()["connections_refused"] >= 100
    await _hub_connects(home_hub, setup)


async def test_hds_unmatched_connections_capped_per_address(
    hass: HomeAssistant, init_integration: MockConfigEntry, home_hub: HomeHub
) -> None:
    """From an address with a pending setup, only a few connections may wait unmatched,
    and their first frame may not be larger than a hello."""
    bridge = init_integration.runtime_data
    server = bridge.data_stream
    setup = await home_hub.setup_data_stream()
    idle = [await asyncio.open_connection(HOST, setup[0]) for _ in range(10)]
    cap = hds_server.MAX_UNMATCHED_PER_PEER
    closed = await asyncio.gather(*(_closed_by_peer(reader) for reader, _ in idle[cap:]))
    assert all(closed)
    assert server.diagnostics()["connections"] == cap
    for _, writer in idle:
        writer.close()
    await _until(lambda: server.diagnostics()["connections"] == 0)

    reader, writer = await asyncio.open_connection(HOST, setup[0])
    writer.write(b"\x01\x00\x10\x00" + bytes(2048))  # declares a 4 KiB first frame
    assert await _closed_by_peer(reader)
    writer.close()
    assert any("exceeds 1024" in e for e in server.diagnostics()["last_connection_errors"])
    await _hub_connects(home_hub, setup)


async def _until(condition: Callable[[], bool]) -> None:
    """Wait for a condition with a generous timeout."""
    async with asyncio.timeout(CLOSE_TIMEOUT):
        while not condition():
            await asyncio.sleep(0.01)


# -- 3. HDS setup quota ------------------------------------------------------------------------


async def test_user_controller_cannot_evict_the_hubs_setup(
    hass: HomeAssistant, init_integration: MockConfigEntry, home_hub: HomeHub
) -> None:
    """20 setup writes from a non-admin controller leave the hub's pending setup in place."""
    bridge = init_integration.runtime_data
    setup = await home_hub.setup_data_stream()
    user = await _user_controller(home_hub, bridge.port)
    iid = user.iid("129", "131")
    request = bytes.fromhex("0101000201000320") + bytes(range(32))
    try:
        for _ in range(20):
            result = await user.write_with_response(iid, base64.b64encode(request).decode())
            assert result["status"] == 0
    finally:
        await user.close()
    await _hub_connects(home_hub, setup)


# -- 4. Malformed requests -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"not json", b"[]", b'{"ttl":"x","pid":1}', b'{"ttl":1000,"pid":[1]}', b"\xff\xfe{"],
)
async def test_malformed_prepare_is_a_hap_status(
    hass: HomeAssistant, home_hub: HomeHub, caplog: pytest.LogCaptureFixture, body: bytes
) -> None:
    """Bad /prepare bodies get 400 and -70410, no traceback; the session and pairing stay."""
    caplog.clear()
    code, answer = await home_hub.raw("PUT", "/prepare", body)
    assert (code, json.loads(answer)) == (400, {"status": HapStatus.INVALID_VALUE_IN_REQUEST})
    assert no_tracebacks(caplog) == []
    assert await home_hub.timed_write(home_hub.iid("204", "226"), 1) == {}


@pytest.mark.parametrize(
    "ids",
    ["1.%C2%B2", "%C2%B2.1", f"1.{'9' * 4301}", "1.9,1.%C2%B2", "x.y", "1.-1"],
    ids=["superscript-iid", "superscript-aid", "4301-digits", "mixed", "letters", "negative"],
)
async def test_malformed_ids_are_207_per_id(
    hass: HomeAssistant, home_hub: HomeHub, caplog: pytest.LogCaptureFixture, ids: str
) -> None:
    """Unicode digits and over-long ids answer 207 with -70409 for each bad id."""
    caplog.clear()
    code, answer = await home_hub.raw("GET", f"/characteristics?id={ids}")
    assert code == 207
    statuses = [c["status"] for c in json.loads(answer)["characteristics"]]
    assert HapStatus.RESOURCE_DOES_NOT_EXIST in statuses
    assert set(statuses) <= {HapStatus.SUCCESS, HapStatus.RESOURCE_DOES_NOT_EXIST}
    assert no_tracebacks(caplog) == []
    assert "value" in await home_hub.read(home_hub.iid("21A", "21B"))


def _post(path: str, body: bytes, extra: str = "", method: str = "POST") -> bytes:
    """Return a raw request on an unverified connection that asks to be closed after it."""
    head = f"{method} {path} HTTP/1.1\r\nHost: hksv\r\nConnection: close\r\n{extra}"
    return head.encode() + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        (b"GET /nope HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", (404, -70409)),
        (_post("/unknown", b""), (404, -70409)),
        (b"BREW /accessories HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n", (405, -70410)),
        (_post("/pair-setup", b"\x06"), (400, -70410)),  # truncated TLV
        (_post("/pair-setup", b"\x01\x00"), (400, -70410)),  # no state
        (_post("/pair-setup", b"\x06\x01\x09"), (400, -70410)),  # state M9
        (_post("/pair-setup", b"\x06\x01\x03\x03\x01\x00"), (400, -70410)),  # M3, no proof
        (_post("/pair-verify", b"\x06"), (200, None)),  # unpaired: TLV auth error as before
        (_post("/identify", b"", "X-Name: \xff\r\n"), (400, -70410)),  # not ASCII
        (_post("/prepare", b"{}", method="PUT"), (401, -70401)),  # unverified
        (b"GET / HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", (400, None)),
        (b"\x16\x03\x01garbage\r\n\r\n", (400, None)),
    ],
    ids=[
        "unknown-path",
        "unknown-post-path",
        "unknown-method",
        "pair-setup-truncated-tlv",
        "pair-setup-no-state",
        "pair-setup-state-m9",
        "pair-setup-m3-no-proof",
        "pair-verify-unpaired",
        "non-ascii-header",
        "prepare-unverified",
        "content-length-5000-digits",
        "tls-hello",
    ],
)
async def test_malformed_unverified_requests(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
    request_bytes: bytes,
    expected: tuple[int, int | None],
) -> None:
    """An unpaired peer's garbage gets a HAP status and at most a debug line, never a 500."""
    bridge = init_integration.runtime_data
    caplog.clear()
    response = await _exchange(bridge.port, request_bytes)
    code, body = _status_of(response)
    assert code == expected[0], response[:120]
    if expected[1] is not None:
        assert body == {"status": expected[1]}
    assert no_tracebacks(caplog) == []
    assert [r for r in caplog.records if r.levelno > logging.DEBUG and "hksv" in r.name] == []


# -- 5. Listen address ---------------------------------------------------------------------------


async def test_options_offer_the_listen_address(
    hass: HomeAssistant,
    socket_enabled: None,
    mock_async_zeroconf: Any,
    mock_config_entry: MockConfigEntry,
) -> None:
    """A collapsed advanced section lists every interface and HA's addresses; saving keeps it."""
    entry = mock_config_entry
    with patch("custom_components.hksv.async_setup_entry", return_value=True):
        result = await hass.config_entries.options.async_init(entry.entry_id)
        advanced = result["data_schema"].schema["advanced"]
        assert advanced.options["collapsed"] is True
        options = advanced.schema.schema[CONF_ADDRESS].config["options"]
        assert options[0] == ADDRESS_ALL
        assert "10.10.10.10" in options  # the adapter of HA's network integration (test mock)
        result = await hass.config_entries.options.async_configure(
            result["flow_id"], {**DEFAULT_OPTIONS, "advanced": {CONF_ADDRESS: "10.10.10.10"}}
        )
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert entry.options == {**DEFAULT_OPTIONS, CONF_ADDRESS: "10.10.10.10"}
        result = await hass.config_entries.options.async_init(entry.entry_id)
        field = result["data_schema"].schema["advanced"].schema.schema
        assert next(iter(field)).default() == "10.10.10.10"
        with pytest.raises(InvalidData):
            await hass.config_entries.options.async_configure(
                result["flow_id"], {**DEFAULT_OPTIONS, "advanced": {CONF_ADDRESS: "192.0.2.1"}}
            )


async def test_listen_address_binds_hap_and_hds(
    hass: HomeAssistant,
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: Any,
    mock_config_entry: MockConfigEntry,
) -> None:
    """With 127.0.0.1 chosen in the options, HAP and HDS listen there only (before: all)."""
    entry = mock_config_entry
    data = {k: v for k, v in entry.data.items() if k != CONF_ADDRESS}
    hass.config_entries.async_update_entry(
        entry, data=data, options={**DEFAULT_OPTIONS, CONF_ADDRESS: HOST}
    )
    assert await hass.config_entries.async_setup(entry.entry_id)
    await hass.async_block_till_done()
    try:
        bridge = entry.runtime_data
        hap_server = bridge.driver.http_server.server
        listening = [s.getsockname()[:2] for s in hap_server.sockets]
        listening += [s.getsockname()[:2] for s in bridge.data_stream._server.sockets]
        assert listening == [(HOST, bridge.port), (HOST, bridge.data_stream.port)]
        _, writer = await asyncio.open_connection(HOST, bridge.port)
        writer.close()
    finally:
        if entry.state is ConfigEntryState.LOADED:
            await hass.config_entries.async_unload(entry.entry_id)
            await hass.async_block_till_done()


async def test_prepared_writes_are_bounded_per_connection(
    hass: HomeAssistant, home_hub: HomeHub
) -> None:
    """A controller flooding /prepare keeps only the newest windows, not an ever-growing map."""
    iid = home_hub.iid("204", "226")
    for pid in range(1, 41):
        body = json.dumps({"ttl": 10000, "pid": pid}).encode()
        assert await home_hub.raw("PUT", "/prepare", body) == (200, b'{"status":0}')
    assert (await home_hub.write(iid, 1, pid=1))["status"] == HapStatus.INVALID_VALUE_IN_REQUEST
    assert await home_hub.write(iid, 1, pid=40) == {}


async def test_pair_verify_from_unknown_controller_logs_no_error(
    hass: HomeAssistant,
    init_integration: MockConfigEntry,
    home_hub: HomeHub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A peer verifying with an identity that was never paired gets the TLV error, quietly.

    HAP-python logs an ERROR listing every paired key for each such attempt, which anyone
    on the network could repeat to fill the log.
    """
    bridge = init_integration.runtime_data
    stranger_key = ed25519.Ed25519PrivateKey.generate()
    data = home_hub.pairing_data | {
        "iOSPairingId": str(uuid.uuid4()),
        "iOSDeviceLTSK": stranger_key.private_bytes_raw().hex(),
        "iOSDeviceLTPK": stranger_key.public_key().public_bytes_raw().hex(),
    }
    caplog.clear()
    for _ in range(5):
        stranger = HomeHub(bridge.port, alias="stranger")
        stranger.adopt(data)
        with pytest.raises(AuthenticationError):
            await stranger.read(1)
        with pytest.raises(AuthenticationError):
            await stranger.close()  # aiohomekit re-raises its connector's failure
    assert no_tracebacks(caplog) == []
    assert "value" in await home_hub.read(home_hub.iid("21A", "21B"))
    assert bridge.paired


async def test_unverified_hap_connections_are_bounded(
    hass: HomeAssistant, init_integration: MockConfigEntry, home_hub: HomeHub
) -> None:
    """Idle strangers hold at most 8 connections per address and 64 in all; a paired
    controller still connects and verifies (it displaces the longest-idle stranger)."""
    bridge = init_integration.runtime_data
    connections = bridge.driver.http_server.connections

    def unverified() -> int:
        return sum(1 for c in connections.values() if c.hap_crypto is None)

    one_address = [
        await asyncio.open_connection(HOST, bridge.port, local_addr=(OTHER_HOST, 0))
        for _ in range(12)
    ]
    closed = await asyncio.gather(*(_closed_by_peer(reader) for reader, _ in one_address[8:]))
    assert all(closed)
    await _until(lambda: unverified() == 8)

    many = [
        await asyncio.open_connection(HOST, bridge.port, local_addr=(f"127.0.1.{n // 8}", 0))
        for n in range(80)
    ]
    await _until(lambda: unverified() == 64)
    late = HomeHub(bridge.port, alias="late")
    late.adopt(home_hub.pairing_data)
    assert "value" in await late.read(home_hub.iid("21A", "21B"))
    await late.close()
    for _, writer in one_address + many:
        writer.close()
    await _until(lambda: unverified() == 0)
    assert bridge.paired
