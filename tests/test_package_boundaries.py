"""The contract package is the only thing the worker and the emulator share: neither imports the
other (read from the source, every import statement, at any depth of a module)."""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# The command line starts the emulator (`cloudrec emulator`, `cloudrec render`): a CLI may
# import both sides. Only the CLI.
CLI_MAY_IMPORT_THE_EMULATOR = ("worker/cli.py", "worker/cli/")


def _imported_packages(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def _offenders(
    packages: tuple[str, ...], forbidden: set[str], allowed: tuple[str, ...] = ()
) -> list[str]:
    found = []
    for package in packages:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(allowed):
                continue
            bad = _imported_packages(path) & forbidden
            found += [f"{rel} imports {name}" for name in sorted(bad)]
    return found


def test_the_emulator_does_not_import_the_worker() -> None:
    assert _offenders(("emulator",), {"worker", "tasks"}) == []


def test_the_worker_does_not_import_the_emulator_except_the_cli() -> None:
    found = _offenders(("worker", "tasks", "config"), {"emulator"}, CLI_MAY_IMPORT_THE_EMULATOR)
    assert found == []


def test_the_contract_imports_neither_side() -> None:
    assert _offenders(("contract",), {"worker", "tasks", "config", "emulator"}) == []


@pytest.mark.parametrize("package", ["emulator", "worker", "contract"])
def test_the_check_reads_real_modules(package: str) -> None:
    # A walk that found no files would pass the checks above without checking anything.
    assert len(list((ROOT / package).rglob("*.py"))) >= 5


def test_every_package_is_installed_copied_and_type_checked() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    installed = {
        name.rstrip("*") for name in pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    }
    copied = set(re.findall(r"^COPY (\w+) \./\1$", (ROOT / "Dockerfile").read_text(), re.MULTILINE))
    checked = set(pyproject["tool"]["mypy"]["packages"])
    assert {"contract", "worker", "tasks", "emulator", "config"} <= installed
    assert installed <= copied, "the image must copy every installed package"
    assert installed <= checked, "mypy must check every installed package"
