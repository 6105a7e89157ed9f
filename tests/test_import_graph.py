"""No module-level import cycles in patchfmt, registry_server or ppatch (client/).

The graph is built from the sources with `ast`: only imports a module runs when it is imported
count (not those inside functions, nor under `if TYPE_CHECKING:`). An import of `a.b.c` also
runs `a/__init__` and `a/b/__init__`, so those edges count too. A cycle means one of its
modules sees the other half-initialised depending on which is imported first.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"patchfmt": "patchfmt", "registry_server": "registry_server", "client": "ppatch"}


def module_files(root: Path = ROOT) -> dict[str, Path]:
    """Import name -> source file, with `client/` read as `ppatch`."""
    found: dict[str, Path] = {}
    for folder, import_name in PACKAGES.items():
        for path in sorted((root / folder).rglob("*.py")):
            parts = list(path.relative_to(root / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join([import_name, *parts])] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _module_level_imports(body: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements run at import time: top level and inside top-level if/try/with blocks,
    not in functions or classes' methods, and not under `if TYPE_CHECKING:`."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            if not _is_type_checking(node.test):
                yield from _module_level_imports(node.body)
            yield from _module_level_imports(node.orelse)
        elif isinstance(node, ast.Try):
            for block in (node.body, node.orelse, node.finalbody):
                yield from _module_level_imports(block)
            for handler in node.handlers:
                yield from _module_level_imports(handler.body)
        elif isinstance(node, ast.With | ast.ClassDef):
            yield from _module_level_imports(node.body)


def _with_parents(name: str, known: Mapping[str, Path]) -> list[str]:
    parts = name.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1) if ".".join(parts[:n]) in known]


def import_graph(files: Mapping[str, Path]) -> dict[str, set[str]]:
    """Module -> the project modules it imports at module level."""
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in _module_level_imports(tree.body):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                targets = [base]
                # `from pkg import sub` imports the sub-module when there is one.
                targets += [f"{base}.{alias.name}" for alias in node.names]
            for target in targets:
                graph[name].update(t for t in _with_parents(target, files) if t != name)
    return graph


def find_cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import),
    each sorted, found with Tarjan's algorithm (iterative, so deep graphs are fine)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    cycles: list[list[str]] = []
    counter = 0
    for start in sorted(graph):
        if start in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            advanced = False
            for successor in successors:
                if successor not in graph:
                    continue
                if successor not in index:
                    index[successor] = low[successor] = counter
                    counter += 1
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(graph[successor]))))
                    advanced = True
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1 or node in graph[node]:
                    cycles.append(sorted(component))
    return sorted(cycles)


def test_the_cycle_finder_finds_cycles_and_only_cycles() -> None:
    graph = {
        "a": {"b"},
        "b": {"c"},
        "c": {"a"},
        "d": {"a", "e"},
        "e": set(),
        "f": {"f"},
        "g": {"h"},
        "h": {"g", "outside"},
    }
    assert find_cycles(graph) == [["a", "b", "c"], ["f"], ["g", "h"]]
    assert find_cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_reads_only_imports_run_at_import_time(tmp_path: Path) -> None:
    package = tmp_path / "client"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "from ppatch import b\n"
        "if TYPE_CHECKING:\n    from ppatch import c\n"
        "def f():\n    from ppatch import d\n"
    )
    for name in ("b", "c", "d"):
        (package / f"{name}.py").write_text("from . import a\n" if name == "b" else "")
    for folder in ("patchfmt", "registry_server"):
        (tmp_path / folder).mkdir()
    graph = import_graph(module_files(tmp_path))
    assert graph["ppatch.a"] == {"ppatch", "ppatch.b"}
    assert find_cycles(graph) == [["ppatch.a", "ppatch.b"]]


def test_no_module_level_import_cycles() -> None:
    cycles = find_cycles(import_graph(module_files()))
    assert cycles == [], "module-level import cycles:\n" + "\n".join(
        " <-> ".join(cycle) for cycle in cycles
    )
