"""Who may import whom (docs/architecture.md), read from the source with ``ast``.

- The library ``libero_gym`` imports nothing from the apps (``agents``, ``cli``):
  not at module level, not inside a function, not through a string such as
  ``importlib.import_module("agents.checkpoint")``.
- ``agents`` never imports ``cli``.
- Module-level imports among project modules form no cycle (a cycle that only
  works because one side imports inside a function is still a cycle of concepts,
  so in-function imports of project modules count too; in-function imports of
  third-party libraries, kept there so that ``--help`` stays fast, do not).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("libero_gym", "agents")
APPS = ("agents", "cli")
STRING_IMPORT = re.compile(r"^(agents|cli)([.:]|$)")
"""A string naming an app module ("agents.checkpoint", "agents.policy:CheckpointPolicy")."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    found = {"cli": REPO / "cli.py"}
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(module: str, tree: ast.AST) -> list[tuple[str, int]]:
    """(imported project module, line) for every import statement outside ``if TYPE_CHECKING``."""
    found: list[tuple[str, int]] = []
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:  # ``from pkg import sub`` imports pkg.sub; ``from mod import name``, mod
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in MODULES else base, node.lineno))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _project_target(name: str) -> str | None:
    """The project module ``name`` is (or lives in), else ``None`` (third-party)."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def _edges() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = {_project_target(name) for name, _ in _imports(module, tree)}
        graph[module] = {t for t in targets if t is not None and t != module}
    return graph


def test_graph_sees_the_project() -> None:
    graph = _edges()
    assert {"cli", "libero_gym", "libero_gym.env", "agents", "agents.train"} <= set(graph)
    assert "libero_gym.errors" in graph["agents.registry"]  # the parser resolves ``from x import y``


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[0] == "libero_gym"))
def test_library_imports_no_app(module: str) -> None:
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [f"line {line}: {name}" for name, line in _imports(module, tree) if name.split(".")[0] in APPS]
    bad += [
        f"line {node.lineno}: string {node.value!r}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and STRING_IMPORT.match(node.value)
    ]
    assert not bad, f"{module} (library) imports the apps: {bad}"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.split(".")[0] == "agents"))
def test_agents_import_no_cli(module: str) -> None:
    path = MODULES[module]
    tree = ast.parse(path.read_text(), filename=str(path))
    bad = [f"line {line}" for name, line in _imports(module, tree) if name.split(".")[0] == "cli"]
    assert not bad, f"{module} imports cli: {bad}"


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(graph.get(node, ())):
            if succ not in index:
                connect(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
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


def test_no_import_cycle() -> None:
    cycles = _cycles(_edges())
    assert not cycles, f"import cycles among project modules: {cycles}"


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
