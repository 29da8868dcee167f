"""The root of the ``cloudrec`` command line: the group, settings and runtime for a command,
exit codes, one-line errors. Every command module registers itself on :data:`cli`."""

from __future__ import annotations

import enum
import logging
import sys
from typing import TYPE_CHECKING, Any

import click

from worker.errors import CloudrecError
from worker.states import JobState

# Settings, Redis and HTTP clients are imported where a command needs them: `cloudrec render`
# and `--help` should not pay for pydantic-settings, redis-py and requests at start-up.
if TYPE_CHECKING:
    from config import Settings


class Exit(enum.IntEnum):
    """Exit codes. A job's end has its own code, so a script can tell them apart."""

    OK = 0  # the command did what it was asked; for a job: it ended completed
    ERROR = 1  # refused or failed (an invalid spec, an API or dev API error)
    USAGE = 2  # bad options or arguments, or a spec file that is not a JSON object
    NOT_FOUND = 3  # no such job or schedule
    REDIS_DOWN = 4  # Redis does not answer
    EMPTY = 10  # the job ended empty: nobody published
    IDLE_EXIT = 11  # the recorder left by itself after maxIdleTime
    FAILED = 12
    CANCELLED = 13
    ACTIVE = 14  # `status`: the job has not ended yet


STATE_EXIT = {
    JobState.COMPLETED: Exit.OK,
    JobState.EMPTY: Exit.EMPTY,
    JobState.IDLE_EXIT: Exit.IDLE_EXIT,
    JobState.FAILED: Exit.FAILED,
    JobState.CANCELLED: Exit.CANCELLED,
}


def state_exit(state: JobState) -> Exit:
    """The exit code that tells a job's state apart (any active state: :attr:`Exit.ACTIVE`)."""
    return STATE_EXIT.get(state, Exit.ACTIVE)


class CliError(click.ClickException):
    """One line on stderr, ``Error: <message>``, and the exit code of its kind."""

    def __init__(self, message: str, code: Exit = Exit.ERROR) -> None:
        super().__init__(message)
        # click reads exit_code from the instance; its stub declares a ClassVar.
        object.__setattr__(self, "exit_code", int(code))


def settings_for(ctx: click.Context) -> Settings:
    """The settings, built (and logging set up with them) the first time a command asks."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = _load_settings()
        setup_cli_logging(root.obj, logging.WARNING)
    settings: Settings = root.obj
    return settings


def _load_settings() -> Settings:
    """Settings from the environment; a bad value is a one-line error naming its variable."""
    from pydantic import ValidationError

    from config import Settings

    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"CLOUDREC_{'__'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors()
        )
        raise click.ClickException(f"invalid settings: {problems}") from None


# Commands that need no settings (nor Redis, nor the API): they skip loading them.
OFFLINE_COMMANDS = frozenset({"render"})


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(
    None, "--version", "-V", package_name="cloudrec", message="cloudrec %(version)s"
)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """cloudrec: composite cloud recordings run by Celery workers."""
    if ctx.invoked_subcommand not in OFFLINE_COMMANDS:
        settings_for(ctx)  # before any command imports worker.celery_app, which reads them too


def setup_cli_logging(settings: Settings, level: int | str) -> None:
    from worker.logs import settings_secrets, setup_logging

    setup_logging(level, json_lines=settings.log_json, secrets=settings_secrets(settings))


def main() -> None:
    try:
        cli(standalone_mode=True)
    except CloudrecError as exc:  # pragma: no cover - click handles most; this is the backstop
        click.echo(f"Error: {exc}", err=True)
        sys.exit(Exit.ERROR)
    except Exception as exc:
        if not _is_redis_error(exc):
            raise
        # Redis went away in the middle of a command: one line, no traceback.
        click.echo(f"Error: Redis does not answer: {redis_error(exc)}", err=True)
        sys.exit(Exit.REDIS_DOWN)


def _is_redis_error(exc: Exception) -> bool:
    # Without importing redis: `cloudrec render` never loads it.
    redis = sys.modules.get("redis")
    return redis is not None and isinstance(exc, redis.RedisError)


def redis_error(exc: BaseException) -> str:
    """The error's kind and message: redis-py's messages name host and port, never a password."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def runtime_for(ctx: click.Context) -> Any:
    """The runtime for a command that reads or writes Redis, after a ping with short timeouts:
    a Redis that is down or does not answer is one line and :attr:`Exit.REDIS_DOWN` in
    seconds, not a hang or a traceback."""
    from worker.celery_app import configure, runtime

    settings = settings_for(ctx)
    configure(settings)
    problem = redis_problem(settings)
    if problem is not None:
        raise CliError(problem, Exit.REDIS_DOWN)
    return runtime()


def redis_problem(settings: Settings) -> str | None:
    import redis

    from worker.redis_conn import redis_client

    client = redis_client(settings, socket_connect_timeout=3, socket_timeout=3, retry=None)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis does not answer: {redis_error(exc)}"
    finally:
        client.close()
    return None
