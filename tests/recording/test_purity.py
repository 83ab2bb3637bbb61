"""The fMP4 layer and the GOP/shaper logic stay pure: no Home Assistant, no PyAV."""

from __future__ import annotations

import ast
from pathlib import Path
import subprocess
import sys

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "custom_components/hksv"
PURE = (
    "source/gop.py",
    "source/part.py",
    "source/gop_buffer.py",
    "recording/shaper.py",
    *sorted(str(p.relative_to(PACKAGE)) for p in (PACKAGE / "media/fmp4").glob("*.py")),
)
BANNED = ("homeassistant", "av")


def _relative_target(path: Path, node: ast.ImportFrom) -> Path:
    """Return the file or package folder a relative import names."""
    base = path.parent
    for _ in range(node.level - 1):
        base = base.parent
    target = base.joinpath(*(node.module or "").split("."))
    return target.with_suffix(".py") if target.with_suffix(".py").exists() else target


@pytest.mark.parametrize("module", PURE)
def test_no_banned_imports_in_source(module: str) -> None:
    """Import neither homeassistant nor av, directly or from inside a function."""
    path = PACKAGE / module
    tree = ast.parse(path.read_text())
    imported: set[str] = set()
    pure_files = {PACKAGE / name for name in PURE}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            imported.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            target = _relative_target(path, node)
            if target.is_dir():
                target /= "__init__.py"
            assert target in pure_files, (module, ast.unparse(node))
    assert not imported & set(BANNED)


def test_modules_load_alone() -> None:
    """Load the pure modules where homeassistant and av cannot load; see what they pulled in."""
    names = [p.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for p in PURE]
    script = f"""
import sys, types
for banned in {BANNED!r}:
    sys.modules[banned] = None
for name, path in (("custom_components", {str(PACKAGE.parent)!r}),
                   ("custom_components.hksv", {str(PACKAGE)!r})):
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module
for name in {names!r}:
    __import__("custom_components.hksv." + name)
print(sorted(n for n in sys.modules if n.split(".")[0] in {BANNED!r} and sys.modules[n]))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
