"""Live views of jobs: the ``--wait`` progress bar, ``status`` and ``jobs`` (with ``--watch``)."""

from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import click

from worker.cli.base import (
    CliError,
    Exit,
    cli,
    runtime_for,
    state_exit,
)
from worker.errors import JobNotFound
from worker.states import JobState

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.progress import Progress, TaskID

    from worker.store import JobRecord, JobStore


def follow_job(
    store: Any, job_id: str, *, quiet: bool = False, poll: float = 0.5, merge_wait: float = 0.0
) -> JobRecord:
    """Poll a job to its terminal state with a progress bar to its deadline (on stderr); then,
    for at most ``merge_wait`` seconds, to its merge's outcome if it asked for one."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    from worker.merge import merge_pending  # PyAV and Redis: only for a command that follows a job

    console = Console(stderr=True, quiet=quiet)
    job: JobRecord = store.get(job_id)
    with Progress(
        TextColumn("[bold]{task.fields[state]:<10}"),
        BarColumn(),
        TextColumn("{task.fields[elapsed]:>8} elapsed, {task.fields[remaining]:>8} left"),
        TextColumn("{task.description}"),
        console=console,
        transient=False,
    ) as progress:
        bar = progress.add_task(job_id, total=_span(job), state="", elapsed="", remaining="")
        _show_progress(progress, bar, job, time.time())
        while not job.terminal:
            time.sleep(poll)
            job = store.get(job_id)
            _show_progress(progress, bar, job, time.time())
        ended = time.time()
        while merge_pending(job) and time.time() - ended < merge_wait:
            progress.update(bar, state="merging")
            time.sleep(poll)
            job = store.get(job_id)
    return job


def _span(job: JobRecord) -> float:
    """Seconds from the job's start (or creation) to its deadline: the bar's length."""
    return max(job.stop_at - (job.start_at or job.created_at), 1.0)


def _done(job: JobRecord, now: float) -> float:
    return min(max(now - (job.start_at or job.created_at), 0.0), _span(job))


def _show_progress(progress: Progress, bar: TaskID, job: JobRecord, now: float) -> None:
    view = job_view(job, now)
    progress.update(
        bar,
        completed=_span(job) if job.terminal else _done(job, now),
        state=view["state"],
        elapsed=view["elapsed"],
        remaining=view["remaining"],
    )


# -- the live view ----------------------------------------------------------------------------
def job_view(job: JobRecord, now: float) -> dict[str, str]:
    """What the live views show of a job: state, elapsed and remaining time, file progress."""
    return {
        "job": job.job_id,
        "state": str(job.state),
        "cname": job.cname,
        "app": job.app,
        "elapsed": _elapsed(job, now),
        "remaining": _remaining(job, now),
        "files": _file_progress(job),
    }


def _elapsed(job: JobRecord, now: float) -> str:
    """Recording time so far (since the sid), or waiting time before that."""
    begin = job.started_at or job.created_at
    end = now
    if job.terminal:
        end = job.entered_at(job.state) or now
        if job.stop_sent_at and job.started_at:
            end = min(end, job.stop_sent_at)
    return _duration(end - begin)


def _remaining(job: JobRecord, now: float) -> str:
    if job.terminal:
        return "-"
    left = job.stop_at - now
    return _duration(left) if left >= 0 else f"overdue {_duration(-left)}"


def _file_progress(job: JobRecord) -> str:
    if job.files:
        status = f", {job.uploading_status}" if job.uploading_status else ""
        return f"{len(job.files)} file(s){status}"
    if job.terminal:
        return "none"
    if job.state == JobState.STOPPING:
        return "stopping: uploading the last slices"
    if job.sid:
        from worker.recording import expected_playlist_name

        return f"writing {expected_playlist_name(job.sid, job.cname)}"
    return "not started"


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):  # a stored time no clock reaches: show it, never crash
        return "-"
    whole = max(round(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def job_panel(job: JobRecord, now: float) -> RenderableType:
    """``status --watch``: one job, its progress to the deadline and its files."""
    from rich.panel import Panel
    from rich.progress_bar import ProgressBar
    from rich.table import Table

    from worker.store import iso

    view = job_view(job, now)
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    for label, key in (
        ("state", "state"),
        ("channel", "cname"),
        ("app", "app"),
        ("elapsed", "elapsed"),
    ):
        grid.add_row(label, view[key])
    grid.add_row("remaining", view["remaining"])
    grid.add_row("deadline", ProgressBar(total=_span(job), completed=_done(job, now), width=40))
    grid.add_row("stop at", iso(job.stop_at) or "-")
    grid.add_row("sid", job.sid or "-")
    grid.add_row("files", view["files"])
    for f in job.files:
        grid.add_row("", f.key)
    if job.error:
        grid.add_row("error", json.dumps(job.error))
    return Panel(grid, title=f"job {job.job_id}", expand=False)


def jobs_table(records: list[JobRecord], now: float) -> RenderableType:
    """``jobs --watch``: one row per job."""
    from rich.table import Table

    from worker.store import iso

    table = Table(title=f"cloudrec jobs at {iso(now)}", expand=False)
    columns = ("job", "state", "cname", "app", "elapsed", "remaining", "files")
    for column in columns:
        table.add_column(column, no_wrap=column in ("job", "state"))
    for job in records:
        view = job_view(job, now)
        table.add_row(*(view[c] for c in columns))
    return table


def live_until(
    render: Callable[[float], RenderableType],
    finished: Callable[[], bool],
    interval: float,
) -> None:
    """Redraw ``render(now)`` in place every ``interval`` s until ``finished()`` or Ctrl-C."""
    from rich.console import Console
    from rich.live import Live

    with Live(render(time.time()), console=Console(), auto_refresh=False) as live:
        try:
            while not finished():
                time.sleep(interval)
                live.update(render(time.time()), refresh=True)
        except KeyboardInterrupt:
            # Ctrl-C: the last frame stays. No new read: the interrupt may have landed inside a
            # Redis call and left its connection mid-reply (CI saw the command hang there).
            return
        live.update(render(time.time()), refresh=True)


def _watch_job(store: JobStore, job_id: str, interval: float) -> JobRecord:
    state: dict[str, JobRecord] = {"job": store.get(job_id)}

    def render(now: float) -> RenderableType:
        state["job"] = store.get(job_id)
        return job_panel(state["job"], now)

    live_until(render, lambda: state["job"].terminal, interval)
    return state["job"]


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--watch", is_flag=True, help="refresh in place until the job ends")
@click.option("--interval", default=1.0, show_default=True, help="seconds between refreshes")
@click.pass_context
def status(ctx: click.Context, job_id: str, as_json: bool, watch: bool, interval: float) -> None:
    """Show one job. The exit code is its state: 0 completed, 10 empty, 11 idle_exit,
    12 failed, 13 cancelled, 14 not ended yet (3: no such job)."""
    store = runtime_for(ctx).store
    try:
        if watch and not as_json:
            job = _watch_job(store, job_id, interval)
        else:
            job = follow_job(store, job_id, quiet=True) if watch else store.get(job_id)
            if as_json:
                click.echo(json.dumps(job.status_json(), indent=2))
            else:
                _print_job(job)
    except JobNotFound as exc:
        raise CliError(str(exc), Exit.NOT_FOUND) from None
    sys.exit(state_exit(job.state))


def _print_job(job: JobRecord) -> None:
    from worker.merge import merge_pending  # PyAV and Redis: only for a command that follows a job

    out = job.status_json()
    view = job_view(job, time.time())
    click.echo(
        f"job {job.job_id}: {out['state']}  channel {job.cname}  recorder uid {job.uid}"
        f"  app {job.app}"
    )
    click.echo(f"  stop at {out['stop_at']}  sid {job.sid or '-'}")
    click.echo(f"  elapsed {view['elapsed']}  remaining {view['remaining']}  files {view['files']}")
    for entry in out["history"]:
        click.echo(f"  {entry['at']}  {entry['state']}")
    for f in out["files"]:
        click.echo(f"  file {f['key']}")
    if job.error:
        click.echo(f"  error: {job.error}")
    if job.merged is not None or merge_pending(job):
        click.echo(f"  merged: {_merged_line(job.merged)}")


def _merged_line(merged: dict[str, Any] | None) -> str:
    if merged is None:
        return "pending"
    if "error" in merged:
        return f"failed: {merged['error']}"
    return f"{merged.get('key')}  {merged.get('duration')} s  {merged.get('size')} bytes"


ACTIVE_CHOICE = "active"  # `jobs --state active`: every job that has not ended


def _list_jobs(store: JobStore, state: str | None, limit: int, offset: int = 0) -> list[JobRecord]:
    return [job for page in _job_pages(store, state, limit, offset) for job in page]


def _job_pages(
    store: JobStore, state: str | None, limit: int, offset: int
) -> Iterator[list[JobRecord]]:
    """The listing's records a page at a time (``limit`` 0: every one), each page read with
    pipelined round trips: no round trip per job, and memory for one page only."""
    active = state == ACTIVE_CHOICE
    chosen = JobState(state) if state and not active else None
    pages = store.iter_ids(chosen, offset=offset, limit=limit or None, active=active)
    for ids in pages:
        yield store.listed_records(ids)


@cli.command()
@click.option(
    "--state",
    type=click.Choice([ACTIVE_CHOICE, *(s.value for s in JobState)]),
    help="only jobs in this state (active: every job that has not ended)",
)
@click.option("--json", "as_json", is_flag=True, help="a JSON array of status objects")
@click.option("--limit", default=50, show_default=True, type=click.IntRange(min=0), help="0: all")
@click.option("--offset", default=0, show_default=True, type=click.IntRange(min=0))
@click.option("--watch", is_flag=True, help="refresh in place until Ctrl-C")
@click.option("--interval", default=1.0, show_default=True, help="seconds between refreshes")
@click.pass_context
def jobs(
    ctx: click.Context,
    state: str | None,
    as_json: bool,
    limit: int,
    offset: int,
    watch: bool,
    interval: float,
) -> None:
    """List jobs, newest first: --limit of them from --offset (the next page: --offset
    OFFSET+LIMIT)."""
    store = runtime_for(ctx).store
    if watch:
        live_until(
            lambda now: jobs_table(_list_jobs(store, state, limit, offset), now), _never, interval
        )
        return
    pages = _job_pages(store, state, limit, offset)
    if as_json:
        _echo_json_array(job.status_json() for page in pages for job in page)
        return
    for page in pages:
        now = time.time()
        click.echo("\n".join(_job_line(job, now) for job in page))


def _job_line(job: JobRecord, now: float) -> str:
    from worker.store import iso

    view = job_view(job, now)
    return (
        f"{job.job_id:<34} {view['state']:<10} {job.cname:<20} "
        f"elapsed {view['elapsed']:<8} left {view['remaining']:<8} stop {iso(job.stop_at) or '-'}"
        f" app {job.app}"
    )


def _echo_json_array(items: Iterable[Any]) -> None:
    """A JSON array written as it is produced (a listing of 100,000 jobs is not held whole)."""
    out = sys.stdout
    empty = True
    out.write("[")
    for item in items:
        out.write("\n  " if empty else ",\n  ")
        out.write(json.dumps(item, indent=2).replace("\n", "\n  "))
        empty = False
    out.write("]\n" if empty else "\n]\n")


def _never() -> bool:
    return False
