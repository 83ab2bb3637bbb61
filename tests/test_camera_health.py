"""Camera health: once per change in the log, and no alarm while Home Assistant starts."""

from __future__ import annotations

import logging

from homeassistant.const import EVENT_HOMEASSISTANT_STARTED
from homeassistant.core import CoreState, HomeAssistant
import pytest

from custom_components.hksv.camera_health import CameraHealth

CAMERA = "camera.late"


def _records(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == level]


async def test_a_camera_loaded_after_hksv_is_not_reported_missing(
    hass: HomeAssistant, caplog: pytest.LogCaptureFixture
) -> None:
    """During startup a missing camera is not a problem yet; after startup it is, once."""
    hass.set_state(CoreState.starting)
    problem: list[str | None] = []
    health = CameraHealth(
        hass,
        name="Late",
        camera_entity_id=CAMERA,
        stream_problem=lambda: None,
        on_change=lambda: problem.append(health.problem),
    )
    unsubscribe = health.async_start()
    assert health.available
    assert _records(caplog, logging.WARNING) == []

    hass.set_state(CoreState.running)
    hass.bus.async_fire(EVENT_HOMEASSISTANT_STARTED)
    await hass.async_block_till_done()
    assert problem == [f"camera {CAMERA} does not exist"]
    assert len(_records(caplog, logging.WARNING)) == 1

    hass.states.async_set(CAMERA, "idle")
    await hass.async_block_till_done()
    assert health.available
    assert _records(caplog, logging.INFO) == [f"Late: camera {CAMERA} is back"]
    hass.states.async_set(CAMERA, "streaming")
    hass.states.async_set(CAMERA, "unavailable")
    hass.states.async_set(CAMERA, "unavailable", {"changed": True})
    await hass.async_block_till_done()
    assert problem == [f"camera {CAMERA} does not exist", None, f"camera {CAMERA} is unavailable"]
    assert len(_records(caplog, logging.WARNING)) == 2
    unsubscribe()
    hass.states.async_set(CAMERA, "idle")
    await hass.async_block_till_done()
    assert not health.available  # no longer followed
