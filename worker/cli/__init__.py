"""The ``cloudrec`` command line (docs/design.md#fixed-interfaces fixes its commands and flags).

Scripts depend on it: every command that reports has ``--json``, errors are one line on stderr
(never a traceback), and the exit code says what happened (:class:`Exit`, documented in the
README's "Command line" section).

One module per command group, each registering its commands on the root group :data:`cli`
(:mod:`worker.cli.base`): ``services`` (emulator, worker, beat, metrics, health), ``channels``,
``recordings`` (record, stop, cancel), ``live`` (status, jobs, the ``--wait`` progress),
``schedules``, ``ncs``, ``tools`` (render, demo; the demo itself is :mod:`worker.cli.demo`),
``web`` (the page, :mod:`worker.web`).
The CLI sits on top: it imports the worker and the tasks, nothing imports it.

Settings, Redis and HTTP clients are imported where a command needs them: ``cloudrec render``
and ``--help`` should not pay for pydantic-settings, redis-py and requests at start-up.
"""

from __future__ import annotations

from worker.cli import channels, live, ncs, recordings, schedules, services, tools, web
from worker.cli.base import CliError, Exit, cli, main, state_exit
from worker.cli.live import follow_job, job_view
from worker.cli.recordings import build_spec, read_spec_file

COMMAND_MODULES = (channels, live, ncs, recordings, schedules, services, tools, web)

__all__ = [
    "COMMAND_MODULES",
    "CliError",
    "Exit",
    "build_spec",
    "cli",
    "follow_job",
    "job_view",
    "main",
    "read_spec_file",
    "state_exit",
]
