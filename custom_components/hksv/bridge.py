"""CameraBridge: one Home Assistant camera, its motion/doorbell entities, one HKSV accessory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any, Final

from homeassistant.components import camera
from homeassistant.config_entries import ConfigEntry
from homeassistant.core import CALLBACK_TYPE, HomeAssistant, callback
from homeassistant.exceptions import ConfigEntryNotReady, HomeAssistantError
from homeassistant.helpers import issue_registry as ir
from homeassistant.helpers.storage import Store
from pyhap.const import CATEGORY_CAMERA, CATEGORY_VIDEO_DOOR_BELL
from zeroconf import Error as ZeroconfError

from .accessory_setup import (
    accessory_info,
    async_hap_listening,
    async_start_data_stream,
    create_accessory,
)
from .archive.manager import CameraArchive, async_get_archive
from .camera_health import CameraHealth
from .camera_offer import CameraOffer
from .const import (
    CONF_CAMERA,
    CONF_DOORBELL,
    CONF_MOTION,
    CONF_PORT,
    DEFAULT_OPTIONS,
    DOMAIN,
    LOGGER,
    OPT_AUDIO,
    OPT_LIVE_SLOTS,
    OPT_VIDEO_MODE,
    VIDEO_MODE_COPY,
)
from .hap.accessory import CameraOwner, HksvCamera, SnapshotUnavailable
from .hap.camera_state import CameraState
from .hap.driver import ClientAddress, HksvDriver
from .hap.recording_config import SelectedCameraRecordingConfiguration, SourceVideo
from .hap.state_file import StateFileStatus
from .hds import DataSendCloseReason, DataStreamServer, HDSError, RecordingPacket
from .issues import async_clear_copy_problems, async_port_in_use, async_port_ok
from .live.manager import LiveStreamManager
from .pairing import CameraPairing, dismiss_pairing_notification
from .recording.recorder import RecordingController
from .storage import SAVE_DELAY, STORAGE_VERSION, readable_by_others, storage_key
from .triggers import CameraTriggers
from .wiring import create_live, follow_camera

type HksvConfigEntry = ConfigEntry[CameraBridge]

PROBE_SECONDS: Final = 30.0


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
        self.offer = CameraOffer(
            name=self.name,
            options=self.options,
            doorbell=self.doorbell_entity_id is not None,
            stored=lambda: self._stored,
            save=self._async_save,
            accessory=lambda: self.accessory,
        )
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
        offer = self.offer.build(source)
        state = CameraState.from_dict(self._stored.get("camera", {}))
        listening = await async_hap_listening(self.hass, self.entry, self.port)
        address = listening.address
        info = accessory_info(
            name=self.name,
            entry_id=self.entry.entry_id,
            doorbell=self.doorbell_entity_id is not None,
            stream_slots=int(self.options[OPT_LIVE_SLOTS]),
            microphone=bool(self.options[OPT_AUDIO]),
        )
        driver, accessory, state_file = await self.hass.async_add_executor_job(
            partial(
                create_accessory,
                self.hass,
                entry_id=self.entry.entry_id,
                info=info,
                listening=listening,
                setup_code=self.setup_code,
                setup_id=self.setup_id,
                state=state,
                offer=offer,
                owner=self,
                on_paired_changed=self._paired_changed,
                on_connection_lost=self._connection_lost,
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
            on_source_profile=self.offer.async_source_profile,
            clip_sink=self.archive,
        )
        self.data_stream = await async_start_data_stream(address, accessory, self.name)
        accessory.data_stream = self.data_stream
        self.live = create_live(
            self.hass,
            name=self.name,
            camera_entity_id=self.camera_entity_id,
            options=self.options,
            recorder=self.recorder,
            accessory=accessory,
            address=address,
            on_change=self._async_notify_listeners,
        )
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
        self.camera_health = follow_camera(
            self.hass,
            entry=self.entry,
            name=self.name,
            camera_entity_id=self.camera_entity_id,
            recorder=self.recorder,
            on_change=self._async_notify_listeners,
        )
        self._unsubs.append(self.camera_health.async_start())
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

    @callback
    def _async_save(self) -> None:
        """Save the state soon (coalesced)."""
        self._store.async_delay_save(lambda: self._stored, SAVE_DELAY)
