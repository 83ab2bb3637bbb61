"""The HKSV accessory on a real HAP-python server, driven by aiohomekit as a home hub."""

from __future__ import annotations

import asyncio
import base64
from dataclasses import replace
from datetime import timedelta
import json
from pathlib import Path
from typing import Any
import uuid

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from homeassistant.core import HomeAssistant
from homeassistant.util import dt as dt_util
import pytest
from pytest_homeassistant_custom_component.common import (
    MockConfigEntry,
    async_fire_time_changed,
    async_get_persistent_notifications,
)

from custom_components.hksv.const import (
    EVENT_MOTION_SECONDS,
    OPT_AUDIO,
    OPT_MAX_BITRATE,
    OPT_MAX_RESOLUTION,
    OPT_PREBUFFER,
    OPT_VIDEO_MODE,
)
from custom_components.hksv.hap.definitions import IID_TABLE, HapStatus
from custom_components.hksv.hap.recording_config import VideoAttributes, parse_selection
from custom_components.hksv.pairing import notification_id
from tests.conftest import DOORBELL_ID, JPEG, MOTION_ID, FakeCamera
from tests.hub.controller import HOST, HubController, short

VECTORS = {
    v["name"]: v
    for v in json.loads(
        (Path(__file__).parents[2] / "shared/fixtures/hds-vectors.json").read_text()
    )["vectors"]
}
HUB_WRITE = bytes.fromhex(VECTORS["selected_camera_recording_configuration_write"]["encoded_hex"])

# Service -> characteristic -> (format, permissions), from docs/hksv-protocol.md §1.
EXPECTED: dict[str, dict[str, tuple[str, set[str]]]] = {
    "3E": {
        "14": ("bool", {"pw"}),
        "20": ("string", {"pr"}),
        "21": ("string", {"pr"}),
        "23": ("string", {"pr"}),
        "30": ("string", {"pr"}),
        "52": ("string", {"pr"}),
    },
    "A2": {"37": ("string", {"pr", "ev"})},
    "110": {
        "B0": ("uint8", {"pr", "pw", "ev"}),
        "120": ("tlv8", {"pr", "ev"}),
        "114": ("tlv8", {"pr"}),
        "115": ("tlv8", {"pr"}),
        "116": ("tlv8", {"pr"}),
        "117": ("tlv8", {"pr", "pw"}),
        "118": ("tlv8", {"pr", "pw"}),
    },
    "21A": {
        "223": ("uint8", {"pr", "pw", "ev"}),
        "21B": ("uint8", {"pr", "pw", "ev"}),
        "225": ("uint8", {"pr", "pw", "ev"}),
    },
    "204": {
        "B0": ("uint8", {"pr", "pw", "ev"}),
        "205": ("tlv8", {"pr", "ev"}),
        "206": ("tlv8", {"pr", "ev"}),
        "207": ("tlv8", {"pr", "ev"}),
        "209": ("tlv8", {"pr", "pw", "ev"}),
        "226": ("uint8", {"pr", "pw", "ev", "tw"}),
    },
    "129": {
        "131": ("tlv8", {"pr", "pw", "wr"}),
        "130": ("tlv8", {"pr"}),
        "37": ("string", {"pr"}),
    },
    "85": {"22": ("bool", {"pr", "ev"}), "75": ("bool", {"pr", "ev"})},
    "121": {"73": ("uint8", {"pr", "ev"})},
}


def hub_write(width: int = 1920, height: int = 1080, fps: int = 30) -> str:
    """Return the real hub write adapted to an offered resolution, as base64."""
    selection = parse_selection(HUB_WRITE)
    video = replace(
        selection.video, attributes=[VideoAttributes(width=width, height=height, frame_rate=fps)]
    )
    return base64.b64encode(replace(selection, video=video).encode()).decode()


async def _select(hub: HubController) -> str:
    """Write a valid selection and return it."""
    value = hub_write()
    assert await hub.write(hub.iid("204", "209"), value) == {}
    return value


async def test_pairing_with_setup_code(
    hass: HomeAssistant, init_integration: MockConfigEntry, session_keys: None
) -> None:
    """A wrong code fails; the right one pairs, and the notification goes away."""
    bridge = init_integration.runtime_data
    assert notification_id(init_integration.entry_id) in async_get_persistent_notifications(hass)
    wrong = "111-22-333" if bridge.setup_code != "111-22-333" else "222-33-444"
    intruder = HubController(bridge.port, alias="intruder")
    assert await intruder.try_pair(wrong) is not None
    assert not bridge.paired

    hub = HubController(bridge.port)
    await hub.pair(bridge.setup_code)
    await hass.async_block_till_done()
    assert bridge.paired
    assert notification_id(init_integration.entry_id) not in async_get_persistent_notifications(
        hass
    )
    assert hass.states.get("binary_sensor.front_door_paired").state == "on"
    assert hass.states.get("image.front_door_pairing_qr_code") is None
    await hub.close()


async def test_accessories_have_every_service(hub: HubController) -> None:
    """/accessories lists every HKSV service and characteristic with the documented perms."""
    accessory = hub.accessories[0]
    assert accessory["aid"] == 1
    services: dict[str, dict[str, Any]] = {}
    for service in accessory["services"]:
        services.setdefault(short(service["type"]), service)  # the first stream slot
    assert set(EXPECTED) <= set(services)
    for service_type, chars in EXPECTED.items():
        service = services[service_type]
        assert service["iid"] == IID_TABLE[(service_type, None)]
        found = {short(c["type"]): c for c in service["characteristics"]}
        for char_type, (fmt, perms) in chars.items():
            char = found[char_type]
            assert char["format"] == fmt, (service_type, char_type)
            assert set(char["perms"]) == perms, (service_type, char_type)
            assert char["iid"] == IID_TABLE[(service_type, char_type)]
    recording = services["204"]
    assert set(recording["linked"]) == {services["129"]["iid"], services["85"]["iid"]}
    assert services["121"].get("primary") is True
    firmware = hub.char("3E", "52")["value"]
    assert firmware.count(".") == 2 and all(p.isdigit() for p in firmware.split("."))
    assert hub.char("A2", "37")["value"] == "1.1.0"
    assert hub.char("129", "37")["value"] == "1.0"
    assert base64.b64decode(hub.char("129", "130")["value"]) == bytes.fromhex("0103010100")


@pytest.mark.parametrize("with_doorbell", [False])
async def test_no_doorbell_service_without_doorbell(hub: HubController) -> None:
    """Without a doorbell entity there is no Doorbell service and no primary service."""
    with pytest.raises(KeyError):
        hub.service("121")
    assert all("primary" not in s or not s["primary"] for s in hub.accessories[0]["services"])


async def test_selection_read_back_byte_for_byte(hass: HomeAssistant, hub: HubController) -> None:
    """Before a selection reads fail with -70402; the hub's write reads back exactly."""
    iid = hub.iid("204", "209")
    assert (await hub.read(iid))["status"] == HapStatus.SERVICE_COMMUNICATION_FAILURE
    value = await _select(hub)
    assert (await hub.read(iid))["value"] == value


@pytest.mark.parametrize(
    "value",
    [
        hub_write(1200, 1600, 24),  # the raw hub write: a resolution we do not offer
        hub_write(1920, 1080, 60),
        base64.b64encode(HUB_WRITE[:20]).decode(),
        base64.b64encode(b"\x01\x02").decode(),
        "not base64!",
        17,
    ],
)
async def test_bad_selections_are_refused(
    hass: HomeAssistant, hub: HubController, value: Any
) -> None:
    """Out-of-offer or malformed selections get -70410 and change nothing."""
    iid = hub.iid("204", "209")
    previous = await _select(hub)
    result = await hub.write(iid, value)
    assert result["status"] == HapStatus.INVALID_VALUE_IN_REQUEST
    assert (await hub.read(iid))["value"] == previous
    bridge = hass.config_entries.async_entries("hksv")[0].runtime_data
    assert bridge.accessory.state.selected_configuration == base64.b64decode(previous)


async def test_home_app_state_transitions(hass: HomeAssistant, hub: HubController) -> None:
    """The four Home-app states, StatusActive mirroring and what each state allows."""
    rtp, camera, record = hub.iid("110", "B0"), hub.iid("21A", "21B"), hub.iid("204", "B0")
    status_active = hub.iid("85", "75")
    await hub.subscribe(status_active)
    await _select(hub)
    mode = "sensor.front_door_home_app_mode"

    async def apply(rtp_on: int, camera_on: int, record_on: int) -> None:
        for iid, value in ((camera, camera_on), (rtp, rtp_on), (record, record_on)):
            assert await hub.write(iid, value) == {}
        await hass.async_block_till_done()

    await apply(1, 1, 1)
    assert hass.states.get(mode).state == "stream_and_record"
    assert (await hub.read(status_active))["value"] is True

    await apply(0, 0, 0)
    assert hass.states.get(mode).state == "off"
    assert await hub.next_event(status_active) is False
    assert hass.states.get("switch.front_door_homekit_camera").state == "off"
    code, body = await hub.snapshot(reason=1)
    assert (code, json.loads(body)) == (207, {"status": HapStatus.NOT_ALLOWED_IN_CURRENT_STATE})

    await apply(0, 1, 0)
    assert hass.states.get(mode).state == "detect_activity"
    assert await hub.next_event(status_active) is True

    await apply(1, 1, 0)
    assert hass.states.get(mode).state == "stream"
    code, body = await hub.snapshot()
    assert (code, body) == (200, JPEG)

    # Turning the camera off from Home Assistant reaches the hub too (both directions).
    await hass.services.async_call(
        "switch", "turn_off", {"entity_id": "switch.front_door_homekit_camera"}, blocking=True
    )
    assert await hub.next_event(status_active) is False
    assert (await hub.read(camera))["value"] == 0


async def test_values_outside_0_1_are_refused(hub: HubController) -> None:
    """State characteristics accept only 0 and 1."""
    result = await hub.write(hub.iid("21A", "21B"), 5)
    assert result["status"] == HapStatus.INVALID_VALUE_IN_REQUEST
    assert (await hub.read(hub.iid("21A", "21B")))["value"] == 1


async def test_timed_write_is_enforced(hub: HubController) -> None:
    """RecordingAudioActive (tw) refuses plain writes and accepts /prepare + pid."""
    iid = hub.iid("204", "226")
    result = await hub.write(iid, 1)
    assert result["status"] == HapStatus.INVALID_VALUE_IN_REQUEST
    assert (await hub.read(iid))["value"] == 0
    assert await hub.timed_write(iid, 1) == {}
    assert (await hub.read(iid))["value"] == 1
    # An unknown pid does not count as prepared.
    result = await hub.write(iid, 0, pid=123)
    assert result["status"] == HapStatus.INVALID_VALUE_IN_REQUEST


async def test_expired_timed_write_is_refused(hub: HubController) -> None:
    """A write after the prepared ttl has passed is refused."""
    iid = hub.iid("204", "226")
    assert hub.pairing is not None
    await hub.pairing.connection.put_json("/prepare", {"ttl": 1, "pid": 77})
    await asyncio.sleep(0.05)
    assert (await hub.write(iid, 1, pid=77))["status"] == HapStatus.INVALID_VALUE_IN_REQUEST


async def _user_controller(hub: HubController, port: int) -> HubController:
    """Add a second, non-admin controller through the admin's /pairings and connect it."""
    key = ed25519.Ed25519PrivateKey.generate()
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    private = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    pairing_id = str(uuid.uuid4())
    assert hub.pairing is not None
    await hub.pairing.add_pairing(pairing_id, public.hex(), "User")
    data = hub.pairing_data | {
        "iOSPairingId": pairing_id,
        "iOSDeviceLTSK": private.hex(),
        "iOSDeviceLTPK": public.hex(),
    }
    user = HubController(port, alias="user")
    user.adopt(data)
    user.accessories = hub.accessories
    return user


async def test_admin_only_writes(hass: HomeAssistant, hub: HubController) -> None:
    """A non-admin controller cannot change state characteristics (-70401) but may read."""
    bridge = hass.config_entries.async_entries("hksv")[0].runtime_data
    user = await _user_controller(hub, bridge.port)
    try:
        for service, char, value in (
            ("21A", "21B", 0),
            ("204", "B0", 1),
            ("204", "209", hub_write()),
            ("110", "B0", 0),
            ("21A", "223", 0),
        ):
            result = await user.write(user.iid(service, char), value)
            assert result["status"] == HapStatus.INSUFFICIENT_PRIVILEGES, (service, char)
        assert (await user.read(user.iid("21A", "21B")))["value"] == 1
        # Not admin-only in HAP-NodeJS: RecordingAudioActive (still timed).
        assert await user.timed_write(user.iid("204", "226"), 1) == {}
    finally:
        await user.close()


async def test_read_only_and_unknown_characteristics(hub: HubController) -> None:
    """Writes to read-only or missing characteristics get their own statuses."""
    assert (await hub.write(hub.iid("85", "22"), True))[
        "status"
    ] == HapStatus.READ_ONLY_CHARACTERISTIC
    assert (await hub.write(999, 1))["status"] == HapStatus.RESOURCE_DOES_NOT_EXIST
    assert (await hub.read(999))["status"] == HapStatus.RESOURCE_DOES_NOT_EXIST
    code, body = await hub.raw("PUT", "/characteristics", b"{not json")
    assert code == 400
    assert json.loads(body)["status"] == HapStatus.INVALID_VALUE_IN_REQUEST


async def test_motion_and_doorbell_notifications(hass: HomeAssistant, hub: HubController) -> None:
    """Motion follows the binary sensor; a doorbell event rings and counts as motion."""
    motion, bell = hub.iid("85", "22"), hub.iid("121", "73")
    await hub.subscribe(motion, bell)
    hass.states.async_set(MOTION_ID, "on", {"device_class": "motion"})
    assert await hub.next_event(motion) is True
    hass.states.async_set(MOTION_ID, "off", {"device_class": "motion"})
    assert await hub.next_event(motion) is False

    hass.states.async_set(
        DOORBELL_ID, "2026-11-21T10:00:00.000+00:00", {"device_class": "doorbell"}
    )
    assert await hub.next_event(bell) == 0
    assert await hub.next_event(motion) is True
    # A doorbell press is held as motion for a while, then released.
    async_fire_time_changed(hass, dt_util.utcnow() + timedelta(seconds=EVENT_MOTION_SECONDS + 1))
    assert await hub.next_event(motion) is False


async def test_snapshot_reasons(
    hass: HomeAssistant, hub: HubController, fake_camera: FakeCamera
) -> None:
    """Snapshots honour the operating-mode flags and the request's reason (§6.1)."""
    code, body = await hub.snapshot(320, 180, reason=0)
    assert (code, body) == (200, JPEG)
    assert fake_camera.image_requests[-1] == (320, 180)

    assert await hub.write(hub.iid("21A", "223"), 0) == {}  # EventSnapshotsActive off
    code, body = await hub.snapshot(reason=1)
    assert (code, json.loads(body)) == (207, {"status": HapStatus.NOT_ALLOWED_IN_CURRENT_STATE})
    code, body = await hub.snapshot()
    assert (code, json.loads(body)) == (207, {"status": HapStatus.INSUFFICIENT_PRIVILEGES})
    assert (await hub.snapshot(reason=0))[0] == 200

    assert await hub.write(hub.iid("21A", "223"), 1) == {}
    assert await hub.write(hub.iid("21A", "225"), 0) == {}  # PeriodicSnapshotsActive off
    code, body = await hub.snapshot(reason=0)
    assert (code, json.loads(body)) == (207, {"status": HapStatus.NOT_ALLOWED_IN_CURRENT_STATE})
    assert (await hub.snapshot(reason=1))[0] == 200

    fake_camera.image = None
    code, body = await hub.snapshot(reason=1)
    assert (code, json.loads(body)) == (207, {"status": HapStatus.SERVICE_COMMUNICATION_FAILURE})

    code, body = await hub.raw("POST", "/resource", b'{"resource-type": "video"}')
    assert code == 400


async def _unverified_post(port: int, path: str, content_type: str, body: bytes) -> bytes:
    """POST on a plain TCP connection that never did pair-verify; return the raw response."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: hksv\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
    )
    await writer.drain()
    response = await asyncio.wait_for(reader.read(4096), 10)
    writer.close()
    await writer.wait_closed()
    return response


async def test_unverified_resource_is_refused(
    hass: HomeAssistant, init_integration: MockConfigEntry, fake_camera: FakeCamera
) -> None:
    """/resource on a connection that never did pair-verify gets 401, not a picture."""
    bridge = init_integration.runtime_data
    body = json.dumps({"resource-type": "image", "image-width": 64, "image-height": 64}).encode()
    response = await _unverified_post(bridge.port, "/resource", "application/hap+json", body)
    assert response.startswith(b"HTTP/1.1 401")
    assert b'"status": -70401' in response or b'"status":-70401' in response
    assert fake_camera.image_requests == []


async def test_unverified_pairings_is_an_auth_error(
    hass: HomeAssistant, init_integration: MockConfigEntry
) -> None:
    """/pairings without pair-verify answers a TLV authentication error (HAP-python: 500)."""
    bridge = init_integration.runtime_data
    body = bytes.fromhex("060101000105")  # state M1, method list pairings
    response = await _unverified_post(bridge.port, "/pairings", "application/pairing+tlv8", body)
    assert response.startswith(b"HTTP/1.1 200")
    assert response.endswith(bytes.fromhex("060102070102"))


async def test_data_stream_setup_write_response(hub: HubController, hass: HomeAssistant) -> None:
    """SetupDataStreamTransport answers with port and salt; later reads omit the salt."""
    iid = hub.iid("129", "131")
    assert (await hub.read(iid))["value"] == ""
    request = bytes.fromhex("0101000201000320") + bytes(range(32))
    result = await hub.write_with_response(iid, base64.b64encode(request).decode())
    assert result["status"] == 0
    response = base64.b64decode(result["value"])
    bridge = hass.config_entries.async_entries("hksv")[0].runtime_data
    port = bridge.data_stream.port
    assert response[:9] == bytes.fromhex("01010002040102") + port.to_bytes(2, "little")
    assert response[9:11] == bytes.fromhex("0320") and len(response) == 43
    assert await hub.read_tlv(iid) == response[:9]

    for bad in (
        bytes.fromhex("0101010201000320") + bytes(32),  # command 1
        bytes.fromhex("0101000201010320") + bytes(32),  # transport 1
        bytes.fromhex("0101000201000310") + bytes(16),  # short salt
        bytes.fromhex("0101"),
    ):
        result = await hub.write_with_response(iid, base64.b64encode(bad).decode())
        assert result["status"] == HapStatus.INVALID_VALUE_IN_REQUEST


async def test_state_survives_restart(
    hass: HomeAssistant, hub: HubController, init_integration: MockConfigEntry
) -> None:
    """A reload (new driver, same storage) keeps the pairing, the selection and every flag."""
    selection = await _select(hub)
    assert await hub.write(hub.iid("204", "B0"), 1) == {}
    assert await hub.timed_write(hub.iid("204", "226"), 1) == {}
    assert await hub.write(hub.iid("21A", "225"), 0) == {}
    assert await hub.write(hub.iid("110", "B0"), 0) == {}
    bridge = init_integration.runtime_data
    code, mac, port = bridge.setup_code, bridge.mac, bridge.port
    old_driver = bridge.driver

    assert await hass.config_entries.async_reload(init_integration.entry_id)
    await hass.async_block_till_done()
    bridge = init_integration.runtime_data
    assert bridge.driver is not old_driver
    assert (bridge.setup_code, bridge.mac, bridge.port) == (code, mac, port)
    assert bridge.paired

    # The same controller reconnects with its existing keys (pair-verify on the new server).
    await hub.close()
    again = HubController(port)
    again.adopt(hub.pairing_data)
    again.accessories = hub.accessories
    try:
        assert (await again.read(again.iid("204", "209")))["value"] == selection
        assert (await again.read(again.iid("204", "B0")))["value"] == 1
        assert (await again.read(again.iid("204", "226")))["value"] == 1
        assert (await again.read(again.iid("21A", "225")))["value"] == 0
        assert (await again.read(again.iid("110", "B0")))["value"] == 0
        assert (await again.read(again.iid("85", "75")))["value"] is True
    finally:
        await again.close()


async def test_removing_last_pairing_resets(
    hass: HomeAssistant, hub: HubController, init_integration: MockConfigEntry
) -> None:
    """Unpairing the last controller returns to the factory state and shows the code again."""
    await _select(hub)
    assert await hub.write(hub.iid("204", "B0"), 1) == {}
    assert await hub.write(hub.iid("21A", "21B"), 0) == {}
    await hub.remove_pairing()
    await hass.async_block_till_done()
    bridge = init_integration.runtime_data
    assert not bridge.paired
    state = bridge.accessory.state
    assert state.selected_configuration is None
    assert not state.recording_active and state.homekit_camera_active
    assert notification_id(init_integration.entry_id) in async_get_persistent_notifications(hass)
    # And a hub can pair again (with the new code shown; test_setup_code.py checks rotation).
    again = HubController(bridge.port, alias="again")
    await again.pair(bridge.setup_code)
    await again.close()


async def test_reset_pairing_from_home_assistant(
    hass: HomeAssistant, hub: HubController, init_integration: MockConfigEntry
) -> None:
    """The reset button removes every pairing."""
    await hass.services.async_call(
        "button", "press", {"entity_id": "button.front_door_reset_homekit_pairing"}, blocking=True
    )
    await hass.async_block_till_done()
    assert not init_integration.runtime_data.paired
    assert hass.states.get("binary_sensor.front_door_paired").state == "off"
    assert hass.states.get("image.front_door_pairing_qr_code").state != "unavailable"


async def test_pairing_qr_view(
    hass: HomeAssistant, init_integration: MockConfigEntry, hass_client_no_auth: Any
) -> None:
    """The notification's QR image is served only with the right secret while unpaired."""
    bridge = init_integration.runtime_data
    client = await hass_client_no_auth()
    url = f"/api/hksv/pairingqr/{init_integration.entry_id}"
    response = await client.get(url, params={"secret": bridge.qr_secret})
    assert response.status == 200
    assert response.content_type == "image/svg+xml"
    assert b"<svg" in await response.read()
    assert (await client.get(url, params={"secret": "wrong"})).status == 404
    assert (await client.get("/api/hksv/pairingqr/nope", params={"secret": "x"})).status == 404


async def test_options_reload_into_the_offer(
    hass: HomeAssistant, hub: HubController, init_integration: MockConfigEntry
) -> None:
    """Saving options reloads the accessory: the offer changes and the old selection goes."""
    await _select(hub)
    result = await hass.config_entries.options.async_init(init_integration.entry_id)
    result = await hass.config_entries.options.async_configure(
        result["flow_id"],
        {
            OPT_MAX_RESOLUTION: "720p",
            OPT_MAX_BITRATE: 1000,
            OPT_AUDIO: True,
            OPT_VIDEO_MODE: "auto",
            OPT_PREBUFFER: 6,
        },
    )
    await hass.async_block_till_done()
    bridge = init_integration.runtime_data
    offer = bridge.accessory.offer
    attrs = offer.video.codec_configurations[0].attributes
    assert [(a.width, a.height) for a in attrs] == [(1280, 720)]
    assert offer.camera.prebuffer_length == 6000
    assert bridge.accessory.state.selected_configuration is None
    assert bridge.paired


@pytest.mark.parametrize("with_doorbell", [False])
async def test_event_entity_as_motion_source(
    hass: HomeAssistant,
    socket_enabled: None,
    mock_async_zeroconf: Any,
    fake_camera: FakeCamera,
    mock_config_entry: MockConfigEntry,
    session_keys: None,
) -> None:
    """An `event` entity as motion source pulses MotionDetected for each event."""
    event_id = "event.front_door_person"
    hass.states.async_set(event_id, "unknown", {"event_types": ["person"]})
    hass.config_entries.async_update_entry(
        mock_config_entry, data={**mock_config_entry.data, "motion_entity_id": event_id}
    )
    assert await hass.config_entries.async_setup(mock_config_entry.entry_id)
    await hass.async_block_till_done()
    bridge = mock_config_entry.runtime_data
    hub = HubController(bridge.port)
    await hub.pair(bridge.setup_code)
    try:
        motion = hub.iid("85", "22")
        await hub.subscribe(motion)
        hass.states.async_set(
            event_id, "2026-11-21T10:00:00.000+00:00", {"event_types": ["person"]}
        )
        assert await hub.next_event(motion) is True
        async_fire_time_changed(
            hass, dt_util.utcnow() + timedelta(seconds=EVENT_MOTION_SECONDS + 1)
        )
        assert await hub.next_event(motion) is False
        # The entity becoming available again restores its last event: not a new one.
        hass.states.async_set(event_id, "unavailable")
        hass.states.async_set(
            event_id, "2026-11-21T10:00:00.000+00:00", {"event_types": ["person"]}
        )
        await hass.async_block_till_done()
        assert bridge.accessory.motion_detected is False
    finally:
        await hub.close()
        await hass.config_entries.async_unload(mock_config_entry.entry_id)
