"""Package rules: hds/ imports nothing from Home Assistant and works without it."""

from __future__ import annotations

import ast
from pathlib import Path
import subprocess
import sys

import pytest

import custom_components.hksv.hds as hds_package
from custom_components.hksv.hds import (
    DataSendCloseReason,
    HDSClosedError,
    HDSConnectionError,
    HDSDecryptError,
    HDSError,
    HDSFrameError,
    HDSProtocolError,
    HDSTimeoutError,
    OpackError,
)

HDS_DIR = Path(hds_package.__file__).parent
SOURCES = sorted(HDS_DIR.glob("*.py"))
ALLOWED_THIRD_PARTY = {"cryptography"}


def _imports(path: Path) -> list[tuple[str, int]]:
    """Return (module, relative level) for every import in a source file."""
    found: list[tuple[str, int]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, 0) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level))
    return found


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: p.name)
def test_no_home_assistant_import(path: Path) -> None:
    """hds/ imports only the standard library, cryptography and itself."""
    for module, level in _imports(path):
        assert level <= 1, f"{path.name} reaches outside hds/ with a relative import"
        if level == 0:
            top = module.split(".")[0]
            assert top != "homeassistant", f"{path.name} imports {module}"
            assert top in sys.stdlib_module_names or top in ALLOWED_THIRD_PARTY, (
                f"{path.name} imports {module}"
            )


def test_imports_without_home_assistant() -> None:
    """Every hds module imports in a fresh interpreter where homeassistant cannot load."""
    root = HDS_DIR.parents[2]
    code = f"""
import sys, types
sys.modules["homeassistant"] = None
for name, path in (("custom_components", {str(root / "custom_components")!r}),
                   ("custom_components.hksv", {str(HDS_DIR.parent)!r})):
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module
import custom_components.hksv.hds as hds
for name in {[path.stem for path in SOURCES if path.stem != "__init__"]!r}:
    __import__(f"custom_components.hksv.hds.{{name}}")
assert hds.opack_decoder.decode(hds.opack_encoder.encode({{"a": [1, b"x"]}})) == {{"a": [1, b"x"]}}
print("ok")
"""
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def test_error_hierarchy() -> None:
    """Every HDS error is an HDSError; OpackError is a ValueError."""
    for error in (HDSConnectionError, HDSDecryptError, HDSTimeoutError, HDSClosedError):
        assert issubclass(error, HDSError)
    assert issubclass(HDSFrameError, HDSProtocolError)
    assert issubclass(OpackError, ValueError)
    err = HDSProtocolError(DataSendCloseReason.BUSY)
    assert (err.reason, str(err)) == (DataSendCloseReason.BUSY, "BUSY")
    assert HDSFrameError("x").reason is DataSendCloseReason.PROTOCOL_ERROR
