"""Layering of ``src/transferkit``, checked from the source with ``ast`` (issue 18, item 7).

The rules, as this test enforces them:

* **Import graph.** One node per module of ``src/transferkit`` (a package is its ``__init__.py``,
  named after the package). Every ``import`` / ``from ... import`` anywhere in a module is an edge:
  module level *and* inside functions (a lazy import still makes the module depend on the other
  one; only its timing differs). ``from pkg import name`` is an edge to ``pkg.name`` when that is a
  module, else to ``pkg`` itself; so a package ``__init__`` that re-exports from its submodules has
  edges to them, and importing a re-exported name goes through the ``__init__``. The parent
  packages Python initialises on the way are not edges (they would make every package with a
  re-exporting ``__init__`` a cycle by construction). Imports under ``if TYPE_CHECKING:`` are
  never executed, so they are not edges.
* **No cycle.** A cycle is a strongly connected component of that graph with more than one
  module (or a module importing itself). The test reports each component and one cycle in it.
* **No private name across packages.** A module's *unit* is its top-level sub-package of
  ``transferkit`` (``transferkit.adaptation.methods`` -> ``adaptation``); a module directly in
  ``transferkit/`` is a unit of its own. A private name (``_x``, not a dunder) may be imported only
  within its unit: importing it from another unit -- as an imported name, as a private module in
  the dotted path, or as ``module._x`` on an imported module -- is a violation. Scripts under
  ``benchmarks/`` and ``scripts/`` may import no private name of ``transferkit`` at all.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = "transferkit"


@dataclass(frozen=True)
class Import:
    """One imported thing: the module it resolves to, the names taken from it, where it is."""

    module: str  # dotted module the statement names (before resolving ``from m import submodule``)
    names: tuple[str, ...]  # names taken with ``from module import ...`` (empty for ``import module``)
    line: int
    type_only: bool  # under ``if TYPE_CHECKING:``


def module_name(path: Path) -> str:
    """``src/transferkit/data/files.py`` -> ``transferkit.data.files`` (a package is its ``__init__``)."""
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def src_modules() -> dict[str, Path]:
    """Every module of the package, by dotted name."""
    return {module_name(p): p for p in sorted((SRC / PACKAGE).rglob("*.py"))}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve_relative(node: ast.ImportFrom, current: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = current.split(".") if is_package else current.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _collect(node: ast.AST, current: str, is_package: bool, type_only: bool, out: list[Import]) -> None:
    if isinstance(node, ast.If) and _is_type_checking(node.test):
        for child in node.body:
            _collect(child, current, is_package, True, out)
        for child in node.orelse:
            _collect(child, current, is_package, type_only, out)
        return
    if isinstance(node, ast.Import):
        out.extend(Import(a.name, (), node.lineno, type_only) for a in node.names)
    elif isinstance(node, ast.ImportFrom):
        target = _resolve_relative(node, current, is_package)
        out.append(Import(target, tuple(a.name for a in node.names), node.lineno, type_only))
    for child in ast.iter_child_nodes(node):
        _collect(child, current, is_package, type_only, out)


def imports_of(path: Path, current: str = "") -> list[Import]:
    """Every import statement of a file, at any depth (functions, ``try``, ``if``)."""
    out: list[Import] = []
    _collect(ast.parse(path.read_text(), str(path)), current, path.name == "__init__.py", False, out)
    return out


def _longest_module(dotted: str, modules: dict[str, Path]) -> str | None:
    parts = dotted.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in modules:
            return ".".join(parts[:n])
    return None


def edges_of(imp: Import, modules: dict[str, Path]) -> set[str]:
    """The modules of the package one import statement depends on."""
    if not imp.module.startswith(PACKAGE):
        return set()
    if not imp.names:
        found = _longest_module(imp.module, modules)
        return {found} if found else set()
    out: set[str] = set()
    for name in imp.names:
        found = _longest_module(f"{imp.module}.{name}", modules)
        if found:
            out.add(found)
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the modules it imports (runtime imports only)."""
    modules = src_modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for imp in imports_of(path, name):
            if not imp.type_only:
                graph[name] |= edges_of(imp, modules)
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components with a cycle only, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component: list[str] = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    found.append(sorted(component))
    return found


def one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest cycle through the component's first module, for the failure message."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for node in frontier:
            for child in sorted(graph[node] & members):
                if child == start:
                    return paths[node] + [start]
                if child not in paths:
                    paths[child] = paths[node] + [child]
                    nxt.append(child)
        frontier = nxt
    return component


def is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def unit_of(module: str) -> str:
    """``transferkit.adaptation.methods`` -> ``transferkit.adaptation``; ``transferkit.api`` stays."""
    return ".".join(module.split(".")[:2])


def _imported_modules(tree: ast.AST, modules: dict[str, Path]) -> dict[str, str]:
    """Local names bound to a module of the package (``from transferkit import api as a`` -> a)."""
    bound: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith(PACKAGE):
            for a in node.names:
                if f"{node.module}.{a.name}" in modules:
                    bound[a.asname or a.name] = f"{node.module}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.asname and a.name in modules:
                    bound[a.asname] = a.name
    return bound


def private_uses(path: Path, current: str | None) -> list[tuple[int, str]]:
    """(line, what) for each private name of another unit the file takes (``current`` None: a script)."""
    modules = src_modules()
    out: list[tuple[int, str]] = []
    for imp in imports_of(path, current or ""):
        if not imp.module.startswith(PACKAGE):
            continue
        if current is not None and unit_of(imp.module) == unit_of(current):
            continue
        taken = [f"{imp.module}.{n}" for n in imp.names] or [imp.module]
        out.extend((imp.line, t) for t in taken if any(is_private(p) for p in t.split(".")))
    tree = ast.parse(path.read_text(), str(path))
    bound = _imported_modules(tree, modules)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in bound:
            target = bound[node.value.id]
            if is_private(node.attr) and (current is None or unit_of(target) != unit_of(current)):
                out.append((node.lineno, f"{target}.{node.attr}"))
    return out


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_no_import_cycle_in_src() -> None:
    graph = import_graph()
    cycles = [" -> ".join(one_cycle(graph, c)) + f"  (component: {', '.join(c)})" for c in strongly_connected(graph)]
    assert not cycles, "import cycles in src/transferkit:\n" + "\n".join(cycles)


def test_src_imports_no_private_name_from_another_package() -> None:
    bad = [
        f"{_relative(path)}:{line}: {what}"
        for name, path in src_modules().items()
        for line, what in private_uses(path, name)
    ]
    assert not bad, "private names imported across packages:\n" + "\n".join(bad)


def test_benchmarks_and_scripts_import_no_private_name() -> None:
    scripts = sorted((ROOT / "benchmarks").rglob("*.py")) + sorted((ROOT / "scripts").rglob("*.py"))
    bad = [f"{_relative(path)}:{line}: {what}" for path in scripts for line, what in private_uses(path, None)]
    assert not bad, "benchmarks/scripts importing private names of transferkit:\n" + "\n".join(bad)


def test_checker_sees_cycles_private_names_and_type_checking(tmp_path: Path) -> None:
    """The checker itself: a two-module cycle is found, a TYPE_CHECKING import is not an edge."""
    graph = {"a": {"b"}, "b": {"a"}, "c": {"a"}, "d": {"d"}}
    assert strongly_connected(graph) == [["a", "b"], ["d"]]
    assert one_cycle(graph, ["a", "b"]) == ["a", "b", "a"]
    script = tmp_path / "s.py"
    script.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from transferkit.api import RunResult\n"
        "def f():\n    from transferkit.api import _tensors, transfer\n"
        "from transferkit import api as a\nx = a._fresh_like\n"
    )
    imps = imports_of(script)
    assert [(i.names, i.type_only) for i in imps if i.module == "transferkit.api"] == [
        (("RunResult",), True),
        (("_tensors", "transfer"), False),
    ]
    assert [w for _, w in private_uses(script, None)] == ["transferkit.api._tensors", "transferkit.api._fresh_like"]
    assert private_uses(script, "transferkit.api") == []
