"""Build one camera's HomeKit side: HAP-python's driver and accessory, and the HDS server."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
import os
from typing import Any

from homeassistant.components import network, zeroconf
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import HomeAssistant
from homeassistant.exceptions import ConfigEntryNotReady
from homeassistant.helpers import instance_id
from pyhap.loader import get_loader

from .const import ADDRESS_ALL, CONF_ADDRESS, DOMAIN, LOGGER, MANUFACTURER, MODEL
from .hap.accessory import AccessoryInfo, CameraOwner, HksvCamera
from .hap.camera_state import FACTORY_STATE, CameraState
from .hap.definitions import FIRMWARE_REVISION
from .hap.driver import ClientAddress, HksvDriver
from .hap.recording_config import RecordingOffer
from .hap.state_file import StateFileStatus, load_state_file
from .hds import DataStreamServer, HDSError
from .storage import persist_file_path


@dataclass(frozen=True, slots=True)
class HapListening:
    """Where the accessory listens and how mDNS announces it."""

    port: int
    address: str | None  # None: every interface
    advertised: list[str]
    zeroconf: Any  # Home Assistant's shared AsyncZeroconf
    zeroconf_server: str


def listen_address(entry: ConfigEntry) -> str | None:
    """Return the address HAP and HDS listen on (None: every interface)."""
    chosen = entry.options.get(CONF_ADDRESS) or entry.data.get(CONF_ADDRESS)
    return None if not chosen or chosen == ADDRESS_ALL else str(chosen)


async def async_hap_listening(hass: HomeAssistant, entry: ConfigEntry, port: int) -> HapListening:
    """Return where the entry's accessory listens and the addresses mDNS announces."""
    address = listen_address(entry)
    advertised = [address] if address else await network.async_get_announce_addresses(hass)
    zc = await zeroconf.async_get_async_instance(hass)
    uuid = await instance_id.async_get(hass)
    return HapListening(
        port=port,
        address=address,
        advertised=advertised,
        zeroconf=zc,
        zeroconf_server=f"{uuid}-{DOMAIN}.local.",
    )


def create_accessory(
    hass: HomeAssistant,
    *,
    entry_id: str,
    info: AccessoryInfo,
    listening: HapListening,
    setup_code: str,
    setup_id: str,
    state: CameraState,
    offer: RecordingOffer,
    owner: CameraOwner,
    on_paired_changed: Callable[[bool], None],
    on_connection_lost: Callable[[ClientAddress], None],
) -> tuple[HksvDriver, HksvCamera, StateFileStatus]:
    """Build the driver and accessory (key generation and file reads: executor only)."""
    persist_file = persist_file_path(hass, entry_id)
    os.makedirs(os.path.dirname(persist_file), exist_ok=True)
    advertised = listening.advertised
    driver = HksvDriver(
        listen_address=listening.address,
        on_paired_changed=on_paired_changed,
        on_connection_lost=on_connection_lost,
        address=advertised[0] if advertised else None,
        advertised_address=advertised,
        port=listening.port,
        persist_file=persist_file,
        pincode=setup_code.encode(),
        loop=hass.loop,
        async_zeroconf_instance=listening.zeroconf,
        zeroconf_server=listening.zeroconf_server,
        loader=get_loader(),
    )
    driver.state.setup_id = setup_id
    state_file = load_state_file(driver.persist_file, driver.encoder, driver.state)
    if state_file is StateFileStatus.LOST:
        # The selection and switches belonged to the lost pairing.
        state = FACTORY_STATE
    if state_file in (StateFileStatus.NEW, StateFileStatus.LOST):
        driver.persist()  # the new keys, before any controller can pair with them
    accessory = HksvCamera(driver, info, state, offer, owner)
    driver.accessory = accessory
    return driver, accessory, state_file


def accessory_info(
    *, name: str, entry_id: str, doorbell: bool, stream_slots: int, microphone: bool
) -> AccessoryInfo:
    """Return what the accessory tells HomeKit about itself."""
    return AccessoryInfo(
        name=name,
        manufacturer=MANUFACTURER,
        model=MODEL,
        serial_number=entry_id[:16],
        firmware_revision=FIRMWARE_REVISION,
        doorbell=doorbell,
        stream_slots=stream_slots,
        microphone=microphone,
    )


async def async_start_data_stream(
    address: str | None, accessory: HksvCamera, log_name: str
) -> DataStreamServer:
    """Listen for HDS on the HAP address, or on one dual-stack socket (IPv4 if no IPv6)."""
    for host in [address] if address else ["::", "0.0.0.0"]:  # noqa: S104 - like HAP
        server = DataStreamServer(host=host, delegate=accessory, log_name=log_name)
        try:
            await server.async_start()
        except HDSError as err:
            LOGGER.debug("%s: HDS cannot listen on %s: %s", log_name, host, err)
            continue
        return server
    raise ConfigEntryNotReady(
        translation_domain=DOMAIN,
        translation_key="data_stream_unavailable",
        translation_placeholders={"address": address or "::, 0.0.0.0"},
    )
