"""The package's imports as data, read from the source (ast): for the layering tests."""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "custom_components/hksv"
PACKAGE_NAME = "custom_components.hksv"


@dataclass(frozen=True, slots=True)
class Import:
    """One imported module (or package module a ``from`` names), as an absolute name."""

    source: str  # the importing file, relative to the package: "live/source.py"
    module: str  # absolute: "custom_components.hksv.source.gop"
    names: tuple[str, ...]
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``


def module_name(root: Path, path: Path, package_name: str = PACKAGE_NAME) -> str:
    """Return the dotted module name of ``path`` inside the package at ``root``."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join([package_name, *parts])


def imports_of(path: Path, root: Path = PACKAGE, package_name: str = PACKAGE_NAME) -> list[Import]:
    """Return every import of ``path``, relative ones made absolute.

    ``from . import x`` where ``x`` is a module of the package counts as importing ``x``.
    """
    tree = ast.parse(path.read_text(), str(path))
    source = str(path.relative_to(root))
    found: list[Import] = []
    is_package = path.name == "__init__.py"
    own = module_name(root, path, package_name).split(".")

    def visit(nodes: list[ast.stmt], type_only: bool) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.body, True)
                visit(node.orelse, type_only)
                continue
            for child in ast.walk(node):
                if isinstance(child, ast.Import):
                    found.extend(
                        Import(source, alias.name, (), child.lineno, type_only)
                        for alias in child.names
                    )
                elif isinstance(child, ast.ImportFrom):
                    found.extend(_from_import(child, own, is_package, source, type_only, root))

    visit(tree.body, False)
    return found


def _from_import(
    node: ast.ImportFrom,
    own: list[str],
    is_package: bool,
    source: str,
    type_only: bool,
    root: Path,
) -> list[Import]:
    """Resolve one ``from … import …`` to the modules it loads."""
    names = tuple(alias.name for alias in node.names)
    if node.level == 0:
        return [Import(source, node.module or "", names, node.lineno, type_only)]
    base = own if is_package else own[:-1]
    base = base[: len(base) - (node.level - 1)]
    target = ".".join([*base, node.module] if node.module else base)
    result = [Import(source, target, names, node.lineno, type_only)]
    # ``from . import definitions``: the names may be modules themselves.
    folder = root.joinpath(*target.split(".")[2:])
    result.extend(
        Import(source, f"{target}.{name}", (), node.lineno, type_only)
        for name in names
        if (folder / f"{name}.py").exists() or (folder / name / "__init__.py").exists()
    )
    return result


def package_imports(root: Path = PACKAGE, package_name: str = PACKAGE_NAME) -> list[Import]:
    """Return the imports of every module of the package."""
    return [
        found
        for path in sorted(root.rglob("*.py"))
        for found in imports_of(path, root, package_name)
    ]


def runtime_cycles(root: Path = PACKAGE, package_name: str = PACKAGE_NAME) -> list[list[str]]:
    """Return the import circles between the package's modules at run time.

    Type-only imports are left out: they never run. Imports inside functions count (they run,
    later), as does each ``from package import name`` for the package's ``__init__``.
    """
    graph: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        name = module_name(root, path, package_name)
        graph.setdefault(name, set())
    for found in package_imports(root, package_name):
        if found.type_only or not found.module.startswith(package_name):
            continue
        source = module_name(root, root / found.source, package_name)
        if found.module in graph and found.module != source:
            graph[source].add(found.module)
    return _strongly_connected(graph)


def _strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                connect(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return components
