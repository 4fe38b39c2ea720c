"""The package's structure: no import cycle, floors respected, modules and functions small.

The import graph is read from the source (``ast``), imports inside functions included, so a
cycle hidden in a function body fails here as it would confuse a reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from neurodiff import registry

PACKAGE = Path(__file__).resolve().parents[1] / "neurodiff"

#: Floor of each top-level room (module or subpackage); a module may import only its own floor
#: or lower ones. Stages (floor 3) may not import one another.
FLOORS = {
    "errors": 0,
    "io": 0,
    "intensity": 0,
    "config": 1,
    "device": 1,
    "templates": 1,
    "cohort": 1,
    "registry": 2,
    "runs": 2,
    "artifacts": 2,
    "checkpoints": 2,
    "studies": 2,
    "model": 3,
    "weights": 3,
    "conditioning": 3,
    "schedulers": 3,
    "sampling": 4,
    "finetune": 4,
    "features": 4,
    "measures": 4,
    "viz": 5,
    "demo_data": 6,
    "explore": 6,
    "preprocess": 6,
    "train": 6,
    "sample": 6,
    "metrics": 6,
    "augment": 6,
    "dispatch": 7,
    "runner": 7,
    "notebook": 7,
    "record": 7,
    "release": 7,
    "links": 7,
    "cli": 8,
    "__main__": 9,
}
#: The stages' rooms: those the registry declares, and the simulated cohort's generator.
STAGES = {s.module.split(".")[1] for s in registry.STAGES} | {"demo_data"}
MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every ``neurodiff`` module ``path`` imports, anywhere in the file, resolved to modules."""
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            if name == "neurodiff" or name.startswith("neurodiff."):
                found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports_of(path):
            # "from .x import y" names y, which may be a module or an attribute of x
            while imported not in modules and "." in imported:
                imported = imported.rpartition(".")[0]
            # a package's own __init__ re-exports its children: not an edge back up
            if imported in modules and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        edges[name] = targets
    return edges


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def room(module: str) -> str:
    parts = module.split(".")
    if len(parts) == 1:
        return "__init__"
    return parts[1]


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_inside_neurodiff() -> None:
    assert cycles(graph()) == []


def test_every_room_has_a_floor() -> None:
    rooms = {room(m) for m in graph()} - {"__init__"}
    assert rooms <= set(FLOORS), sorted(rooms - set(FLOORS))


def floor_violations(edges: dict[str, set[str]]) -> list[str]:
    """Imports that go up a floor, or from one stage to another."""
    wrong = []
    for module, targets in edges.items():
        here = room(module)
        if here == "__init__":
            continue
        for target in targets:
            there = room(target)
            if there in ("__init__", here):
                continue
            if FLOORS[there] > FLOORS[here] or (here in STAGES and there in STAGES):
                wrong.append(f"{module} -> {target}")
    return sorted(wrong)


def test_the_floor_check_finds_wrong_imports() -> None:
    edges = {
        "neurodiff.sample.table": {"neurodiff.measures.mmd", "neurodiff.train.loop"},
        "neurodiff.io": {"neurodiff.config"},
        "neurodiff.metrics.stage": {"neurodiff.artifacts"},
    }
    assert floor_violations(edges) == [
        "neurodiff.io -> neurodiff.config",
        "neurodiff.sample.table -> neurodiff.train.loop",
    ]


def test_imports_go_down_and_stages_do_not_import_each_other() -> None:
    assert floor_violations(graph()) == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: module_name(p))
def test_modules_and_functions_are_small(path: Path) -> None:
    lines = path.read_text().splitlines()
    assert len(lines) <= MAX_MODULE_LINES, f"{path.name}: {len(lines)} lines"
    long = [
        f"{node.name} ({node.end_lineno - node.lineno + 1} lines)"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES + _docstring_lines(node)
    ]
    assert long == []


def _docstring_lines(node: ast.AST) -> int:
    """Lines of a function's docstring (documentation does not count against its length)."""
    doc = ast.get_docstring(node, clean=False)
    return 0 if doc is None else doc.count("\n") + 1
