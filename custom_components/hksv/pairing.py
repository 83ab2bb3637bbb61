"""Pairing UX: setup code and ID, the X-HM setup URI, its QR code, the notification and view.

``CameraPairing`` holds one camera's pairing state; the bridge owns it, and the QR view finds it
through the entry's runtime data (``PairingOwner``) without importing the bridge.
"""

from __future__ import annotations

import io
import secrets
import string
from typing import Any, Final, Protocol

from aiohttp import web
from homeassistant.components import persistent_notification
from homeassistant.core import HomeAssistant
from homeassistant.helpers.http import HomeAssistantView
import pyqrcode

from .const import DOMAIN

# HAP spec §5.6.3.1: codes a user could guess are not allowed.
_INVALID_CODES: Final = frozenset(
    {f"{d * 3}-{d * 2}-{d * 3}" for d in "0123456789"} | {"123-45-678", "876-54-321"}
)
_SETUP_ID_ALPHABET: Final = string.digits + string.ascii_uppercase
QR_VIEW_URL: Final = f"/api/{DOMAIN}/pairingqr/{{entry_id}}"


def generate_setup_code() -> str:
    """Return a random valid setup code "XXX-XX-XXX"."""
    while True:
        digits = f"{secrets.randbelow(10**8):08d}"
        code = f"{digits[:3]}-{digits[3:5]}-{digits[5:]}"
        if code not in _INVALID_CODES:
            return code


def generate_setup_id() -> str:
    """Return a random 4-character setup ID (part of the QR payload and mDNS hash)."""
    return "".join(secrets.choice(_SETUP_ID_ALPHABET) for _ in range(4))


def _base36(number: int) -> str:
    """Return ``number`` in upper-case base 36."""
    out = ""
    while True:
        number, digit = divmod(number, 36)
        out = _SETUP_ID_ALPHABET[digit] + out
        if not number:
            return out


def setup_uri(category: int, setup_code: str, setup_id: str) -> str:
    """Return the X-HM:// setup payload the Home app reads from the QR code."""
    # Layout: version 3 bits, reserved 4, category 8, flags 4 (2 = IP), setup code 27 bits.
    payload = (category & 0xFF) << 31 | 2 << 27 | int(setup_code.replace("-", ""))
    return "X-HM://" + _base36(payload).rjust(9, "0") + setup_id


def qr_svg(uri: str) -> bytes:
    """Return the QR code of ``uri`` as SVG."""
    buffer = io.BytesIO()
    pyqrcode.create(uri).svg(buffer, scale=6, module_color="#000", background="#fff")
    return buffer.getvalue()


def notification_id(entry_id: str) -> str:
    """Return the persistent-notification id of an entry."""
    return f"{DOMAIN}_pairing_{entry_id}"


def show_pairing_notification(
    hass: HomeAssistant, entry_id: str, name: str, code: str, qr_secret: str
) -> None:
    """Show the setup code and QR code until the camera is paired."""
    url = QR_VIEW_URL.format(entry_id=entry_id) + f"?secret={qr_secret}"
    message = (
        f"To add **{name}** to the Home app, scan this code or enter **{code}**.\n\n"
        f"![QR code]({url})"
    )
    persistent_notification.async_create(
        hass, message, "HomeKit Secure Video pairing", notification_id(entry_id)
    )


def dismiss_pairing_notification(hass: HomeAssistant, entry_id: str) -> None:
    """Remove the pairing notification."""
    persistent_notification.async_dismiss(hass, notification_id(entry_id))


class CameraPairing:
    """One camera's setup code, setup ID, QR code and the secret that guards the QR view."""

    def __init__(self, hass: HomeAssistant, *, entry_id: str, name: str, category: int) -> None:
        """Start without a code; ``load`` reads or makes one."""
        self._hass = hass
        self._entry_id = entry_id
        self._name = name
        self._category = category
        self.setup_code = ""
        self.setup_id = ""
        self.qr_secret = secrets.token_urlsafe(16)
        self.qr = b""

    def load(self, stored: dict[str, Any]) -> None:
        """Take the code and ID from ``stored``; a new install gets new ones (stored too)."""
        if not stored.get("setup_code"):
            stored["setup_code"] = generate_setup_code()
            stored["setup_id"] = generate_setup_id()
        self.setup_code = stored["setup_code"]
        self.setup_id = stored["setup_id"]

    def rotate(self, stored: dict[str, Any]) -> None:
        """Replace the setup code (stored too) and the QR view's secret; the QR waits a render."""
        self.setup_code = generate_setup_code()
        stored["setup_code"] = self.setup_code
        self.qr_secret = secrets.token_urlsafe(16)
        self.qr = b""

    @property
    def uri(self) -> str:
        """Return the X-HM setup URI shown as the QR code."""
        return setup_uri(self._category, self.setup_code, self.setup_id)

    async def async_render_qr(self) -> None:
        """Render the QR code of the current code (executor: it is CPU work)."""
        self.qr = await self._hass.async_add_executor_job(qr_svg, self.uri)

    def update_message(self, paired: bool) -> None:
        """Show the setup code while unpaired, hide it once paired."""
        if paired:
            dismiss_pairing_notification(self._hass, self._entry_id)
        else:
            show_pairing_notification(
                self._hass, self._entry_id, self._name, self.setup_code, self.qr_secret
            )


class PairingOwner(Protocol):
    """What the QR view needs from an entry's runtime data."""

    @property
    def paired(self) -> bool:
        """Return True if at least one controller is paired."""

    @property
    def pairing(self) -> CameraPairing:
        """Return the camera's pairing state."""


class PairingQRView(HomeAssistantView):
    """Serve an unpaired camera's QR code to the notification (the secret guards it)."""

    url = QR_VIEW_URL
    name = f"api:{DOMAIN}:pairingqr"
    requires_auth = False  # <img> in a notification cannot send a bearer token

    async def get(self, request: web.Request, entry_id: str) -> web.Response:
        """Return the QR SVG if the secret matches and the camera is unpaired."""
        hass: HomeAssistant = request.app["hass"]
        entry = hass.config_entries.async_get_entry(entry_id)
        secret = request.query.get("secret", "")
        owner: PairingOwner | None = getattr(entry, "runtime_data", None) if entry else None
        if (
            entry is None
            or entry.domain != DOMAIN
            or owner is None
            or owner.paired
            or not secrets.compare_digest(secret, owner.pairing.qr_secret)
        ):
            return web.Response(status=404)
        return web.Response(body=owner.pairing.qr, content_type="image/svg+xml")
