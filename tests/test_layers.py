"""Layers you can draw: src/'s imports (at any depth, `if TYPE_CHECKING:` blocks aside) form no
cycle, and every arrow between packages points down: config <- tasks <- data <- models <-
trainers <- outputs <- sweeps <- the commands at src/'s top (docs/architecture.md).

    python -m tests.test_layers [src]    # the packages, each module's imports, the counts
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"

# Bottom to top; a package may import those before it, never one after it. A module at src/'s
# top (a command: run, predict, evaluate, ...) stands on them all.
PACKAGES = ("config", "tasks", "data", "models", "trainers", "outputs", "sweeps")


def imports(root: Path = SRC) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports (every name of a `from` import)."""
    names = {_module(p, root): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in names}
    for module, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for stmt in node.body
            for n in ast.walk(stmt)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                targets = [f"{node.module}.{a.name}" for a in node.names]
            else:
                continue
            for target in targets:
                found = _resolve(target, names)
                if found and found != module:
                    graph[module].add(found)
    return graph


def _module(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(name: str, names: dict) -> str | None:
    while name and name not in names:
        name = name.rpartition(".")[0]
    return name or None


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                found.append(sorted([v, *component]))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int | None:
    """A module's package's place in PACKAGES; a command at src/'s top is above them all."""
    parts = module.split(".")
    if parts[0] != "src":
        return None
    if len(parts) == 1:
        return 0  # src/__init__.py: empty
    if parts[1] in PACKAGES:
        return PACKAGES.index(parts[1])
    return len(PACKAGES) if (SRC / f"{parts[1]}.py").is_file() else None


def upward(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    """The arrows from a module to one in a higher package."""
    return [
        (a, b)
        for a in sorted(graph)
        for b in sorted(graph[a])
        if None not in (layer_of(a), layer_of(b)) and layer_of(b) > layer_of(a)
    ]


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return imports()


def test_no_import_cycle(graph):
    assert cycles(graph) == []


def test_the_walker_sees_a_cycle_at_any_depth(tmp_path):
    """A cycle through an import inside a function, and none through a TYPE_CHECKING block."""
    pkg = tmp_path / "src"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from src.b import x\n")
    (pkg / "b.py").write_text("def f():\n    from src import a\n")
    (pkg / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from src import a\n"
    )
    walked = imports(pkg)
    assert cycles(walked) == [["src.a", "src.b"]] and walked["src.c"] == set()


def test_every_module_has_a_layer(graph):
    assert [m for m in graph if layer_of(m) is None] == []


def test_every_import_points_down(graph):
    assert upward(graph) == []


def test_declarations_are_a_leaf(graph):
    """The machinery every component declares its config with imports nothing of the project
    but the exceptions (which import nothing)."""
    assert graph["src.config.schema"] <= {"src.config.errors"}
    assert graph["src.config.errors"] == set()


def test_src_lists_a_dozen_entries_the_commands_and_the_packages():
    entries = sorted(p.name for p in SRC.iterdir() if p.name != "__pycache__")
    packages = [p.name for p in SRC.iterdir() if p.is_dir() and p.name != "__pycache__"]
    assert sorted(packages) == sorted(PACKAGES) and len(entries) <= 16, entries


def test_every_package_says_what_it_owns_and_may_import():
    for package in PACKAGES:
        doc = ast.get_docstring(ast.parse((SRC / package / "__init__.py").read_text()))
        assert doc and "import" in doc, package


if __name__ == "__main__":
    walked = imports(Path(sys.argv[1]) if len(sys.argv) > 1 else SRC)
    print("packages, bottom to top:", ", ".join(PACKAGES), "<- commands")
    for module in sorted(walked):
        print(f"  {module} -> {', '.join(sorted(walked[module])) or '-'}")
    print(
        f"{len(walked)} modules, {sum(map(len, walked.values()))} imports, "
        f"{len(cycles(walked))} cycle(s), {len(upward(walked))} upward: {upward(walked)}"
    )
