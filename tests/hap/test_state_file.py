"""The pairing file's writes are atomic: a failed write leaves the previous state whole."""

from __future__ import annotations

import os
from pathlib import Path

from pyhap.encoder import AccessoryEncoder
from pyhap.state import State
import pytest

from custom_components.hksv.hap import state_file
from custom_components.hksv.hap.state_file import (
    StateFileStatus,
    backup_path,
    load_state_file,
    write_state_file,
)


def _state() -> State:
    return State(address="127.0.0.1", pincode=b"031-45-154", port=1)


def test_failed_write_keeps_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write that dies before the rename (disk full, power) leaves old files and no temp."""
    path = str(tmp_path / "hksv.entry.state")
    old = _state()
    write_state_file(path, AccessoryEncoder(), old)
    before = {name: Path(name).read_bytes() for name in (path, backup_path(path))}

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(state_file.os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space"):
        write_state_file(path, AccessoryEncoder(), _state())
    monkeypatch.undo()

    assert {name: Path(name).read_bytes() for name in before} == before
    assert not [name for name in os.listdir(tmp_path) if name.endswith(".tmp")]
    loaded = _state()
    assert load_state_file(path, AccessoryEncoder(), loaded) is StateFileStatus.LOADED
    assert loaded.mac == old.mac


def test_no_file_is_new_and_writes_are_private(tmp_path: Path) -> None:
    """A missing file means a new accessory; written copies are 0600."""
    path = str(tmp_path / "hksv.entry.state")
    assert load_state_file(path, AccessoryEncoder(), _state()) is StateFileStatus.NEW
    write_state_file(path, AccessoryEncoder(), _state())
    for name in (path, backup_path(path)):
        assert os.stat(name).st_mode & 0o077 == 0
