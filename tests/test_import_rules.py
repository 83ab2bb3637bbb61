"""The package's layering, checked on the source: who may import whom, and no circles.

- ``live/`` and ``recording/`` never import each other (both sit on ``source/`` and ``media/``),
  and ``live/`` never imports the HKSV recording TLV module for codec types (``media/h264.py``
  holds them).
- Only ``source/prebuffer.py`` touches Home Assistant's stream package: its private modules
  (``stream.core``, ``stream.worker``), the provider API, private attributes.
- No import circle between the package's modules at run time.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.import_graph import (
    PACKAGE,
    PACKAGE_NAME,
    Import,
    imports_of,
    package_imports,
    runtime_cycles,
)

RECORDING = f"{PACKAGE_NAME}.recording"
LIVE = f"{PACKAGE_NAME}.live"
RECORDING_TLVS = f"{PACKAGE_NAME}.hap.recording_config"

STREAM_PACKAGE = "homeassistant.components.stream"
STREAM_OWNER = "source/prebuffer.py"
# The provider API HA's own outputs (HLS, recorder) use: only the prebuffer may attach.
STREAM_PROVIDER_API = frozenset({"add_provider", "remove_provider", "outputs", "pyav_options"})


def live_layer_violations(imports: list[Import]) -> set[tuple[str, str, bool]]:
    """Return the live/ imports of recording/ or of the recording TLVs."""
    return {
        (found.source, found.module, found.type_only)
        for found in imports
        if found.source.startswith("live/")
        and (
            found.module == RECORDING
            or found.module.startswith(f"{RECORDING}.")
            or found.module == RECORDING_TLVS
        )
    }


def recording_layer_violations(imports: list[Import]) -> set[tuple[str, str, bool]]:
    """Return the recording/ imports of live/."""
    return {
        (found.source, found.module, found.type_only)
        for found in imports
        if found.source.startswith("recording/")
        and (found.module == LIVE or found.module.startswith(f"{LIVE}."))
    }


def stream_api_violations(root: Path, owner: str = STREAM_OWNER) -> list[str]:
    """Return where a module other than ``owner`` touches HA's stream package or internals.

    A module that imports Home Assistant may not read a private attribute of anything but
    itself (``self``, ``cls``, ``super()``): in such a module that is how HA's internals leak.
    """
    found: list[str] = []
    for path in sorted(root.rglob("*.py")):
        source = str(path.relative_to(root))
        if source == owner:
            continue
        tree = ast.parse(path.read_text(), str(path))
        uses_ha = False
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            for module in modules:
                uses_ha |= module.split(".")[0] == "homeassistant"
                if module == STREAM_PACKAGE or module.startswith(f"{STREAM_PACKAGE}."):
                    found.append(f"{source}:{node.lineno} imports {module}")
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute):
                continue
            base = ast.unparse(node.value)
            if base in {"self", "cls"} or base.startswith("super("):
                continue
            if node.attr in STREAM_PROVIDER_API:
                found.append(f"{source}:{node.lineno} uses {base}.{node.attr}")
            elif uses_ha and node.attr.startswith("_") and not node.attr.startswith("__"):
                found.append(f"{source}:{node.lineno} reads {base}.{node.attr}")
    return found


def test_live_does_not_import_recording() -> None:
    """live/ reaches neither recording/ nor the recording TLVs, not even for a type."""
    assert sorted(live_layer_violations(package_imports())) == []


def test_recording_does_not_import_live() -> None:
    """recording/ reaches nothing in live/, not even for a type."""
    assert sorted(recording_layer_violations(package_imports())) == []


def test_only_the_prebuffer_touches_ha_stream_internals() -> None:
    """source/prebuffer.py is the one module on HA's private stream API."""
    assert stream_api_violations(PACKAGE) == []


def test_prebuffer_is_the_stream_owner() -> None:
    """The owner named above really is the module that attaches to HA's stream."""
    assert any(
        found.source == STREAM_OWNER and found.module.startswith(f"{STREAM_PACKAGE}.core")
        for found in package_imports()
    )


def test_no_import_cycles() -> None:
    """No two modules of the package import each other at run time, directly or not."""
    assert runtime_cycles() == []


# -- the rules can fail ---------------------------------------------------------------------


def _write(root: Path, files: dict[str, str]) -> Path:
    """Write a small package at ``root`` (every folder gets an empty __init__.py)."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for folder in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        (folder / "__init__.py").touch()
    return root


@pytest.mark.parametrize(
    "text",
    [
        "from ..recording.gop import Gop\n",
        "from ..recording import shaper\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..recording.x import Y\n",
        "def later():\n    from ..hap.recording_config import H264Level\n",
        "import custom_components.hksv.recording.mode\n",
    ],
)
def test_live_rule_catches(tmp_path: Path, text: str) -> None:
    """Any live/ import of recording/ or of the recording TLVs is found, type-only or not."""
    root = _write(tmp_path / "hksv", {"live/new.py": text, "recording/gop.py": ""})
    imports = [found for path in sorted(root.rglob("*.py")) for found in imports_of(path, root)]
    assert live_layer_violations(imports)


@pytest.mark.parametrize(
    "text",
    [
        "from ..live.session import LiveSession\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..live import manager\n",
        "import custom_components.hksv.live.policy\n",
    ],
)
def test_recording_rule_catches(tmp_path: Path, text: str) -> None:
    """Any recording/ import of live/ is found, type-only or not."""
    root = _write(tmp_path / "hksv", {"recording/new.py": text, "live/session.py": ""})
    imports = [found for path in sorted(root.rglob("*.py")) for found in imports_of(path, root)]
    assert recording_layer_violations(imports)


@pytest.mark.parametrize(
    "text",
    [
        "from homeassistant.components.stream.core import StreamOutput\n",
        "from homeassistant.components.stream import worker\n",
        "import homeassistant.components.stream.worker\n",
        "def attach(stream):\n    return stream.add_provider('x')\n",
        "from homeassistant.core import HomeAssistant\n\ndef peek(stream):\n"
        "    return stream._outputs\n",
    ],
)
def test_stream_rule_catches(tmp_path: Path, text: str) -> None:
    """A second module on HA's stream internals is found."""
    root = _write(tmp_path / "hksv", {"recording/other.py": text})
    assert stream_api_violations(root)


def test_stream_rule_lets_the_owner_and_own_privates_pass(tmp_path: Path) -> None:
    """The owner may; others may read their own private attributes."""
    root = _write(
        tmp_path / "hksv",
        {
            STREAM_OWNER: "from homeassistant.components.stream.core import StreamOutput\n",
            "bridge.py": "from homeassistant.core import HomeAssistant\n\n"
            "class A:\n    def f(self):\n        return self._x\n",
        },
    )
    assert stream_api_violations(root) == []


def test_cycle_check_catches(tmp_path: Path) -> None:
    """A circle through three modules is found; a type-only back edge is not one."""
    root = _write(
        tmp_path / "hksv",
        {
            "a.py": "from . import b\n",
            "b.py": "from .c import X\n",
            "c.py": "def f():\n    from .a import Y\n",
            "d.py": "from .a import Z\n",
            "e.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import W\n",
        },
    )
    assert runtime_cycles(root, PACKAGE_NAME) == [
        [f"{PACKAGE_NAME}.a", f"{PACKAGE_NAME}.b", f"{PACKAGE_NAME}.c"]
    ]
