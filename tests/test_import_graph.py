"""The import graph of src/scaleot: no cycle, and calls flow downward through the layers.

Every import counts, module-level or inside a function (a lazy import hides a cycle, it
does not remove it), except those under ``if TYPE_CHECKING:``, which never run. The root package's lazy facade (``scaleot.load_model`` ...) is the
one exception: it sits above everything.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"

# Lowest first. A package may import only from packages in lower layers (never from its own
# layer's others): the exchange sits below everything that builds or runs a model; the data
# owner sits below the model owner, so its code never imports the model owner's (the model
# owner may run the data owner's tuning loop: the transfer check plays the data owner on
# proxy tasks before release).
LAYERS = [
    {"errors", "paths", "safetensors_io", "progress", "stats", "scores"},
    {"validate", "split"},
    {"exchange"},
    {"outputs", "provenance"},
    {"checkpoint", "models"},
    {"run_folder", "data", "merge"},
    {"evaluation"},
    {"data_owner"},
    {"model_owner"},
    {"report"},
    {"recipes"},
    {"cli"},
]
PARTIES = ("model_owner", "data_owner")


def _modules() -> dict[str, Path]:
    out = {}
    for path in (SRC / "scaleot").rglob("*.py"):
        parts = path.relative_to(SRC).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_only(tree: ast.AST) -> set[int]:
    """ids of the nodes under ``if TYPE_CHECKING:`` (never executed)."""
    return {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
            and getattr(node.test, "id", None) == "TYPE_CHECKING" for n in ast.walk(node)}


def _imports(path: Path, known: set[str]) -> set[str]:
    """The scaleot modules ``path`` imports (``from pkg import submodule`` -> the submodule)."""
    found = set()
    tree = ast.parse(path.read_text())
    skip = _type_only(tree)
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom) and node.module in known:
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            found |= subs if subs and len(subs) == len(node.names) else {node.module} | subs
    return found


def _package(module: str) -> str:
    return module.split(".")[1] if "." in module else ""


def _graph(level) -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        if name == "scaleot":  # the lazy facade
            continue
        for target in _imports(path, set(modules)):
            a, b = level(name), level(target)
            if a != b and target != "scaleot":
                graph[a].add(b)
    return graph


def _reach(graph: dict[str, set[str]], start: str) -> set[str]:
    """Every node ``start`` reaches through one or more edges."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def _cycles(graph: dict[str, set[str]]) -> list[tuple[str, str]]:
    return sorted((a, b) for a in list(graph) for b in graph[a] if a in _reach(graph, b))


def test_no_import_cycle_between_modules():
    assert _cycles(_graph(lambda m: m)) == []


def test_no_import_cycle_between_packages():
    assert _cycles(_graph(_package)) == []


def test_every_package_imports_only_from_lower_layers():
    layer = {pkg: i for i, group in enumerate(LAYERS) for pkg in group}
    packages = {_package(m) for m in _modules()} - {""}
    assert packages <= set(layer), f"place {sorted(packages - set(layer))} in a layer"
    upward = [(a, b) for a, targets in _graph(_package).items() for b in targets if layer[b] >= layer[a]]
    assert upward == [], upward


def test_the_parties_meet_only_in_the_exchange():
    """The data owner's code never imports the model owner's, and the exchange imports neither
    party, directly or through any package it imports. (The model owner may use the data
    owner's tuning loop: :mod:`scaleot.model_owner.audit.transfer_check`.)"""
    graph = _graph(_package)
    assert "model_owner" not in _reach(graph, "data_owner")
    assert not set(PARTIES) & _reach(graph, "exchange")


def test_the_checker_sees_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [("a", "b"), ("b", "c"), ("c", "a")]


def test_no_test_imports_bench():
    """The library's tests never import bench/ (bench uses the library, not the other way; what
    bench needs lives in src with a test here, and bench's checks of itself live in bench/)."""
    tests = Path(__file__).resolve().parent
    offenders = []
    for path in sorted(tests.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            offenders += [f"{path.name}:{node.lineno} imports {n}" for n in names if n.split(".")[0] == "bench"]
    assert not offenders, offenders
