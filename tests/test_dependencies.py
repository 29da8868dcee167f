"""Every third-party module the code imports is a dependency it declares.

Runtime packages (the ones ``pyproject.toml`` ships: config/, worker/, tasks/, emulator/ and any
package added to ``[tool.setuptools.packages.find] include``) may import only the standard
library, themselves and the runtime ``dependencies``; tests/ and benchmarks/ also the ``dev``
extra; the client distribution (clients/python) only its own. A dependency that merely comes
along with another one (kombu with celery, starlette with fastapi) is not enough: its bounds are
then nobody's decision, and it may disappear in any upgrade.
"""

from __future__ import annotations

import ast
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent

# Import name -> distribution name, where they differ.
DISTRIBUTION = {
    "yaml": "pyyaml",
    "redbeat": "celery-redbeat",
    "prometheus_client": "prometheus-client",
    "pydantic_settings": "pydantic-settings",
    "pydantic_core": "pydantic-core",
    "imageio_ffmpeg": "imageio-ffmpeg",
    "agora_rest_client": "agora-rest-client",
    "dateutil": "python-dateutil",
    "cloudrec_client": "cloudrec-client",
    "piptools": "pip-tools",
    "av": "av",
}


def _pyproject(path: Path) -> dict[str, object]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def declared(requirements: list[str]) -> set[str]:
    """Distribution names (canonical) of requirement strings; extras bring no names here."""
    return {canonicalize_name(Requirement(r).name) for r in requirements}


def shipped_packages(pyproject: dict[str, object]) -> list[str]:
    patterns = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]  # type: ignore[index]
    names = {p.rstrip("*").rstrip(".") for p in patterns}
    return sorted(n for n in names if (ROOT / n / "__init__.py").is_file())


def imports(directory: Path, root: Path = ROOT) -> Iterator[tuple[str, str]]:
    """(top-level module, file:line) of every absolute import under ``directory``."""
    for path in sorted(directory.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            where = f"{path.relative_to(root).as_posix()}:{node.lineno}"
            for name in names:
                yield name.split(".")[0], where


def undeclared(
    directories: list[Path], allowed: set[str], first_party: set[str], root: Path = ROOT
) -> list[str]:
    problems = []
    for directory in directories:
        for module, where in imports(directory, root):
            if module in sys.stdlib_module_names or module in first_party:
                continue
            dist = canonicalize_name(DISTRIBUTION.get(module, module))
            if dist not in allowed:
                problems.append(f"{where}: imports {module!r}, distribution {dist!r} not declared")
    return problems


MAIN = _pyproject(ROOT / "pyproject.toml")
PROJECT = MAIN["project"]
RUNTIME = declared(PROJECT["dependencies"])  # type: ignore[index]
DEV = declared(PROJECT["optional-dependencies"]["dev"])  # type: ignore[index]
PACKAGES = shipped_packages(MAIN)


def test_the_shipped_packages_are_found() -> None:
    assert {"config", "worker", "tasks", "emulator"} <= set(PACKAGES)


def test_runtime_packages_import_only_runtime_dependencies() -> None:
    problems = undeclared([ROOT / p for p in PACKAGES], RUNTIME, set(PACKAGES))
    assert not problems, "add to [project] dependencies in pyproject.toml:\n" + "\n".join(problems)


@pytest.mark.parametrize("directory", ["tests", "benchmarks"])
def test_tests_and_benchmarks_import_only_declared_dependencies(directory: str) -> None:
    first_party = {*PACKAGES, "tests", "benchmarks", "cloudrec_client"}
    problems = undeclared([ROOT / directory], RUNTIME | DEV, first_party)
    assert not problems, "add to the dev extra in pyproject.toml:\n" + "\n".join(problems)


def test_the_client_distribution_imports_only_its_own_dependencies() -> None:
    client = _pyproject(ROOT / "clients" / "python" / "pyproject.toml")["project"]
    allowed = declared(client["dependencies"])  # type: ignore[index]
    for extra in client.get("optional-dependencies", {}).values():  # type: ignore[attr-defined]
        allowed |= declared(extra)
    problems = undeclared(
        [ROOT / "clients" / "python" / "cloudrec_client"], allowed, {"cloudrec_client"}
    )
    assert not problems, "\n".join(problems)


def test_the_check_sees_an_undeclared_import(tmp_path: Path) -> None:
    """The walk itself: a module importing something undeclared is reported with file:line."""
    package = tmp_path / "probe"
    package.mkdir()
    (package / "mod.py").write_text(
        "import json\nimport yaml\nfrom kombu import Queue\nfrom . import sibling\nimport probe.x\n"
    )
    problems = undeclared([package], {"kombu"}, {"probe"}, root=tmp_path)
    assert problems == ["probe/mod.py:2: imports 'yaml', distribution 'pyyaml' not declared"]
