"""CameraBridge: one Home Assistant camera, its motion/doorbell entities, one HKSV accessory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import asdict
from functools import partial
import os
import stat
import time
from typing import Any, Final

from homeassistant.components import camera, network, zeroconf
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryNotReady, HomeAssistantError
from homeassistant.helpers import instance_id, issue_registry as ir
from homeassistant.helpers.storage import Store
from pyhap.const import CATEGORY_CAMERA, CATEGORY_VIDEO_DOOR_BELL
from pyhap.loader import get_loader
from zeroconf import Error as ZeroconfError

from .archive.manager import CameraArchive, async_get_archive
from .camera_health import CameraHealth
from .const import (
    ADDRESS_ALL,
    CONF_ADDRESS,
    CONF_CAMERA,
    CONF_DOORBELL,
    CONF_MOTION,
    CONF_PORT,
    DEFAULT_OPTIONS,
    DOMAIN,
    LOGGER,
    MANUFACTURER,
    MODEL,
    OPT_AUDIO,
    OPT_LIVE_DIRECT,
    OPT_LIVE_MAX_BITRATE,
    OPT_LIVE_MODE,
    OPT_LIVE_SLOTS,
    OPT_MAX_RESOLUTION,
    OPT_PREBUFFER,
    OPT_VIDEO_MODE,
    RESOLUTION_HEIGHT,
    VIDEO_MODE_COPY,
)
from .hap.accessory import AccessoryInfo, CameraOwner, HksvCamera, SnapshotUnavailable
from .hap.camera_state import FACTORY_STATE, CameraState
from .hap.definitions import FIRMWARE_REVISION
from .hap.driver import ClientAddress, HksvDriver
from .hap.recording_config import (
    LastingChange,
    RecordingOffer,
    SelectedCameraRecordingConfiguration,
    SourceVideo,
    build_offer,
)
from .hap.state_file import StateFileStatus, load_state_file
from .hds import DataSendCloseReason, DataStreamServer, HDSError, RecordingPacket
from .issues import async_clear_copy_problems, async_port_in_use, async_port_ok
from .live.direct import DirectFeed
from .live.manager import LiveStreamManager
from .live.policy import LiveModeOption
from .live.source import LiveFeed
from .live.viewers import LiveOptions
from .pairing import CameraPairing, dismiss_pairing_notification
from .recording.recorder import RecordingController
from .source.gop import profile_source
from .triggers import CameraTriggers

type HksvConfigEntry = ConfigEntry[CameraBridge]

STORAGE_VERSION: Final = 1
_SAVE_DELAY: Final = 2.0
PROBE_SECONDS: Final = 30.0


def persist_file_path(hass: HomeAssistant, entry_id: str) -> str:
    """Return the HAP-python state file (pairings and keys) of an entry."""
    return hass.config.path(".storage", f"{DOMAIN}.{entry_id}.state")


def storage_key(entry_id: str) -> str:
    """Return the Store key of an entry's camera state."""
    return f"{DOMAIN}.{entry_id}"


class CameraBridge(CameraOwner):
    """Wire one HA camera and its sensors to one HomeKit camera accessory and recorder."""

    def __init__(self, hass: HomeAssistant, entry: HksvConfigEntry) -> None:
        """Prepare; nothing runs until async_start."""
        self.hass = hass
        self.entry = entry
        self.name: str = entry.title
        self.camera_entity_id: str = entry.data[CONF_CAMERA]
        self.motion_entity_id: str | None = entry.data.get(CONF_MOTION)
        self.doorbell_entity_id: str | None = entry.data.get(CONF_DOORBELL)
        self.options: dict[str, Any] = {**DEFAULT_OPTIONS, **entry.options}
        # Private (0600): the setup code is a secret until the camera is paired.
        self._store: Store[dict[str, Any]] = Store(
            hass, STORAGE_VERSION, storage_key(entry.entry_id), private=True
        )
        self._stored: dict[str, Any] = {}
        self.driver: HksvDriver | None = None
        self.accessory: HksvCamera | None = None
        self.data_stream: DataStreamServer | None = None
        self.recorder: RecordingController | None = None
        self.camera_health: CameraHealth | None = None
        self.live: LiveStreamManager | None = None
        self.pairing = CameraPairing(
            hass,
            entry_id=entry.entry_id,
            name=self.name,
            category=CATEGORY_VIDEO_DOOR_BELL if self.doorbell_entity_id else CATEGORY_CAMERA,
        )
        self.triggers = CameraTriggers(
            hass,
            entry_id=entry.entry_id,
            name=self.name,
            camera_entity_id=self.camera_entity_id,
            motion_entity_id=self.motion_entity_id,
            doorbell_entity_id=self.doorbell_entity_id,
            accessory=lambda: self.accessory,
            paired=lambda: self.paired,
            on_change=self._async_notify_listeners,
        )
        self._listeners: list[Callable[[], None]] = []
        self._unsubs: list[CALLBACK_TYPE] = []
        self._driver_started = False
        self._offer_change = LastingChange()
        self._stopped = False
        self.archive: CameraArchive | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def async_start(self) -> None:
        """Load state, build and start the accessory, and follow the HA entities."""
        self._stored = await self._store.async_load() or {}
        store_was_readable = await self.hass.async_add_executor_job(
            readable_by_others, self._store.path
        )
        self.pairing.load(self._stored)

        source = SourceVideo.from_dict(self._stored.get("source"))
        offer = self._build_offer(source)
        state = CameraState.from_dict(self._stored.get("camera", {}))
        address = listen_address(self.entry)
        advertised = [address] if address else await network.async_get_announce_addresses(self.hass)
        zc = await zeroconf.async_get_async_instance(self.hass)
        uuid = await instance_id.async_get(self.hass)
        driver, accessory, state_file = await self.hass.async_add_executor_job(
            partial(
                self._create_accessory,
                address=address,
                advertised=advertised,
                zc=zc,
                zeroconf_server=f"{uuid}-{DOMAIN}.local.",
                state=state,
                offer=offer,
            )
        )
        self.driver, self.accessory = driver, accessory
        # The accessory re-ties a stored selection that still fits to the current offer.
        self._stored["camera"] = accessory.state.to_dict()
        if state_file is StateFileStatus.LOST:
            await self._async_pairing_lost()
        self.archive = CameraArchive(
            async_get_archive(self.hass),
            entry_id=self.entry.entry_id,
            name=self.name,
            options=self.options,
            doorbell_pressed_at=lambda: self.triggers.doorbell_pressed_at,
            on_change=self._async_notify_listeners,
        )
        self._unsubs.append(await self.archive.archive.async_register(self.archive))
        self.recorder = RecordingController(
            self.hass,
            camera_entity_id=self.camera_entity_id,
            name=self.name,
            entry=self.entry,
            options=self.options,
            on_update=self._async_notify_listeners,
            on_source_profile=self._async_source_profile,
            clip_sink=self.archive,
        )
        self.data_stream = await self._async_start_data_stream(address, accessory)
        accessory.data_stream = self.data_stream
        self.live = self._create_live(self.recorder, accessory, address)
        accessory.live = self.live
        self.live.set_allowed(accessory.state.rtp_active and accessory.state.homekit_camera_active)
        try:
            await driver.async_start()
        except OSError as err:
            await self.data_stream.async_stop()
            async_port_in_use(self.hass, self.entry.entry_id, self.name, self.port)
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="port_in_use",
                translation_placeholders={"port": str(self.port)},
            ) from err
        except ZeroconfError as err:
            # The driver has freed its port again (HksvDriver.async_start): retrying works.
            raise ConfigEntryNotReady(
                translation_domain=DOMAIN,
                translation_key="mdns_unavailable",
                translation_placeholders={"error": repr(err)},
            ) from err
        self._driver_started = True
        async_port_ok(self.hass, self.entry.entry_id)
        if self.options[OPT_VIDEO_MODE] != VIDEO_MODE_COPY:
            async_clear_copy_problems(self.hass, self.entry.entry_id)
        if store_was_readable:
            # Written world-readable by an older version (and the code was a sensor state,
            # so it is in the recorder too): an unpaired camera gets a new code, and the
            # file is rewritten privately now rather than at the next change.
            LOGGER.info("%s: storing the setup code privately", self.name)
            if not self.paired:
                self._rotate_setup_code()
            await self._store.async_save(self._stored)
        await self.pairing.async_render_qr()
        self.triggers.async_start()
        self._follow_camera(self.recorder)
        self.pairing.update_message(self.paired)
        self._async_save()
        await self.recorder.async_set_enabled(
            accessory.state.recording_possible, accessory.selection
        )
        if "source" not in self._stored:
            # Learn the camera's format for the offer once; it is remembered afterwards.
            self.entry.async_create_background_task(
                self.hass, self.recorder.async_probe(PROBE_SECONDS), f"{DOMAIN} probe"
            )

    async def _async_start_data_stream(
        self, address: str | None, accessory: HksvCamera
    ) -> DataStreamServer:
        """Listen for HDS on the HAP address, or on one dual-stack socket (IPv4 if no IPv6)."""
        for host in [address] if address else ["::", "0.0.0.0"]:  # noqa: S104 - like HAP
            server = DataStreamServer(host=host, delegate=accessory, log_name=self.name)
            try:
                await server.async_start()
            except HDSError as err:
                LOGGER.debug("%s: HDS cannot listen on %s: %s", self.name, host, err)
                continue
            return server
        raise ConfigEntryNotReady(
            translation_domain=DOMAIN,
            translation_key="data_stream_unavailable",
            translation_placeholders={"address": address or "::, 0.0.0.0"},
        )

    def _create_live(
        self, recorder: RecordingController, accessory: HksvCamera, address: str | None
    ) -> LiveStreamManager:
        """Build live view on the recording prebuffer (one camera connection for both)."""
        prebuffer = recorder.prebuffer
        feed = LiveFeed(
            prebuffer,
            recording_wants_stream=lambda: accessory.state.recording_possible or recorder.streaming,
            log_name=self.name,
        )

        def source_profile() -> tuple[float | None, float | None]:
            profile = profile_source(prebuffer.gops)
            return profile.fps, profile.video_bitrate_kbps

        return LiveStreamManager(
            slots=accessory.stream_slots,
            feed=feed,
            publisher=accessory,
            source_profile=source_profile,
            options=LiveOptions(
                mode=LiveModeOption(self.options[OPT_LIVE_MODE]),
                max_bitrate_kbps=int(self.options[OPT_LIVE_MAX_BITRATE]),
                address=address,
            ),
            on_change=self._async_notify_listeners,
            log_name=self.name,
            audio_muted=lambda: not self.options[OPT_AUDIO] or accessory.microphone_muted,
            direct=(
                DirectFeed(
                    lambda: camera.async_get_stream_source(self.hass, self.camera_entity_id),
                    log_name=self.name,
                )
                if self.options[OPT_LIVE_DIRECT]
                else None
            ),
        )

    def _create_accessory(
        self,
        *,
        address: str | None,
        advertised: list[str],
        zc: Any,
        zeroconf_server: str,
        state: CameraState,
        offer: RecordingOffer,
    ) -> tuple[HksvDriver, HksvCamera, StateFileStatus]:
        """Build the driver and accessory (key generation and file reads: executor only)."""
        persist_file = persist_file_path(self.hass, self.entry.entry_id)
        os.makedirs(os.path.dirname(persist_file), exist_ok=True)
        driver = HksvDriver(
            listen_address=address,
            on_paired_changed=self._paired_changed,
            on_connection_lost=self._connection_lost,
            address=advertised[0] if advertised else None,
            advertised_address=advertised,
            port=self.port,
            persist_file=persist_file,
            pincode=self.setup_code.encode(),
            loop=self.hass.loop,
            async_zeroconf_instance=zc,
            zeroconf_server=zeroconf_server,
            loader=get_loader(),
        )
        driver.state.setup_id = self.setup_id
        state_file = load_state_file(driver.persist_file, driver.encoder, driver.state)
        if state_file is StateFileStatus.LOST:
            # The selection and switches belonged to the lost pairing.
            state = FACTORY_STATE
        if state_file in (StateFileStatus.NEW, StateFileStatus.LOST):
            driver.persist()  # the new keys, before any controller can pair with them
        info = AccessoryInfo(
            name=self.name,
            manufacturer=MANUFACTURER,
            model=MODEL,
            serial_number=self.entry.entry_id[:16],
            firmware_revision=FIRMWARE_REVISION,
            doorbell=self.doorbell_entity_id is not None,
            stream_slots=int(self.options[OPT_LIVE_SLOTS]),
            microphone=bool(self.options[OPT_AUDIO]),
        )
        accessory = HksvCamera(driver, info, state, offer, self)
        driver.accessory = accessory
        return driver, accessory, state_file

    async def async_stop(self) -> None:
        """Stop everything and save state (once: Home Assistant stopping, then unload)."""
        if self._stopped:
            return
        self._stopped = True
        for unsub in self._unsubs:
            unsub()
        self._unsubs.clear()
        self.triggers.async_stop()
        if self.live is not None:
            await self.live.async_stop()
        if self.recorder is not None:
            await self.recorder.async_stop()
        if self.data_stream is not None:
            await self.data_stream.async_stop()
        if self.driver is not None and self._driver_started:
            await self.driver.async_stop()
            # HAP-python persists in a background executor job; write the final state now.
            await self.hass.async_add_executor_job(self.driver.persist)
        dismiss_pairing_notification(self.hass, self.entry.entry_id)
        if self.accessory is not None:
            self._stored["camera"] = self.accessory.state.to_dict()
            await self._store.async_save(self._stored)

    # -- properties for entities and diagnostics ------------------------------------------

    @property
    def camera_available(self) -> bool:
        """Return True while the source camera and its stream are usable."""
        return self.camera_health is None or self.camera_health.available

    @property
    def port(self) -> int:
        """Return the HAP port."""
        return int(self.entry.data[CONF_PORT])

    @property
    def paired(self) -> bool:
        """Return True if at least one controller is paired."""
        return self.driver is not None and self.driver.state.paired

    @property
    def setup_code(self) -> str:
        """Return the setup code (a secret until the camera is paired)."""
        return self.pairing.setup_code

    @property
    def setup_id(self) -> str:
        """Return the setup ID (part of the QR payload and mDNS hash)."""
        return self.pairing.setup_id

    @property
    def qr_secret(self) -> str:
        """Return the secret the QR view asks for (a new one with every new code)."""
        return self.pairing.qr_secret

    @property
    def pairing_qr(self) -> bytes:
        """Return the QR code (SVG) the image entity and the notification show."""
        return self.pairing.qr

    @property
    def setup_uri(self) -> str:
        """Return the X-HM setup URI shown as the QR code."""
        return self.pairing.uri

    @property
    def mac(self) -> str:
        """Return the accessory's HAP device id."""
        return self.driver.state.mac if self.driver else ""

    @callback
    def async_add_listener(self, listener: Callable[[], None]) -> CALLBACK_TYPE:
        """Call ``listener`` whenever something entities show changes."""
        self._listeners.append(listener)

        def remove() -> None:
            self._listeners.remove(listener)

        return remove

    @callback
    def _async_notify_listeners(self) -> None:
        """Tell every entity to refresh."""
        for listener in list(self._listeners):
            listener()

    # -- pairing --------------------------------------------------------------------------

    def _paired_changed(self, paired: bool) -> None:
        """React to the first pairing or the removal of the last one (loop, HAP callback)."""
        if not paired:
            if self.accessory is not None:
                LOGGER.info("%s: last pairing removed; resetting to factory state", self.name)
                self.accessory.factory_reset()
            # Back to unpaired: whoever saw the old code must not be able to pair with it.
            self._rotate_setup_code()
            self.entry.async_create_task(
                self.hass, self._async_publish_new_code(), f"{DOMAIN} new setup code"
            )
            return
        ir.async_delete_issue(self.hass, DOMAIN, f"pairing_lost_{self.entry.entry_id}")
        self.pairing.update_message(self.paired)
        self._async_notify_listeners()

    async def _async_pairing_lost(self) -> None:
        """Start as a new accessory with a new code, and tell the user how to pair again."""
        self._rotate_setup_code()
        if self.accessory is not None:
            self._stored["camera"] = self.accessory.state.to_dict()
        await self._store.async_save(self._stored)
        ir.async_create_issue(
            self.hass,
            DOMAIN,
            f"pairing_lost_{self.entry.entry_id}",
            is_fixable=False,
            is_persistent=True,
            severity=ir.IssueSeverity.ERROR,
            translation_key="pairing_lost",
            translation_placeholders={"name": self.name},
        )

    def _rotate_setup_code(self) -> None:
        """Replace the setup code (and the QR view's secret); pair-setup uses it at once."""
        self.pairing.rotate(self._stored)
        if self.driver is not None:
            self.driver.state.pincode = self.setup_code.encode()

    async def _async_publish_new_code(self) -> None:
        """Save the new code now, then show it (notification, QR image)."""
        await self._store.async_save(self._stored)
        await self.pairing.async_render_qr()
        self.pairing.update_message(self.paired)
        self._async_notify_listeners()

    async def async_reset_pairing(self) -> None:
        """Remove every pairing (the user asked in HA), as if the last hub unpaired."""
        driver = self.driver
        if driver is None:
            return
        for client_uuid in list(driver.state.paired_clients):
            driver.state.remove_paired_client(client_uuid)
        await self.hass.async_add_executor_job(driver.persist)
        driver.async_update_advertisement()
        for proto in list(driver.http_server.connections.values()):
            proto.close()
        self._paired_changed(False)

    def _connection_lost(self, client: ClientAddress) -> None:
        """Drop HDS sessions and connections of a closed HAP connection."""
        if self.data_stream is not None:
            self.data_stream.hap_connection_lost(client)
        if self.live is not None:
            self.live.connection_lost(client)

    # -- CameraOwner ----------------------------------------------------------------------

    def state_changed(self, state: CameraState, previous: CameraState) -> None:
        """Persist and start/stop the prebuffer when recording becomes possible or not."""
        self._stored["camera"] = state.to_dict()
        self._async_save()
        if self.live is not None:
            self.live.set_allowed(state.rtp_active and state.homekit_camera_active)
        if state.recording_possible != previous.recording_possible or (
            state.selected_configuration != previous.selected_configuration
        ):
            selection = self.accessory.selection if self.accessory else None
            if self.recorder is not None:
                self.entry.async_create_task(
                    self.hass,
                    self.recorder.async_set_enabled(state.recording_possible, selection),
                    f"{DOMAIN} recording possible",
                )
        self._async_notify_listeners()

    async def async_snapshot(self, width: int, height: int) -> bytes:
        """Return a JPEG from the HA camera."""
        try:
            image = await camera.async_get_image(
                self.hass, self.camera_entity_id, width=width, height=height
            )
        except HomeAssistantError as err:
            raise SnapshotUnavailable(str(err)) from err
        return image.content

    def recording_stream_request(
        self, stream_id: int, selection: SelectedCameraRecordingConfiguration, audio: bool
    ) -> AsyncIterator[RecordingPacket]:
        """Hand the hub's recording request to the recorder."""
        if self.recorder is None:
            raise HDSError("recording is not running")
        return self.recorder.open_stream(stream_id, selection, audio)

    def recording_stream_acknowledged(self, stream_id: int) -> None:
        """Record the hub's acknowledgement."""
        if self.recorder is not None:
            self.recorder.stream_acknowledged(stream_id)

    def recording_stream_closed(self, stream_id: int, reason: DataSendCloseReason | None) -> None:
        """Record how a stream ended."""
        if self.recorder is not None:
            self.recorder.stream_closed(stream_id, reason)

    def recording_stream_refused(self, stream_id: int, reason: DataSendCloseReason) -> None:
        """Record an open the accessory refused."""
        if self.recorder is not None:
            self.recorder.stream_refused(stream_id, reason)

    # -- offer ----------------------------------------------------------------------------

    def _build_offer(self, source: SourceVideo) -> RecordingOffer:
        """Derive the offer from the camera's stream and the options."""
        return build_offer(
            source,
            max_height=RESOLUTION_HEIGHT[self.options[OPT_MAX_RESOLUTION]],
            prebuffer_ms=int(self.options[OPT_PREBUFFER]) * 1000,
            doorbell=self.doorbell_entity_id is not None,
        )

    @callback
    def _async_source_profile(self, source: SourceVideo) -> None:
        """Follow what the camera sends: the offer changes only when that change lasts.

        The first format learnt (a new install) is adopted at once; later a format that
        offers differently must last (``LastingChange``), so a camera that switches its
        picture for a moment never costs the hub's selection. The frame rate never matters.
        """
        offer = self._build_offer(source)
        accessory = self.accessory
        if "source" in self._stored and accessory is not None:
            current = accessory.offer.fingerprint
            if not self._offer_change.observe(offer.fingerprint, current, time.monotonic()):
                return
            LOGGER.info(
                "%s: the camera's format changed for good (%sx%s, audio %s %s Hz)",
                self.name,
                source.width,
                source.height,
                source.audio_codec,
                source.audio_sample_rate,
            )
        self._stored["source"] = asdict(source)
        self._async_save()
        if accessory is not None:
            accessory.update_offer(offer)

    # -- Home Assistant entities ----------------------------------------------------------

    def _follow_camera(self, recorder: RecordingController) -> None:
        """Follow the camera entity and its stream: entities depending on it follow them."""
        health = self.camera_health = CameraHealth(
            self.hass,
            name=self.name,
            camera_entity_id=self.camera_entity_id,
            stream_problem=lambda: recorder.prebuffer.source_problem,
            on_change=self._async_notify_listeners,
            on_camera_state=partial(self._async_camera_state_changed, recorder),
        )
        recorder.prebuffer.on_source_change = health.async_check
        self._unsubs.append(health.async_start())

    @callback
    def _async_camera_state_changed(self, recorder: RecordingController) -> None:
        """Attach the prebuffer at once when a camera it could not find shows up.

        After a restart the camera's integration may load after hksv: the first attach then
        fails ("Camera not found") and the watchdog would retry only 15 s later, so a hub's
        first open after the restart found no video (seen in benchmarks/soak.py runs).
        """
        prebuffer = recorder.prebuffer
        if prebuffer.running and prebuffer.source_problem is not None:
            self.entry.async_create_background_task(
                self.hass, prebuffer.async_attach_now(), f"{self.name} prebuffer attach"
            )

    @callback
    def _async_save(self) -> None:
        """Save the state soon (coalesced)."""
        self._store.async_delay_save(lambda: self._stored, _SAVE_DELAY)


def readable_by_others(path: str) -> bool:
    """Return True if ``path`` exists with group or world permissions (executor)."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode) & 0o077 != 0
    except FileNotFoundError:
        return False


def listen_address(entry: ConfigEntry) -> str | None:
    """Return the address HAP and HDS listen on (None: every interface)."""
    chosen = entry.options.get(CONF_ADDRESS) or entry.data.get(CONF_ADDRESS)
    return None if not chosen or chosen == ADDRESS_ALL else str(chosen)
