"""Virtual environments that stand for a caller's service: Python with Celery (or only
``cloudrec-client``) and nothing of cloudrec.

Each is made once per set of pinned versions (and, for the client, per content of
``clients/python``) under a cache directory and reused across runs: ``CLOUDREC_TEST_CACHE``, or
``~/.cache/cloudrec-tests``. Versions are pinned to the ones installed here, so pip takes the
wheels it already has (its cache). Made under a file lock and marked complete last, so a
half-made venv is never used.
"""

from __future__ import annotations

import fcntl
import fnmatch
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import venv
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "clients" / "python"
# What a caller's Celery service has: Celery with its Redis transport (same versions as here).
CALLER_PACKAGES = ("celery", "kombu", "redis")


def cache_dir() -> Path:
    root = os.environ.get("CLOUDREC_TEST_CACHE") or Path.home() / ".cache" / "cloudrec-tests"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def pins() -> list[str]:
    """``celery[redis]==X`` and friends, at the versions installed in this interpreter."""
    found = {name: metadata.version(name) for name in CALLER_PACKAGES}
    return [f"celery[redis]=={found['celery']}"] + [
        f"{name}=={version}" for name, version in found.items() if name != "celery"
    ]


def python_of(env_dir: Path) -> Path:
    return env_dir / "bin" / "python"


def celery_venv() -> Path:
    """A venv with Celery (Redis transport) and not cloudrec; returns its python."""
    requirements = pins()
    key = _digest([sys.version, *requirements])
    return _cached(f"celery-{key}", lambda path: _pip(path, requirements))


def client_venv() -> Path:
    """A venv with only ``cloudrec-client`` (with its ``seal`` extra) installed from this repo."""
    key = _digest([sys.version, *pins(), _tree_digest(CLIENT_DIR)])
    return _cached(f"client-{key}", _install_client)


def _install_client(env_dir: Path) -> None:
    # Built from a copy: pip builds a local project in place, leaving build/ and *.egg-info.
    with tempfile.TemporaryDirectory() as scratch:
        source = Path(scratch) / "client"
        shutil.copytree(CLIENT_DIR, source, ignore=shutil.ignore_patterns(*_BUILD_LEFTOVERS))
        # The client's own dependency range decides; the pins keep pip on wheels it has.
        _pip(env_dir, [f"{source}[seal]", *pins()])


def _cached(name: str, fill: Callable[[Path], None]) -> Path:
    root = cache_dir()
    target = root / name
    done = target / ".complete"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            # Made where it will live (a venv's scripts name their own path) and marked
            # complete last: a run that died half-way leaves no marker, and is made anew.
            shutil.rmtree(target, ignore_errors=True)
            venv.EnvBuilder(with_pip=True, clear=True).create(target)
            fill(target)
            done.touch()
    return python_of(target)


def _pip(env_dir: Path, requirements: list[str]) -> None:
    subprocess.run(
        [str(python_of(env_dir)), "-m", "pip", "install", "-q", *requirements],
        check=True,
        cwd=env_dir,
        env=_clean_env(),
        timeout=600,
    )


def _clean_env() -> dict[str, str]:
    """The environment without this interpreter's venv or paths leaking into the child."""
    drop = {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"}
    return {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("CLOUDREC_")}


def run_outside(
    python: Path, code: str, cwd: Path, *, timeout: float = 90.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in the outside interpreter, from a directory without cloudrec in it."""
    return subprocess.run(
        [str(python), "-c", code],
        cwd=cwd,
        env={**_clean_env(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _digest(parts: list[str]) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


_BUILD_LEFTOVERS = ("build", "dist", "*.egg-info", "__pycache__")


def _tree_digest(root: Path) -> str:
    """The client's source, without what a build or an import leaves beside it."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        parts = path.relative_to(root).parts
        leftover = any(fnmatch.fnmatch(p, pat) for p in parts for pat in _BUILD_LEFTOVERS)
        if path.is_file() and not leftover:
            digest.update("/".join(parts).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()
