"""The package's layering (README "Layers", docs/architecture.md), checked on its import graph.

Every module under ``mask2former/`` is parsed with ``ast``; every import statement (at module
level or inside a function) is an edge to the module it names. The subpackages sit on the
floors of :data:`LAYERS`: a module may import its own subpackage and the floors below it, and
the ground floor's packages may import one another; nothing else. The module graph has no cycle.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "mask2former"

# (floor, subpackages), lowest first -- the same table as README.md and docs/architecture.md
LAYERS: List[Tuple[str, Tuple[str, ...]]] = [
    ("ground floor", ("utils", "config", "structures", "layers")),
    ("parts", ("modeling", "data", "evaluation", "solver", "checkpoint")),
    ("assembly", ("engine", "deploy")),
]
FLOOR: Dict[str, int] = {pkg: i for i, (_, pkgs) in enumerate(LAYERS) for pkg in pkgs}


def _modules() -> Dict[str, Tuple[Path, bool]]:
    """Dotted module name -> (file, is_package) for every module of the package."""
    out = {}
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return out


MODULES = _modules()


def _import_nodes(tree: ast.AST, deferred: bool) -> Iterator[ast.AST]:
    """Import statements of ``tree``; with ``deferred=False`` only those run at import time
    (not inside a function body)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif deferred or not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _import_nodes(node, deferred)


def _imports(name: str, deferred: bool = True) -> Iterator[Tuple[str, int]]:
    """(imported mask2former module, line) for the import statements of module ``name``
    (all of them, or with ``deferred=False`` those run at import time)."""
    path, is_package = MODULES[name]
    package = name if is_package else name.rpartition(".")[0]
    for node in _import_nodes(ast.parse(path.read_text(encoding="utf-8"), str(path)), deferred):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from pkg import submodule`` names the submodule (pkg itself is a parent, always
            # initialised first); ``from pkg import name`` names pkg
            submodules = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in MODULES]
            targets = submodules + ([target] if len(submodules) < len(node.names) else [])
        else:
            continue
        for target in targets:
            if target == "mask2former" or target.startswith("mask2former."):
                yield target, node.lineno


def _subpackage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_docs_state_the_same_table():
    """docs/architecture.md's table rows ``| floor | packages | ... |`` equal :data:`LAYERS`."""
    doc = (PACKAGE_DIR.parent / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = {}
    for line in doc.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0] in dict(LAYERS):
            rows[cells[0]] = tuple(p.strip() for p in cells[1].split(","))
    assert rows == dict(LAYERS)


def test_every_subpackage_has_a_floor():
    subpackages = {_subpackage(m) for m in MODULES} - {""}
    assert subpackages == set(FLOOR), "a new subpackage needs a row in LAYERS (and in README / docs)"


def test_imports_follow_the_layer_order():
    violations = []
    for name in MODULES:
        src = _subpackage(name)
        for target, line in _imports(name):
            dst = _subpackage(target)
            if not src or dst == src:
                continue
            if not dst:
                violations.append(f"{name}:{line} imports the package root {target}")
                continue
            same_ground_floor = FLOOR[src] == FLOOR[dst] == 0
            if FLOOR[dst] > FLOOR[src] or (FLOOR[dst] == FLOOR[src] and not same_ground_floor):
                violations.append(f"{name}:{line} ({LAYERS[FLOOR[src]][0]}) imports {target} "
                                  f"({LAYERS[FLOOR[dst]][0]})")
    assert not violations, "\n".join(violations)


def _find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle of ``graph`` as a list of nodes (first == last), or []."""
    state: Dict[str, int] = {}  # 1: on the stack, 2: done
    stack: List[str] = []

    def visit(node: str) -> List[str]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return []

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return []


def test_find_cycle_finds_cycles():
    assert _find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) == []


def _graph(deferred: bool) -> Dict[str, Set[str]]:
    return {name: {t for t, _ in _imports(name, deferred) if t in MODULES and t != name} for name in MODULES}


def test_no_import_cycle():
    """No cycle among the imports that run when a module is imported."""
    cycle = _find_cycle(_graph(deferred=False))
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_no_cycle_even_through_function_level_imports():
    cycle = _find_cycle(_graph(deferred=True))
    assert not cycle, "import cycle (counting imports inside functions): " + " -> ".join(cycle)


@pytest.mark.parametrize("package, forbidden", [
    ("mask2former.modeling", "mask2former.data"),
    ("mask2former.evaluation", "mask2former.data"),
    ("mask2former.layers", "mask2former.modeling"),
])
def test_importing_a_package_loads_no_higher_floor(package, forbidden):
    """What ``import package`` really loads (a fresh interpreter), not only what it names."""
    code = (f"import sys, {package}; "
            f"print(sorted(m for m in sys.modules if m == {forbidden!r} or m.startswith({forbidden!r} + '.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"import {package} loaded {out.strip()}"
