"""HAP-python's state file (keys, pairings, device id): durable writes and a last good copy.

HAP-python writes the file without fsync and fails to start on any damage, which leaves the
entry in SETUP_ERROR. Here every write goes to a temporary file that is fsynced and renamed
(then the directory fsynced), first for the file and then for its copy, so at every moment at
least one of the two is a complete state. Loading takes the first copy that is a usable state;
if neither is, the damaged files are kept aside and the caller starts a fresh accessory.

Executor only: everything here is blocking file I/O.
"""

from __future__ import annotations

import contextlib
import copy
from enum import Enum
import io
import logging
import os
import re
import tempfile
from typing import Any, Final

from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

_LOGGER = logging.getLogger(__name__)

BACKUP_SUFFIX: Final = ".bak"
CORRUPT_SUFFIX: Final = ".corrupt"
_ED25519_KEY_LENGTH: Final = 32
_MAC: Final = re.compile(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}")
# What HAP-python's encoder raises on damaged JSON (wrong types, bad hex, bad key lengths).
_DAMAGE: Final = (ValueError, KeyError, TypeError, AttributeError)


class StateFileStatus(Enum):
    """What loading found."""

    NEW = "new"  # no file: a new accessory
    LOADED = "loaded"
    RESTORED = "restored"  # the file was damaged; its last good copy was used
    LOST = "lost"  # neither copy usable: keys and pairings are gone


def backup_path(path: str) -> str:
    """Return the path of the last good copy."""
    return path + BACKUP_SUFFIX


def all_state_files(path: str) -> list[str]:
    """Return every file this module may leave for ``path`` (to delete with the entry)."""
    copies = [path, backup_path(path)]
    return copies + [name + CORRUPT_SUFFIX for name in copies]


def write_state_file(path: str, encoder: Any, state: Any) -> None:
    """Write ``state`` durably to ``path`` and then to its copy (both 0600)."""
    buffer = io.StringIO()
    encoder.persist(buffer, state)
    text = buffer.getvalue()
    for target in (path, backup_path(path)):
        _write_atomically(target, text)


def load_state_file(path: str, encoder: Any, state: Any) -> StateFileStatus:
    """Load the first usable copy into ``state``; repair the file from the copy if needed."""
    candidates = [p for p in (path, backup_path(path)) if os.path.exists(p)]
    if not candidates:
        return StateFileStatus.NEW
    for candidate in candidates:
        text = _usable_text(candidate, encoder, state)
        if text is None:
            continue
        encoder.load_into(io.StringIO(text), state)
        if candidate == path:
            return StateFileStatus.LOADED
        _LOGGER.warning("%s is damaged; restored the pairing from %s", path, candidate)
        write_state_file(path, encoder, state)
        return StateFileStatus.RESTORED
    _LOGGER.error("%s and its copy are damaged; the HomeKit pairing is lost", path)
    for candidate in candidates:
        with contextlib.suppress(OSError):
            os.replace(candidate, candidate + CORRUPT_SUFFIX)
    return StateFileStatus.LOST


def _usable_text(path: str, encoder: Any, state: Any) -> str | None:
    """Return the file's text if it loads into a consistent state, else None."""
    try:
        with open(path, encoding="utf8") as file:
            text = file.read()
        probe = copy.copy(state)  # the encoder assigns attributes; the real state stays as is
        encoder.load_into(io.StringIO(text), probe)
    except (OSError, *_DAMAGE) as err:
        _LOGGER.warning("Cannot use %s: %s: %s", path, type(err).__name__, err)
        return None
    problem = _inconsistency(probe)
    if problem:
        _LOGGER.warning("Cannot use %s: %s", path, problem)
        return None
    return text


def _inconsistency(state: Any) -> str | None:
    """Return what makes a loaded state unusable, or None."""
    if not isinstance(state.mac, str) or not _MAC.fullmatch(state.mac):
        return "no valid device id"
    if not isinstance(state.config_version, int) or isinstance(state.config_version, bool):
        return "no valid configuration number"
    if not isinstance(state.paired_clients, dict) or any(
        not isinstance(key, bytes) or len(key) != _ED25519_KEY_LENGTH
        for key in state.paired_clients.values()
    ):
        return "a pairing without a valid controller key"
    derived = state.private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    if derived != state.public_key.public_bytes(Encoding.Raw, PublicFormat.Raw):
        return "the public key does not belong to the private key"
    return None


def _write_atomically(path: str, text: str) -> None:
    """Replace ``path`` with ``text``: temporary file (0600), fsync, rename, fsync the folder."""
    directory = os.path.dirname(path)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=".hksv-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf8") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(temporary)
        raise
    directory_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(directory_fd)
    finally:
        os.close(directory_fd)
