"""Config, options and reconfigure flows."""

from __future__ import annotations

from collections.abc import Generator
import json
from pathlib import Path
import socket
from typing import Any
from unittest.mock import AsyncMock, patch

from homeassistant.config_entries import SOURCE_RECONFIGURE, SOURCE_USER, ConfigEntryDisabler
from homeassistant.const import CONF_NAME
from homeassistant.core import HomeAssistant
from homeassistant.data_entry_flow import AbortFlow, FlowResultType, InvalidData
from homeassistant.exceptions import HomeAssistantError
import pytest
from pytest_homeassistant_custom_component.common import MockConfigEntry

from custom_components.hksv.const import (
    CONF_ADDRESS,
    CONF_CAMERA,
    CONF_DOORBELL,
    CONF_MOTION,
    CONF_PORT,
    DEFAULT_OPTIONS,
    DOMAIN,
    OPT_ARCHIVE,
    OPT_ARCHIVE_DAYS,
    OPT_ARCHIVE_MAX_GB,
    OPT_ARCHIVE_MIN_FREE_GB,
    OPT_AUDIO,
    OPT_LIVE_DIRECT,
    OPT_LIVE_MAX_BITRATE,
    OPT_LIVE_MODE,
    OPT_LIVE_SHORT_PARTS,
    OPT_LIVE_SLOTS,
    OPT_MAX_BITRATE,
    OPT_MAX_RESOLUTION,
    OPT_PREBUFFER,
    OPT_VIDEO_MODE,
    PORT_RANGE_END,
    PORT_RANGE_START,
)
from custom_components.hksv.options_flow import SECTION_ADVANCED
from custom_components.hksv.ports import port_is_free
from tests.conftest import CAMERA_ID, DOORBELL_ID, MOTION_ID, FakeCamera

pytestmark = pytest.mark.usefixtures("socket_enabled", "mock_async_zeroconf", "fake_camera")

INTEGRATION_DIR = Path(__file__).parents[1] / "custom_components" / "hksv"

USER_INPUT = {
    CONF_NAME: "Front door",
    CONF_CAMERA: CAMERA_ID,
    CONF_MOTION: MOTION_ID,
    CONF_DOORBELL: DOORBELL_ID,
}


@pytest.fixture
def mock_setup_entry() -> Generator[AsyncMock]:
    """Do not start the accessory in flow tests."""
    with patch("custom_components.hksv.async_setup_entry", return_value=True) as mock:
        yield mock


async def _start(hass: HomeAssistant) -> dict[str, Any]:
    """Start the user flow."""
    result = await hass.config_entries.flow.async_init(DOMAIN, context={"source": SOURCE_USER})
    assert result["type"] is FlowResultType.FORM
    assert result["step_id"] == "user"
    return result


async def _reconfigure(hass: HomeAssistant, entry_id: str) -> dict[str, Any]:
    """Start the reconfigure flow of an entry."""
    return await hass.config_entries.flow.async_init(
        DOMAIN, context={"source": SOURCE_RECONFIGURE, "entry_id": entry_id}
    )


@pytest.mark.parametrize("doorbell", [True, False])
async def test_user_flow_creates_entry(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, doorbell: bool
) -> None:
    """A camera with a stream, a motion sensor and maybe a doorbell become an entry."""
    result = await _start(hass)
    user_input = dict(USER_INPUT)
    if not doorbell:
        del user_input[CONF_DOORBELL]
    result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == "Front door"
    data = result["data"]
    assert data[CONF_CAMERA] == CAMERA_ID
    assert data[CONF_MOTION] == MOTION_ID
    assert data.get(CONF_DOORBELL) == (DOORBELL_ID if doorbell else None)
    assert PORT_RANGE_START <= data[CONF_PORT] <= PORT_RANGE_END
    assert result["options"] == DEFAULT_OPTIONS
    # Keyed on the camera's registry entry, which survives entity_id renames.
    assert result["result"].unique_id not in (None, CAMERA_ID)
    assert len(mock_setup_entry.mock_calls) == 1


@pytest.mark.parametrize(
    ("change", "field", "error"),
    [
        ({CONF_CAMERA: "camera.missing"}, CONF_CAMERA, "camera_not_found"),
        ({CONF_MOTION: "sensor.not_motion"}, CONF_MOTION, "invalid_entity"),
        ({CONF_MOTION: "binary_sensor.missing"}, CONF_MOTION, "invalid_entity"),
        ({CONF_DOORBELL: "light.kitchen"}, CONF_DOORBELL, "invalid_entity"),
    ],
)
async def test_user_flow_errors_recover(
    hass: HomeAssistant,
    mock_setup_entry: AsyncMock,
    change: dict[str, str],
    field: str,
    error: str,
) -> None:
    """Bad choices get a translated error on their field and the flow can still finish."""
    hass.states.async_set("sensor.not_motion", "1")
    hass.states.async_set("light.kitchen", "on")
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**USER_INPUT, **change}
    )
    assert result["type"] is FlowResultType.FORM
    assert result["errors"] == {field: error}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    assert result["type"] is FlowResultType.CREATE_ENTRY


@pytest.mark.parametrize("source", [None, "raise"])
async def test_camera_without_stream_is_refused(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, fake_camera: FakeCamera, source: str | None
) -> None:
    """A camera with no stream source (or one that fails) cannot be recorded."""
    if source == "raise":
        fake_camera.stream_error = HomeAssistantError("unreachable")
    else:
        fake_camera.source = None
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    assert result["errors"] == {CONF_CAMERA: "no_stream_source"}
    fake_camera.source = "rtsp://127.0.0.1:1/unused"
    fake_camera.stream_error = None
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_unexpected_error_is_reported(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """An unexpected failure shows the generic error and the flow recovers."""
    result = await _start(hass)
    with patch(
        "custom_components.hksv.config_flow._validate_entities", side_effect=RuntimeError("boom")
    ):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    assert result["errors"] == {"base": "unknown"}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_one_entry_per_camera(hass: HomeAssistant, mock_setup_entry: AsyncMock) -> None:
    """The same camera cannot be added twice."""
    result = await _start(hass)
    await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"


async def test_ports_do_not_collide(hass: HomeAssistant, mock_setup_entry: AsyncMock) -> None:
    """A second camera gets another port."""
    MockConfigEntry(
        domain=DOMAIN, data={CONF_PORT: PORT_RANGE_START}, unique_id="other"
    ).add_to_hass(hass)
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    assert result["data"][CONF_PORT] != PORT_RANGE_START


async def test_reconfigure_keeps_port_and_entry(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """Reconfigure changes entities and name; the entry (and so its pairing) and port stay."""
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    entry = result["result"]
    port = entry.data[CONF_PORT]
    hass.states.async_set("event.other_bell", "unknown", {"device_class": "doorbell"})
    result = await _reconfigure(hass, entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"],
        {**USER_INPUT, CONF_NAME: "Porch", CONF_DOORBELL: "event.other_bell"},
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "reconfigure_successful"
    assert entry.title == "Porch"
    assert entry.data[CONF_DOORBELL] == "event.other_bell"
    assert entry.data[CONF_PORT] == port


async def test_reconfigure_validates(hass: HomeAssistant, mock_setup_entry: AsyncMock) -> None:
    """Reconfigure shows the same errors."""
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    entry = result["result"]
    result = await _reconfigure(hass, entry.entry_id)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**USER_INPUT, CONF_CAMERA: "camera.missing"}
    )
    assert result["errors"] == {CONF_CAMERA: "camera_not_found"}


async def test_options_flow_stores_options(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """Options are shown with current values and stored as whole numbers."""
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    entry = result["result"]
    result = await hass.config_entries.options.async_init(entry.entry_id)
    assert result["type"] is FlowResultType.FORM
    new = {
        OPT_MAX_RESOLUTION: "720p",
        OPT_MAX_BITRATE: 1500.0,
        OPT_AUDIO: False,
        OPT_VIDEO_MODE: "transcode",
        OPT_PREBUFFER: 6.0,
        OPT_LIVE_SLOTS: 5.0,
        OPT_LIVE_MODE: "copy",
        OPT_LIVE_MAX_BITRATE: 4000.0,
        OPT_LIVE_SHORT_PARTS: False,
        OPT_LIVE_DIRECT: True,
        OPT_ARCHIVE: False,
        OPT_ARCHIVE_DAYS: 3.0,
        OPT_ARCHIVE_MAX_GB: 2.5,
        OPT_ARCHIVE_MIN_FREE_GB: 1,
    }
    result = await hass.config_entries.options.async_configure(result["flow_id"], new)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {
        **new,
        OPT_MAX_BITRATE: 1500,
        OPT_PREBUFFER: 6,
        OPT_LIVE_SLOTS: 5,
        OPT_LIVE_MAX_BITRATE: 4000,
        OPT_ARCHIVE_DAYS: 3,
        OPT_ARCHIVE_MIN_FREE_GB: 1.0,
    }
    assert isinstance(entry.options[OPT_ARCHIVE_MIN_FREE_GB], float)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        (OPT_MAX_BITRATE, 100),
        (OPT_MAX_BITRATE, 90000),
        (OPT_PREBUFFER, 2),
        (OPT_PREBUFFER, 9),
        (OPT_MAX_RESOLUTION, "4k"),
        (OPT_VIDEO_MODE, "magic"),
        (OPT_LIVE_SLOTS, 6),
        (OPT_LIVE_SLOTS, 0),
        (OPT_LIVE_MODE, "magic"),
        (OPT_LIVE_MAX_BITRATE, 100),
        (OPT_ARCHIVE_DAYS, 0),
        (OPT_ARCHIVE_MAX_GB, 0.1),
        (OPT_ARCHIVE_MIN_FREE_GB, -1),
    ],
)
async def test_options_are_validated(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, key: str, value: Any
) -> None:
    """Out-of-range options are refused by the schema."""
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    entry = result["result"]
    result = await hass.config_entries.options.async_init(entry.entry_id)
    with pytest.raises(InvalidData):
        await hass.config_entries.options.async_configure(
            result["flow_id"], {**DEFAULT_OPTIONS, key: value}
        )


async def test_options_form_has_recording_live_and_advanced(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """One form: recording options, live-view options, then the collapsed network section."""
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    entry = result["result"]
    result = await hass.config_entries.options.async_init(entry.entry_id)
    fields = [str(key) for key in result["data_schema"].schema]
    assert fields == [
        OPT_MAX_RESOLUTION,
        OPT_MAX_BITRATE,
        OPT_AUDIO,
        OPT_VIDEO_MODE,
        OPT_PREBUFFER,
        OPT_LIVE_SLOTS,
        OPT_LIVE_MODE,
        OPT_LIVE_MAX_BITRATE,
        OPT_LIVE_SHORT_PARTS,
        OPT_LIVE_DIRECT,
        OPT_ARCHIVE,
        OPT_ARCHIVE_DAYS,
        OPT_ARCHIVE_MAX_GB,
        OPT_ARCHIVE_MIN_FREE_GB,
        CONF_PORT,
        SECTION_ADVANCED,
    ]
    assert result["data_schema"].schema[SECTION_ADVANCED].options["collapsed"] is True
    # Every field has a label and a description, in both translation files alike.
    strings = json.loads((INTEGRATION_DIR / "strings.json").read_text(encoding="utf-8"))
    init = strings["options"]["step"]["init"]
    assert set(init["data"]) == set(init["data_description"]) == set(fields) - {SECTION_ADVANCED}
    assert set(init["sections"][SECTION_ADVANCED]["data"]) == {CONF_ADDRESS}

    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {**DEFAULT_OPTIONS, OPT_LIVE_SLOTS: 2.0, SECTION_ADVANCED: {CONF_ADDRESS: "10.10.10.10"}},
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.options == {**DEFAULT_OPTIONS, OPT_LIVE_SLOTS: 2, CONF_ADDRESS: "10.10.10.10"}
    # A save without the (collapsed, untouched) section keeps the address.
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**DEFAULT_OPTIONS, OPT_LIVE_MODE: "transcode"}
    )
    assert entry.options == {
        **DEFAULT_OPTIONS,
        OPT_LIVE_MODE: "transcode",
        CONF_ADDRESS: "10.10.10.10",
    }


def test_translation_files_are_identical() -> None:
    """strings.json and translations/en.json are the same (a custom integration loads en.json)."""
    strings = (INTEGRATION_DIR / "strings.json").read_bytes()
    assert strings == (INTEGRATION_DIR / "translations" / "en.json").read_bytes()
    json.loads(strings)


async def test_name_defaults_to_the_camera_name(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """Leaving the name empty names the accessory after the camera."""
    result = await _start(hass)
    user_input = {k: v for k, v in USER_INPUT.items() if k != CONF_NAME}
    result = await hass.config_entries.flow.async_configure(result["flow_id"], user_input)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert result["title"] == hass.states.get(CAMERA_ID).name == "Front door"


@pytest.mark.parametrize(
    ("field", "entity_id", "attributes", "accepted"),
    [
        (CONF_DOORBELL, "binary_sensor.bell_button", {}, True),
        (CONF_DOORBELL, "binary_sensor.bell_ding", {"device_class": "occupancy"}, True),
        (CONF_DOORBELL, "event.bell_button", {"device_class": "button"}, True),
        (CONF_DOORBELL, "sensor.bell", {}, False),
        (CONF_MOTION, "binary_sensor.garage_door", {"device_class": "door"}, False),
        (CONF_MOTION, "binary_sensor.hall_presence", {"device_class": "presence"}, True),
        (CONF_MOTION, "event.hall_motion", {"device_class": "motion"}, True),
    ],
)
async def test_validation_follows_the_selectors(
    hass: HomeAssistant,
    mock_setup_entry: AsyncMock,
    field: str,
    entity_id: str,
    attributes: dict[str, str],
    accepted: bool,
) -> None:
    """What the selector offers is accepted and nothing else (same rules for both kinds)."""
    hass.states.async_set(entity_id, "off", attributes)
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**USER_INPUT, field: entity_id}
    )
    if accepted:
        assert result["type"] is FlowResultType.CREATE_ENTRY
        assert result["data"][field] == entity_id
    else:
        assert result["errors"] == {field: "invalid_entity"}


@pytest.mark.parametrize(
    ("homekit_filter", "warned"),
    [
        ({}, True),
        ({"include_domains": ["camera"]}, True),
        ({"include_entities": [CAMERA_ID]}, True),
        ({"include_domains": ["light"]}, False),
        ({"include_domains": ["camera"], "exclude_entities": [CAMERA_ID]}, False),
    ],
)
async def test_warns_when_homekit_bridge_already_exposes_the_camera(
    hass: HomeAssistant,
    mock_setup_entry: AsyncMock,
    homekit_filter: dict[str, list[str]],
    warned: bool,
) -> None:
    """A camera HomeKit Bridge already shows would appear twice: the flow says so first."""
    MockConfigEntry(
        domain="homekit", title="HASS Bridge:21064", options={"filter": homekit_filter}
    ).add_to_hass(hass)
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    if warned:
        assert result["type"] is FlowResultType.FORM
        assert result["step_id"] == "exposed_by_homekit"
        assert result["description_placeholders"] == {
            "camera": "Front door",
            "bridge": "HASS Bridge:21064",
        }
        result = await hass.config_entries.flow.async_configure(result["flow_id"], {})
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_disabled_homekit_bridge_is_ignored(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """A disabled HomeKit Bridge exposes nothing."""
    MockConfigEntry(
        domain="homekit", options={"filter": {}}, disabled_by=ConfigEntryDisabler.USER
    ).add_to_hass(hass)
    result = await _start(hass)
    result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    assert result["type"] is FlowResultType.CREATE_ENTRY


async def test_port_taken_by_another_program_is_skipped(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """A port some other program listens on is not given to the accessory."""
    # The port the flow would pick now (another test process may hold the range's first).
    wanted = next(
        port for port in range(PORT_RANGE_START, PORT_RANGE_END + 1) if port_is_free(port)
    )
    with socket.socket() as blocker:
        blocker.bind(("", wanted))
        blocker.listen()
        result = await _start(hass)
        result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert wanted < result["data"][CONF_PORT] <= PORT_RANGE_END


async def test_no_free_port_aborts(hass: HomeAssistant, mock_setup_entry: AsyncMock) -> None:
    """Every port of the range taken: the flow aborts with a reason, no entry."""
    result = await _start(hass)
    with patch("custom_components.hksv.ports.port_is_free", return_value=False):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_free_port"
    assert not hass.config_entries.async_entries(DOMAIN)


async def test_reconfigure_onto_an_already_configured_camera_aborts(
    hass: HomeAssistant, mock_setup_entry: AsyncMock, fake_camera: FakeCamera
) -> None:
    """Reconfiguring one entry onto the camera of another is refused; nothing changes."""
    other = FakeCamera("camera.back_yard", "rtsp://127.0.0.1:1/other")
    other._attr_unique_id = "back-yard-camera"
    other._attr_name = "Back yard"
    await hass.data["camera"].async_add_entities([other])
    await hass.async_block_till_done()
    result = await _start(hass)
    first = (await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT))[
        "result"
    ]
    result = await _start(hass)
    second = (
        await hass.config_entries.flow.async_configure(
            result["flow_id"], {**USER_INPUT, CONF_NAME: "Back", CONF_CAMERA: "camera.back_yard"}
        )
    )["result"]
    result = await _reconfigure(hass, second.entry_id)
    result = await hass.config_entries.flow.async_configure(
        result["flow_id"], {**USER_INPUT, CONF_NAME: "Back"}
    )
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "already_configured"
    assert second.data[CONF_CAMERA] == "camera.back_yard"
    assert first.data[CONF_CAMERA] == CAMERA_ID


async def test_abort_during_validation_is_passed_on(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """An abort raised while validating ends the flow with its reason, not "unknown"."""
    result = await _start(hass)
    with patch(
        "custom_components.hksv.config_flow._validate_entities",
        side_effect=AbortFlow("no_free_port"),
    ):
        result = await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT)
    assert result["type"] is FlowResultType.ABORT
    assert result["reason"] == "no_free_port"


async def test_options_with_the_current_port_keep_it(
    hass: HomeAssistant, mock_setup_entry: AsyncMock
) -> None:
    """The form shows the current port; saving it unchanged moves nothing."""
    result = await _start(hass)
    entry = (await hass.config_entries.flow.async_configure(result["flow_id"], USER_INPUT))[
        "result"
    ]
    port = entry.data[CONF_PORT]
    result = await hass.config_entries.options.async_init(entry.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"], {**DEFAULT_OPTIONS, OPT_AUDIO: False, CONF_PORT: port}
    )
    assert result["type"] is FlowResultType.CREATE_ENTRY
    assert entry.data[CONF_PORT] == port
    assert entry.options[OPT_AUDIO] is False
