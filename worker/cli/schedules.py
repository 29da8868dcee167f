"""``cloudrec schedule``: recurring recordings fired by celery beat."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from worker.cli.base import (
    CliError,
    Exit,
    cli,
    runtime_for,
)
from worker.cli.recordings import read_spec_file
from worker.errors import JobSpecError

if TYPE_CHECKING:
    from worker.schedules import ScheduleBook


# -- scheduled recordings ----------------------------------------------------------------------
@cli.group()
def schedule() -> None:
    """Recurring recordings fired by celery beat (kept in Redis; changes apply while beat runs)."""


def _book(ctx: click.Context) -> ScheduleBook:
    from tasks.schedules import schedule_book

    return schedule_book(runtime_for(ctx))


def _schedule_call(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    from worker.schedules import ScheduleError, ScheduleNotFound

    try:
        return func(*args, **kwargs)
    except ScheduleNotFound as exc:
        raise CliError(str(exc), Exit.NOT_FOUND) from None
    except (ScheduleError, JobSpecError) as exc:
        raise CliError(str(exc)) from None


def _schedule_done(book: ScheduleBook, name: str, as_json: bool, what: str) -> None:
    """After a change: the schedule as `schedule list --json` shows it, or one line."""
    if as_json:
        click.echo(json.dumps(_schedule_call(book.info, name).as_json(), indent=2))
    else:
        click.echo(f"schedule {name}: {what}")


@schedule.command("add")
@click.argument("name")
@click.option("--cron", help="5-field cron expression in UTC, e.g. '0 10 * * 1-5'")
@click.option("--every", type=float, help="fire every SECONDS")
@click.option("--spec", "spec_file", required=True, type=click.File("r"), help="job template")
@click.option("--duration", type=int, help="seconds each recording lasts (overrides the spec)")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def schedule_add(
    ctx: click.Context,
    name: str,
    cron: str | None,
    every: float | None,
    spec_file: Any,
    duration: int | None,
    as_json: bool,
) -> None:
    """Add schedule NAME: each firing records the --spec template as job NAME:<slot time>."""
    from worker.schedules import Trigger

    template = read_spec_file(spec_file)
    book = _book(ctx)
    trigger = _schedule_call(Trigger.parse, cron, every)
    _schedule_call(book.add, name, trigger, template, duration)
    info = book.info(name)
    if as_json:
        click.echo(json.dumps(info.as_json(), indent=2))
    else:
        click.echo(
            f"schedule {name}: {trigger.describe()}, next run {info.as_json()['next_run_at']}"
        )


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def schedule_list(ctx: click.Context, as_json: bool) -> None:
    """Every schedule with its trigger, channel, state and next run."""
    infos = [i.as_json() for i in _book(ctx).list()]
    if as_json:
        click.echo(json.dumps(infos, indent=2))
        return
    for info in infos:
        trigger = info["trigger"]
        when = f"cron {trigger['cron']}" if "cron" in trigger else f"every {trigger['every']:g}s"
        state = "enabled" if info["enabled"] else "paused"
        click.echo(
            f"{info['name']:<24} {when:<24} {info['cname']:<16} {state:<8} "
            f"next {info['next_run_at'] or '-'}  last {info['last_run_at'] or '-'}"
        )


@schedule.command("remove")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help='{"name": NAME, "removed": true}')
@click.pass_context
def schedule_remove(ctx: click.Context, name: str, as_json: bool) -> None:
    """Remove schedule NAME (jobs it already submitted are not touched)."""
    _schedule_call(_book(ctx).remove, name)
    if as_json:
        click.echo(json.dumps({"name": name, "removed": True}))
    else:
        click.echo(f"schedule {name}: removed")


@schedule.command("pause")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="the schedule as `schedule list --json`")
@click.pass_context
def schedule_pause(ctx: click.Context, name: str, as_json: bool) -> None:
    """Stop firing schedule NAME until it is resumed."""
    book = _book(ctx)
    _schedule_call(book.pause, name)
    _schedule_done(book, name, as_json, "paused")


@schedule.command("resume")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="the schedule as `schedule list --json`")
@click.pass_context
def schedule_resume(ctx: click.Context, name: str, as_json: bool) -> None:
    """Fire schedule NAME again, from its next slot (missed slots are not caught up)."""
    book = _book(ctx)
    _schedule_call(book.resume, name)
    _schedule_done(book, name, as_json, "resumed")
