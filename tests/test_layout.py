"""The package layout keeps its promises: no import cycles (function-level imports count),
a pure core that imports no adapter and does no I/O, `__init__` files that only re-export,
and a small top level.

The import graph is read from the source with `ast`, so an import hidden inside a function or
under `if TYPE_CHECKING:` counts exactly like one at the top of a module.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "edgecam"
ADAPTERS = (
    "edgecam.sources",
    "edgecam.sinks",
    "edgecam.runtime",
    "edgecam.commands",
    "edgecam.config",
    "edgecam.pipeline",
    "edgecam.service",
    "edgecam.doctor",
    "edgecam.web",
    "edgecam.models",
    "edgecam.cli",
)
#: Modules that do I/O, talk to the network or start threads: never in the pure core.
IO_MODULES = (
    "socket",
    "subprocess",
    "threading",
    "sqlite3",
    "urllib",
    "http",
    "paho",
    "picamera2",
    "ai_edge_litert",
    "tflite_runtime",
    "shutil",
    "tempfile",
)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str) -> Iterator[tuple[str, int]]:
    """(imported name, line) for every import statement in the module, nested ones included."""
    path = MODULES[name]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module != "__future__":
            if node.level:
                package = name if path.name == "__init__.py" else name.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{node.module}" if node.module else package
            else:
                base = node.module or ""
            yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def _internal(target: str) -> str | None:
    """The edgecam module an imported name lives in (a symbol resolves to its module)."""
    while target and target not in MODULES:
        target = target.rpartition(".")[0]
    return target or None


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for name in MODULES:
        for target, _ in _imports(name):
            module = _internal(target)
            if module and module != name:
                graph[name].add(module)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                item = stack.pop()
                on_stack.discard(item)
                component.append(item)
                if item == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_graph_sees_function_level_imports() -> None:
    """Guard for the checker itself: an import inside a function is an edge."""
    graph = _graph()
    assert "edgecam.cli" in MODULES and graph["edgecam.cli"]
    assert any(graph.values())


def test_no_import_cycles() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("name", sorted(m for m in MODULES if m.startswith("edgecam.core")))
def test_core_imports_no_adapter_and_no_io(name: str) -> None:
    bad = []
    for target, line in _imports(name):
        module = _internal(target) or target
        if module.startswith(ADAPTERS) or target.split(".")[0] in IO_MODULES:
            bad.append(f"line {line}: {target}")
    assert not bad, f"{name} must stay pure: " + ", ".join(bad)


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("__init__.py")), ids=str)
def test_init_files_only_re_export(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        docstring = isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        all_list = isinstance(node, ast.Assign) and [
            t.id for t in node.targets if isinstance(t, ast.Name)
        ] in (["__all__"], ["__version__"])
        assert isinstance(node, ast.Import | ast.ImportFrom) or docstring or all_list, (
            f"{path}:{node.lineno}: an __init__.py only re-exports (found {type(node).__name__})"
        )


def test_top_level_stays_small() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= 8, f"edgecam/ has {len(top)} top-level modules: {top}"


def test_only_the_cli_imports_the_commands() -> None:
    """Commands are the composition root's leaves: nothing else builds on them."""
    bad = [
        f"{name} line {line}: {target}"
        for name in MODULES
        if not name.startswith(("edgecam.commands", "edgecam.cli"))
        for target, line in _imports(name)
        if (_internal(target) or "").startswith("edgecam.commands")
    ]
    assert not bad, "only edgecam.cli may import edgecam.commands: " + ", ".join(bad)
