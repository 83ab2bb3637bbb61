"""A paired controller sending mutated TLV8 writes: only HAP statuses, and no change on refusal.

Hypothesis drives the real HAP server through aiohomekit. The examples run in an executor thread
(hypothesis cannot drive an async test), each one a coroutine on Home Assistant's loop.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Coroutine
import copy
import json
import logging
from typing import Any

from homeassistant.core import HomeAssistant
from hypothesis import HealthCheck, given, settings
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.bridge import CameraBridge
from custom_components.hksv.hap.definitions import HapStatus
from custom_components.hksv.storage import persist_file_path
from tests.hap.mutations import written_values
from tests.hap.test_parser_contracts import SELECTION, SETUP_REQUEST
from tests.hub.controller import HubController

HAP_STATUSES = frozenset(int(status) for status in HapStatus)
EXAMPLES = settings(
    max_examples=100,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _on_loop(hass: HomeAssistant) -> Callable[[Coroutine[Any, Any, Any]], Any]:
    """Return a function that runs a coroutine on hass's loop from another thread."""

    def run(coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, hass.loop).result(timeout=60)

    return run


def _read_file(path: str) -> bytes:
    with open(path, "rb") as file:
        return file.read()


def _snapshot(bridge: CameraBridge) -> tuple[Any, ...]:
    """Return everything a refused write must leave as it was (call on the loop)."""
    data_stream = bridge.data_stream.diagnostics() if bridge.data_stream else None
    return (
        bridge.accessory.state,
        copy.deepcopy(bridge._stored),
        bridge.accessory.selection,
        data_stream["pending_sessions"] if data_stream else None,
        bridge.paired,
    )


async def _put(hub: HubController, iid: int, value: Any, *, response: bool) -> dict[str, Any]:
    """Write one value over HAP; assert HTTP 204/207 and return the characteristic result."""
    item: dict[str, Any] = {"aid": 1, "iid": iid, "value": value}
    if response:
        item["r"] = True
    body = json.dumps({"characteristics": [item]}).encode()
    code, text = await hub.raw("PUT", "/characteristics", body)
    if code == 204:
        return {"status": 0}
    assert code == 207, (code, text)
    (result,) = json.loads(text)["characteristics"]
    assert result["status"] in HAP_STATUSES, result
    return dict(result)


async def test_mutated_selections(
    hass: HomeAssistant,
    hub: HubController,
    init_integration: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mutated SelectedCameraRecordingConfiguration writes: stored only when valid."""
    bridge: CameraBridge = init_integration.runtime_data
    iid = hub.iid("204", "209")
    path = persist_file_path(hass, init_integration.entry_id)
    run = _on_loop(hass)
    outcomes: dict[str, int] = {"stored": 0, "refused": 0}

    async def write(value: Any) -> tuple[dict[str, Any], tuple[Any, ...], tuple[Any, ...], Any]:
        before = _snapshot(bridge)
        read_before = await hub.read(iid)
        result = await _put(hub, iid, value, response=False)
        read_after = await hub.read(iid)
        return result, before, _snapshot(bridge), (read_before, read_after)

    @EXAMPLES
    @given(value=written_values(SELECTION))
    def check(value: Any) -> None:
        keys_before = _read_file(path)
        result, before, after, (read_before, read_after) = run(write(value))
        if result["status"] == 0:
            outcomes["stored"] += 1
            assert after[0].selected_configuration == base64.b64decode(value)
            assert read_after == {"value": value}
        else:
            outcomes["refused"] += 1
            assert result["status"] == HapStatus.INVALID_VALUE_IN_REQUEST
            assert after == before
            assert read_after == read_before
        assert _read_file(path) == keys_before

    with caplog.at_level(logging.DEBUG):
        await hass.async_add_executor_job(check)
    assert outcomes["refused"] > 0, outcomes
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and "hksv" in r.name]


async def test_mutated_data_stream_setups(
    hass: HomeAssistant,
    hub: HubController,
    init_integration: MockConfigEntry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Mutated SetupDataStreamTransport writes: a session and an answer only when valid."""
    bridge: CameraBridge = init_integration.runtime_data
    iid = hub.iid("129", "131")
    run = _on_loop(hass)
    outcomes: dict[str, int] = {"answered": 0, "refused": 0}

    async def write(value: Any) -> tuple[dict[str, Any], tuple[Any, ...], tuple[Any, ...], Any]:
        before = _snapshot(bridge)
        read_before = await hub.read(iid)
        result = await _put(hub, iid, value, response=True)
        read_after = await hub.read(iid)
        return result, before, _snapshot(bridge), (read_before, read_after)

    @EXAMPLES
    @given(value=written_values(SETUP_REQUEST))
    def check(value: Any) -> None:
        result, before, after, (read_before, read_after) = run(write(value))
        if result["status"] == 0:
            outcomes["answered"] += 1
            answer = base64.b64decode(result["value"])
            assert answer[:3] in (bytes.fromhex("010100"), bytes.fromhex("010102"))  # OK/BUSY
            assert after[:3] == before[:3]  # the camera state is not the data stream's
        else:
            outcomes["refused"] += 1
            assert result["status"] == HapStatus.INVALID_VALUE_IN_REQUEST
            assert after == before
            assert read_after == read_before

    with caplog.at_level(logging.DEBUG):
        await hass.async_add_executor_job(check)
    assert outcomes["refused"] > 0, outcomes
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR and "hksv" in r.name]


@pytest.mark.parametrize("reason", [2, 7, -1, 255, 2**31])
async def test_unknown_snapshot_reason_cannot_bypass_a_switch(
    hass: HomeAssistant, hub: HubController, reason: int
) -> None:
    """/resource with a reason HomeKit does not define is refused while a switch is off."""
    assert (await hub.snapshot(reason=reason))[0] == 200  # both kinds on: served
    for switch in ("223", "225"):  # EventSnapshotsActive, PeriodicSnapshotsActive
        assert await hub.write(hub.iid("21A", switch), 0) == {}
        code, body = await hub.snapshot(reason=reason)
        assert code == 207, (switch, code)
        assert json.loads(body) == {"status": HapStatus.INSUFFICIENT_PRIVILEGES}
        assert await hub.write(hub.iid("21A", switch), 1) == {}
