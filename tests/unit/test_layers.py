"""The package's layers: no import cycle between subpackages, commands on top, a light client."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import satwatch

PACKAGE = Path(satwatch.__file__).parent


def _layer(module: str) -> str | None:
    """The subpackage (or top-level module) a ``satwatch...`` module belongs to."""
    parts = module.split(".")
    return parts[1] if parts[0] == "satwatch" and len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    """Every ``satwatch`` module the file imports, at module level or inside functions."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.startswith("satwatch.")}


def import_graph() -> dict[str, set[str]]:
    """Subpackage -> the other subpackages (or top-level modules) it imports."""
    graph: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        if len(relative.parts) < 3:  # top-level modules: cli, paths, exceptions...
            continue
        source = relative.parts[1]
        for module in _imports(path):
            target = _layer(module)
            if target and target != source and (PACKAGE / target).is_dir():
                graph[source].add(target)
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> bool:
    seen, stack = set(), [start]
    while stack:
        for nxt in graph.get(stack.pop(), ()):
            if nxt == goal:
                return True
            if nxt not in seen:
                seen.add(nxt)
                stack.append(nxt)
    return False


def test_no_two_subpackages_import_each_other_even_through_others() -> None:
    graph = import_graph()
    pairs = {tuple(sorted((a, b))) for a in graph for b in graph[a] if _reaches(graph, b, a)}
    cycles = sorted(pairs)
    assert cycles == [], f"subpackages in an import cycle: {sorted(set(cycles))}"


def test_only_the_root_cli_imports_the_command_layer() -> None:
    users = sorted(source for source, targets in import_graph().items() if "commands" in targets)
    assert users == []


def test_the_client_streams_without_loading_torch() -> None:
    modules = "connection, evaluate, output, sources, stream, targets, tracking"
    code = f"import sys; from satwatch.client import {modules}; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


def test_the_command_line_starts_without_loading_torch_or_scipy() -> None:
    # Every command pays for what `satwatch.cli` imports, `--help` included: the training
    # libraries load inside the commands that train or build (about 4 s of start-up before).
    code = "import sys, satwatch.cli; print(sorted({'torch', 'scipy.stats'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
