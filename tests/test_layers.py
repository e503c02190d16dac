"""The package's layers, enforced (docs/architecture.md).

* the import-linter contracts in ``.importlinter``: a layers contract from the front ends down to
  the leaves; a forbidden contract (nothing below the run imports the run, a front end, a script
  hook or perch-runner); an acyclic-siblings contract (no cycle between sibling packages, each
  taken whole);
* no import cycle anywhere in ``audio_embeddings``, between any two modules, counting the imports
  inside functions (the layers contract does not look at cycles among siblings): a failure names
  the cycle and the lines that make it.

Both read the source only (grimp parses it); nothing of the package is imported.
"""

from __future__ import annotations

import configparser
import os
import re
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]
PYTHON_DIR = ROOT / "python"
PACKAGE = "audio_embeddings"


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(PYTHON_DIR), os.environ.get("PYTHONPATH", "")])}


def _graph() -> grimp.ImportGraph:
    sys.path.insert(0, str(PYTHON_DIR))  # grimp finds the package's files through its spec; no module is run
    try:
        return grimp.build_graph(PACKAGE, cache_dir=None)
    finally:
        sys.path.remove(str(PYTHON_DIR))


def import_cycles(graph: grimp.ImportGraph) -> list[tuple[list[str], list[str]]]:
    """Every strongly connected set of two or more modules (or a module importing itself), sorted, with
    the shortest cycle through its first module: ``([a, b, c], [a, b, a])``. Empty when the import
    graph is acyclic."""
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in sorted(graph.modules)}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []
    counter = 0
    for start in edges:  # Tarjan's algorithm, iterative (no recursion limit)
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            targets = edges.get(node, [])
            if i < len(targets):
                work.append((node, i + 1))
                target = targets[i]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    low[node] = min(low[node], index[target])
                continue
            if work:  # back in the caller: carry this node's low-link up
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
                if len(component) > 1 or node in edges.get(node, []):
                    components.append(sorted(component))
    cycles = []
    for component in components:
        first, members = component[0], set(component)
        # the shortest way round from the component's first module, through the component only
        paths = {first: [first]}
        frontier = [first]
        cycle = None
        while frontier and cycle is None:
            nxt = []
            for node in frontier:
                for target in edges[node]:
                    if target == first:
                        cycle = [*paths[node], first]
                        break
                    if target in members and target not in paths:
                        paths[target] = [*paths[node], target]
                        nxt.append(target)
                if cycle:
                    break
            frontier = nxt
        cycles.append((component, cycle or component))
    return cycles


def _describe(graph: grimp.ImportGraph, cycle: list[str]) -> str:
    lines = []
    for importer, imported in zip(cycle, cycle[1:]):
        details = graph.get_import_details(importer=importer, imported=imported)
        where = ", ".join(f"line {d['line_number']}: {d['line_contents']}" for d in details[:2])
        lines.append(f"  {importer} -> {imported} ({where})")
    return " -> ".join(cycle) + "\n" + "\n".join(lines)


def test_the_import_linter_contracts_hold():
    """``lint-imports``: every contract of ``.importlinter`` (layers, forbidden, acyclic siblings) is kept."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(ROOT / '.importlinter')!r}, no_cache=True))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=_env(), capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert re.search(r"Contracts: [1-9]\d* kept, 0 broken\.", proc.stdout), proc.stdout[-3000:]


def test_every_module_has_a_layer():
    """A new top-level module (or perch-runner module) is placed in a layer, not left unchecked."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".importlinter")
    listed = {name.strip() for line in config["importlinter:contract:layers"]["layers"].splitlines()
              for name in line.split("|") if name.strip()}
    graph = _graph()
    runner = f"{PACKAGE}.runner"
    modules = (graph.find_children(PACKAGE) - {runner}) | graph.find_children(runner)
    assert not modules - listed, f"not in a layer of .importlinter: {sorted(modules - listed)}"
    assert not listed - modules, f"layers of .importlinter that do not exist: {sorted(listed - modules)}"


def test_the_package_has_no_import_cycle():
    """No module reaches itself through imports, those inside functions included."""
    graph = _graph()
    cycles = import_cycles(graph)
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(
        f"{_describe(graph, cycle)}\n  (all of: {', '.join(members)})" for members, cycle in cycles)


def test_the_cycle_check_sees_imports_inside_functions(tmp_path):
    """The graph counts a function-level import (the kind that hid the old cycles), and a cycle is named."""
    pkg = tmp_path / "cyclepkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from .a import g  # inside a function\n    return g\n")
    (pkg / "c.py").write_text("from . import a\n")
    sys.path.insert(0, str(tmp_path))
    try:
        graph = grimp.build_graph("cyclepkg", cache_dir=None)
    finally:
        sys.path.remove(str(tmp_path))
    assert import_cycles(graph) == [(["cyclepkg.a", "cyclepkg.b"], ["cyclepkg.a", "cyclepkg.b", "cyclepkg.a"])]
    assert "line 2: from .a import g" in _describe(graph, ["cyclepkg.a", "cyclepkg.b", "cyclepkg.a"])
