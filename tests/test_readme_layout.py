"""README's "Layout of the code" lists every package and module of the tree, and nothing else.

The list is the first code block of that section: one entry a line, ``name  description``,
children indented two spaces under their directory (``worker/`` then ``  recording.py``). The
packages are the ones ``pyproject.toml`` ships (``[tool.setuptools.packages.find] include``), so
a new top-level package is checked as soon as it is declared; other top-level directories must be
listed as directories. After moving modules around, run ``python tests/test_readme_layout.py``:
it prints the block with entries for new modules (from their docstrings) and without the ones
that are gone, ready to paste.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Layout of the code"
# Top-level directories that are not part of the code (tool caches, environments, VCS).
IGNORED_TOP = {"build", "dist", "recordings", "node_modules"}


def shipped_packages() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    names = {p.rstrip("*").rstrip(".") for p in patterns}
    return sorted(n for n in names if (ROOT / n / "__init__.py").is_file())


def tree_entries() -> set[str]:
    """Every entry the layout must list: package dirs, sub-package dirs, modules, other top dirs."""
    entries: set[str] = set()
    for package in shipped_packages():
        for path in (ROOT / package).rglob("*.py"):
            rel = path.relative_to(ROOT)
            if "__pycache__" in rel.parts:
                continue
            for depth in range(1, len(rel.parts)):
                entries.add("/".join(rel.parts[:depth]) + "/")
            if path.name != "__init__.py":
                entries.add(rel.as_posix())
    for path in ROOT.iterdir():
        hidden = path.name.startswith((".", "_")) or path.name.endswith(".egg-info")
        if path.is_dir() and not hidden and path.name not in IGNORED_TOP:
            entries.add(path.name + "/")
    return entries


def layout_block(readme: str) -> list[str]:
    start = readme.index(SECTION)
    match = re.search(r"^```[^\n]*\n(.*?)^```", readme[start:], flags=re.S | re.M)
    assert match is not None, f"no code block in README's {SECTION!r}"
    return match[1].splitlines()


ENTRY = re.compile(r"^(?P<indent> *)(?P<name>\S+)(?: {2,}(?P<desc>\S.*))?$")


def listed_entries(lines: list[str]) -> dict[str, str]:
    """path -> description of every entry of the block (paths of nested entries joined)."""
    listed: dict[str, str] = {}
    stack: list[str] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        match = ENTRY.match(line)
        assert match is not None, f"layout line {number} is not 'name  description': {line!r}"
        level, rest = divmod(len(match["indent"]), 2)
        assert not rest and level <= len(stack), f"layout line {number}: bad indentation {line!r}"
        del stack[level:]
        path = "".join(stack) + match["name"]
        listed[path] = match["desc"] or ""
        if match["name"].endswith("/"):
            stack.append(match["name"])
    return listed


def _is_checked(path: str) -> bool:
    """Entries the tree check covers: shipped packages in full, other directories at the top."""
    top = path.split("/")[0]
    if top in shipped_packages():
        return path.endswith((".py", "/"))
    return path.endswith("/") and path.count("/") == 1


def test_readme_layout_lists_every_module_and_nothing_that_is_gone() -> None:
    listed = listed_entries(layout_block((ROOT / "README.md").read_text(encoding="utf-8")))
    expected = tree_entries()
    missing = sorted(expected - set(listed))
    stale = sorted(
        p for p in listed if (_is_checked(p) and p not in expected) or not (ROOT / p).exists()
    )
    assert not missing and not stale, (
        "README 'Layout of the code' and the tree disagree "
        "(python tests/test_readme_layout.py prints the corrected block).\n"
        + "".join(f"  missing: {p}  {describe(p)}\n" for p in missing)
        + "".join(f"  gone:    {p}\n" for p in stale)
    )


def test_every_entry_says_what_it_is() -> None:
    listed = listed_entries(layout_block((ROOT / "README.md").read_text(encoding="utf-8")))
    assert not [p for p, desc in listed.items() if not desc]


def describe(path: str) -> str:
    """A first description for a new entry: its docstring's first sentence."""
    target = ROOT / path
    if path.endswith("/"):
        target = target / "__init__.py"
    if not target.is_file() or target.suffix != ".py":
        return "TODO"
    doc = ast.get_docstring(ast.parse(target.read_text(encoding="utf-8"))) or "TODO"
    first = doc.split(". ")[0].splitlines()[0].rstrip(".")
    return first[:70]


def corrected_block() -> list[str]:
    """The layout block with missing entries added (in tree order) and gone ones dropped."""
    listed = listed_entries(layout_block((ROOT / "README.md").read_text(encoding="utf-8")))
    keep = {
        p: d
        for p, d in listed.items()
        if (not _is_checked(p) or p in tree_entries()) and (ROOT / p).exists()
    }
    for path in tree_entries() - set(keep):
        keep[path] = describe(path)
    width = max(len(_leaf(p)) + 2 * _depth(p) for p in keep) + 2
    width = max(width, 27)
    ordered = sorted(keep, key=_sort_key(list(listed)))
    return [f"{'  ' * _depth(p)}{_leaf(p)}".ljust(width) + keep[p] for p in ordered]


def _depth(path: str) -> int:
    return path.rstrip("/").count("/")


def _leaf(path: str) -> str:
    name = path.rstrip("/").split("/")[-1]
    return name + ("/" if path.endswith("/") else "")


def _sort_key(order: list[str]) -> Callable[[str], tuple[object, ...]]:
    """Existing entries keep their place; a new one goes after its directory's listed entries."""

    def key(path: str) -> tuple[object, ...]:
        parts = []
        prefix = ""
        for part in [p + "/" for p in path.rstrip("/").split("/")[:-1]] + [_leaf(path)]:
            prefix += part
            rank = order.index(prefix) if prefix in order else len(order)
            parts.append((rank, part.endswith("/") and prefix != path, part))
        return tuple(parts)

    return key


if __name__ == "__main__":
    sys.stdout.write("```\n" + "\n".join(corrected_block()) + "\n```\n")
