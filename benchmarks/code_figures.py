"""Figures on the shape of the code: largest modules, function lengths, import cycles.

Run from the repository root: ``python benchmarks/code_figures.py [--top N] [PACKAGE ...]``.
For each top-level package (default: config, worker, tasks, emulator) it prints the largest
modules by lines and the median / p90 / max length of its functions (lines from ``def`` to the
last line of the body, nested functions counted on their own); then the import cycles among
the project's modules. Reads files only (``ast``); imports nothing it measures.
"""

from __future__ import annotations

import argparse
import ast
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path

PACKAGES = ("config", "worker", "tasks", "emulator")
ROOT = Path(__file__).resolve().parent.parent


def module_name(path: Path) -> str:
    """``emulator/media/naming.py`` -> ``emulator.media.naming``; a package is its __init__."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules(package: str) -> dict[str, Path]:
    """Every module of ``package`` by dotted name (a lone module file counts too)."""
    root = ROOT / package
    files = sorted(root.rglob("*.py")) if root.is_dir() else [ROOT / f"{package}.py"]
    return {module_name(f): f for f in files if f.is_file()}


def function_lengths(tree: ast.AST) -> Iterator[int]:
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield (node.end_lineno or node.lineno) - node.lineno + 1


def percentile(values: list[int], fraction: float) -> int:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def imported_modules(tree: ast.AST, current: str, is_package: bool) -> set[str]:
    """The dotted names ``current`` imports (relative imports resolved), at any depth;
    imports under ``if TYPE_CHECKING:`` are left out (they are not a runtime cycle)."""
    found: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(child) for stmt in node.body for child in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = current.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
    return found


def import_graph(all_modules: dict[str, Path]) -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for name, path in all_modules.items():
        tree = ast.parse(path.read_text(), str(path))
        imported = imported_modules(tree, name, path.name == "__init__.py")
        graph[name] = {m for m in imported if m in all_modules and m != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    sys.setrecursionlimit(10_000)
    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def report_package(package: str, top: int) -> None:
    found = modules(package)
    if not found:
        print(f"{package}: no modules")
        return
    sizes = sorted(((len(p.read_text().splitlines()), n) for n, p in found.items()), reverse=True)
    lengths = [n for p in found.values() for n in function_lengths(ast.parse(p.read_text()))]
    print(f"{package}: {len(found)} modules, {sum(s for s, _ in sizes)} lines")
    for size, name in sizes[:top]:
        print(f"  {size:6d}  {name}")
    if lengths:
        print(
            f"  functions: {len(lengths)}, length median {statistics.median(lengths):g}, "
            f"p90 {percentile(lengths, 0.9)}, max {max(lengths)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("packages", nargs="*", default=list(PACKAGES))
    parser.add_argument("--top", type=int, default=5, help="largest modules to list")
    args = parser.parse_args()
    for package in args.packages:
        report_package(package, args.top)
    everything: dict[str, Path] = {}
    for package in PACKAGES:
        everything.update(modules(package))
    found = cycles(import_graph(everything))
    print(f"import cycles among {', '.join(PACKAGES)}: {len(found)}")
    for component in found:
        print("  " + " <-> ".join(component))


if __name__ == "__main__":
    main()
