"""The fMP4 layer stays pure: no Home Assistant, no PyAV."""

from __future__ import annotations

import ast
from pathlib import Path
import subprocess
import sys

import pytest

RECORDING = Path(__file__).resolve().parents[2] / "custom_components/hksv/recording"
PURE = ("fmp4", "gop", "shaper")
BANNED = ("homeassistant", "av")


@pytest.mark.parametrize("module", PURE)
def test_no_banned_imports_in_source(module: str) -> None:
    """Import neither homeassistant nor av, directly or from inside a function."""
    tree = ast.parse((RECORDING / f"{module}.py").read_text())
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            assert node.module in {m for m in PURE if m != module}, node.module
    assert not imported & set(BANNED)


def test_modules_load_alone() -> None:
    """Load the three files as a package of their own and see what they pulled in."""
    script = f"""
import importlib.util, sys, types
package = types.ModuleType("pure")
package.__path__ = [{str(RECORDING)!r}]
sys.modules["pure"] = package
for name in {PURE!r}:
    path = {str(RECORDING)!r} + "/" + name + ".py"
    spec = importlib.util.spec_from_file_location("pure." + name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["pure." + name] = module
    spec.loader.exec_module(module)
print(sorted(n for n in sys.modules if n.split(".")[0] in {BANNED!r}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
