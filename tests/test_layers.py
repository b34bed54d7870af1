"""Imports inside the package run one way: no module imports another that (indirectly) imports it,
and the results modules are layered report -> history / regression -> records -> verdict, with
the statistics (stats) below them all."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "conductor_perf"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> package modules it imports (at any level, also under TYPE_CHECKING or in a function)."""
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                candidates = [f"{target}.{a.name}" for a in node.names] + [target]
            elif isinstance(node, ast.Import):
                candidates = [a.name for a in node.names]
            else:
                continue
            # "from conductor_perf import records" imports the module records, not the package
            found = [c for c in candidates if c in files and c != name and c != "conductor_perf"]
            deps.update(found)
        graph[name] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_the_graph_sees_relative_absolute_and_type_checking_imports():
    graph = import_graph()
    assert "conductor_perf.records" in graph["conductor_perf.history"]  # from conductor_perf.records import
    assert "conductor_perf.reference.streams" in graph["conductor_perf.reference.app"]  # from .streams import
    assert "conductor_perf.reference.watch" in graph["conductor_perf.reference.streams"]  # TYPE_CHECKING


def test_no_import_cycles_in_the_package():
    assert cycles(import_graph()) == []


def test_cycle_detection_finds_a_cycle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_results_modules_are_layered():
    graph = import_graph()
    own = {m: {d.removeprefix("conductor_perf.") for d in deps} for m, deps in graph.items()}
    assert own["conductor_perf.verdict"] == set()
    assert own["conductor_perf.environment"] == set()
    assert own["conductor_perf.records"] <= {"verdict", "environment"}
    assert own["conductor_perf.history"] <= {"records", "environment", "verdict"}
    assert own["conductor_perf.stats"] == set()
    assert own["conductor_perf.regression"] <= {"records", "verdict", "stats"}
    lower = {"verdict", "environment", "stats", "records", "history", "regression"}
    assert not any("report" in own[f"conductor_perf.{m}"] for m in lower)
    # the results modules read what a run wrote; the run's context and its SUT are above them
    assert not any(own[f"conductor_perf.{m}"] & {"context", "target"} for m in [*lower, "report"])
