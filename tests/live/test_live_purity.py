"""Live view below the HA shell imports no Home Assistant, even indirectly (docs: layout)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "custom_components/hksv"
LIVE = (
    "manager",
    "slot_sessions",
    "slots",
    "endpoint_setup",
    "viewer_start",
    "viewer_reports",
    "viewers",
    "session",
    "source_switch",
    "video_sender",
    "source",
    "transport",
    "policy",
    "transcoded_feed",
    "opus_feed",
    "audio_sender",
)


def _runtime_imports(path: Path) -> set[str]:
    """Return the modules ``path`` imports at run time (not under ``if TYPE_CHECKING``)."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            for child in ast.walk(node):
                if isinstance(child, ast.Import):
                    found.update(alias.name for alias in child.names)
                elif isinstance(child, ast.ImportFrom):
                    base = _resolve(path, child.level, child.module)
                    found.add(base)

    visit(tree.body)
    return found


def _resolve(path: Path, level: int, module: str | None) -> str:
    """Return the absolute module name of a (possibly relative) import."""
    if level == 0:
        return module or ""
    parts = list(path.relative_to(PACKAGE.parent.parent).with_suffix("").parts)[:-level]
    return ".".join([*parts, module] if module else parts)


def _file(module: str) -> Path | None:
    """Return the source file of a package module, or None for anything else."""
    if not module.startswith("custom_components.hksv"):
        return None
    path = PACKAGE.parent.parent / module.replace(".", "/")
    if path.with_suffix(".py").exists():
        return path.with_suffix(".py")
    return None


@pytest.mark.parametrize("module", LIVE)
def test_no_home_assistant_below_the_manager(module: str) -> None:
    """Follow run-time imports through the package: none reaches homeassistant."""
    seen: set[Path] = set()
    todo = [PACKAGE / "live" / f"{module}.py"]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for imported in _runtime_imports(path):
            assert not imported.startswith("homeassistant"), (path.name, imported)
            target = _file(imported)
            if target is not None:
                todo.append(target)
    assert PACKAGE / "live" / "manager.py" in seen or module != "manager"
