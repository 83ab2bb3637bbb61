"""The transcode budget shared by recording and live view: admission, waiting, measurement."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from homeassistant.core import HomeAssistant
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry
from pytest_homeassistant_custom_component.components.diagnostics import (
    get_diagnostics_for_config_entry,
)

from custom_components.hksv.media.budget import (
    HEADROOM,
    TranscodeBudget,
    measure_capacity,
    transcode_cost,
)
from custom_components.hksv.media.encoders import EncoderChooser, shared_chooser


def test_costs_are_in_720p30_units() -> None:
    """A 720p30 encode is one unit; 1080p30 2.25; a watch-sized 320x240@15 0.04."""
    assert transcode_cost(1280, 720, 30) == 1.0
    assert transcode_cost(1920, 1080, 30) == 2.25
    assert transcode_cost(320, 240, 15) == pytest.approx(0.0417, abs=1e-4)


def test_admission_follows_the_capacity() -> None:
    """Transcodes fit while their sum stays within the capacity; releasing makes room again."""
    budget = TranscodeBudget(capacity=2.0)
    first = budget.try_reserve(1.0, "a")
    second = budget.try_reserve(1.0, "b")
    assert first is not None and second is not None
    assert budget.try_reserve(0.5, "c") is None
    assert budget.refused == 1
    assert "2 running: a, b; 2.00 of 2.00 units of 720p30, 0.50 more needed" in budget.explain(0.5)
    first.release()
    first.release()  # idempotent: the other holder keeps its share
    assert budget.held == ["b"] and budget.in_use == 1.0
    third = budget.try_reserve(0.5, "c")
    assert third is not None and budget.held == ["b", "c"]
    diagnostics = budget.diagnostics()
    assert diagnostics["capacity"]["source"] == "configured"
    assert [held["label"] for held in diagnostics["running"]] == ["b", "c"]


def test_one_transcode_is_always_admitted() -> None:
    """Nothing running: even a transcode above the whole capacity is tried."""
    budget = TranscodeBudget(capacity=0.5)
    assert budget.try_reserve(2.25, "1080p") is not None
    assert budget.try_reserve(0.01, "tiny") is None


async def test_reserve_waits_for_room() -> None:
    """A reservation waits for another to end, up to its limit, then gives up."""
    budget = TranscodeBudget(capacity=1.0)
    held = budget.try_reserve(1.0, "running")
    assert held is not None
    asyncio.get_running_loop().call_later(0.2, held.release)
    got = await budget.reserve(1.0, "waiting", wait=30)
    assert got is not None and budget.held == ["waiting"]
    assert await budget.reserve(1.0, "late", wait=0.2) is None
    assert budget.refused == 1


def test_measured_capacity(caplog: pytest.LogCaptureFixture) -> None:
    """The real encoder codes synthetic 720p in five short windows; the result is logged."""
    caplog.set_level(logging.INFO, "custom_components.hksv.media.budget")
    chooser = EncoderChooser()
    capacity = measure_capacity(chooser)
    assert capacity.source == "measured"
    assert capacity.encoder == chooser.encoder_for(1280, 720)
    assert capacity.speed > 0
    assert capacity.units == pytest.approx(capacity.speed * HEADROOM)
    assert "Transcode capacity:" in caplog.text


async def test_capacity_is_measured_once_off_the_loop() -> None:
    """The first admission measures; later ones reuse the number."""
    calls: list[EncoderChooser] = []

    def measure(chooser: EncoderChooser) -> object:
        calls.append(chooser)
        return measure_capacity(chooser)

    budget = TranscodeBudget(EncoderChooser(("libx264",)), measure=measure)  # type: ignore[arg-type]
    assert budget.capacity is None
    assert budget.try_reserve(5.0, "before") is not None  # unknown capacity: admitted
    first = await budget.async_measure()
    assert await budget.async_measure() is first and len(calls) == 1
    assert budget.diagnostics()["capacity"]["source"] == "measured"


def test_a_capacity_that_cannot_be_measured_limits_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No usable encoder to measure with: a warning, and admission is not limited."""
    budget = TranscodeBudget(EncoderChooser(("no_such_encoder",)))
    capacity = budget.measure()
    assert capacity.source.startswith("not measured: no usable H.264 encoder")
    assert capacity.as_dict()["units_720p30"] is None
    assert "Transcode capacity could not be measured" in caplog.text
    assert budget.try_reserve(5.0, "a") is not None
    assert budget.try_reserve(5.0, "b") is not None


async def test_diagnostics_show_the_encoder_choice_and_the_budget(
    hass: HomeAssistant,
    hass_client: Any,
    transcode_budget: TranscodeBudget,
    init_integration: MockConfigEntry,
) -> None:
    """Diagnostics hold the chooser's decision, the capacity and who transcodes now."""
    decision = await shared_chooser().async_decide()
    held = transcode_budget.try_reserve(2.25, "Garden recording 3")
    assert held is not None
    data = await get_diagnostics_for_config_entry(hass, hass_client, init_integration)
    transcoding = data["recording"]["transcoding"]
    assert transcoding["encoder"]["decision"] == {
        "encoder": decision.encoder,
        "hardware": decision.hardware,
        "tried": dict(decision.tried),
    }
    assert transcoding["capacity"] == {
        "units_720p30": 100.0,
        "encoder": "",
        "speed_720p30": 0.0,
        "source": "configured",
    }
    assert transcoding["running"] == [{"label": "Garden recording 3", "cost": 2.25}]
    held.release()
