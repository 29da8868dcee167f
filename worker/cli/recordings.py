"""Recording jobs: ``record`` (a spec from flags or a file), ``stop``, ``cancel``."""

from __future__ import annotations

import json
import sys
from typing import IO, TYPE_CHECKING, Any

import click

from worker.cli.base import (
    CliError,
    Exit,
    cli,
    runtime_for,
    state_exit,
)
from worker.errors import CloudrecError, JobNotFound

if TYPE_CHECKING:
    pass

from worker.cli.live import follow_job

LAYOUTS = {"floating": 0, "best-fit": 1, "vertical": 2, "custom": 3}
STREAMS = {"audio": 0, "video": 1, "both": 2}


# -- recordings ----------------------------------------------------------------------------------
def build_spec(
    cname: str,
    *,
    base: dict[str, Any] | None = None,
    duration: int | None = None,
    layout: str | None = None,
    size: str | None = None,
    fps: int | None = None,
    bitrate: int | None = None,
    background: str | None = None,
    files: str | None = None,
    streams: str | None = None,
    max_idle: int | None = None,
    storage: str | None = None,
    prefix: str | None = None,
    uid: str | None = None,
    job_id: str | None = None,
    stop_early_max: float | None = None,
    merge: bool | None = None,
    app: str | None = None,
) -> dict[str, Any]:
    """A job spec from ``cloudrec record`` flags, on top of an optional ``--spec`` file."""
    spec: dict[str, Any] = json.loads(json.dumps(base or {}))
    spec["cname"] = cname
    rc = spec.setdefault("recordingConfig", {})
    rc = rc if isinstance(rc, dict) else {}  # not an object: validation names the field
    tc_updates: dict[str, Any] = {}
    if layout is not None:
        tc_updates["mixedVideoLayout"] = LAYOUTS[layout]
    if size is not None:
        tc_updates["width"], tc_updates["height"] = _parse_size(size)
    for key, value in (("fps", fps), ("bitrate", bitrate), ("backgroundColor", background)):
        if value is not None:
            tc_updates[key] = value
    tc = rc.setdefault("transcodingConfig", {}) if tc_updates else None
    if isinstance(tc, dict):
        tc.update(tc_updates)
    if streams is not None:
        rc["streamTypes"] = STREAMS[streams]
    if max_idle is not None:
        rc["maxIdleTime"] = max_idle
    if files is not None:
        spec["recordingFileConfig"] = {"avFileType": [f.strip() for f in files.split(",") if f]}
    optional = {
        "duration": duration,
        "storage": storage,
        "uid": uid,
        "job_id": job_id,
        "stop_early_max": stop_early_max,
        "merge": merge,
        "app": app,
    }
    spec.update({k: v for k, v in optional.items() if v is not None})
    if prefix is not None:
        spec["fileNamePrefix"] = [p for p in prefix.split("/") if p]
    return spec


def _parse_size(size: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(
            f"must be WIDTHxHEIGHT, e.g. 640x360 (got {size!r})", param_hint="--size"
        ) from None
    return width, height


@cli.command()
@click.argument("cname")
@click.option("--duration", type=int, help="seconds until the scheduled stop")
@click.option("--layout", type=click.Choice(list(LAYOUTS)))
@click.option("--size", help="canvas WIDTHxHEIGHT, e.g. 640x360")
@click.option("--fps", type=int)
@click.option("--bitrate", type=int, help="video kbps")
@click.option("--background", help="canvas colour '#RRGGBB'")
@click.option("--files", help="hls or hls,mp4")
@click.option("--streams", type=click.Choice(list(STREAMS)))
@click.option("--max-idle", type=int, help="maxIdleTime, seconds")
@click.option("--storage", help="storage profile name")
@click.option("--app", help="app profile (Agora project) to record with [default: default]")
@click.option("--prefix", help="fileNamePrefix as a/b/c")
@click.option("--uid", help="recorder uid (default: from the configured range)")
@click.option("--job-id", help="idempotency key")
@click.option(
    "--stop-early-max",
    type=float,
    help="seconds the stop may go early when the API budget is short (default 0: never early)",
)
@click.option(
    "--merge/--no-merge",
    default=None,
    help="one merged MP4 of the whole recording, <prefix>/<job id>.mp4 "
    "[default: CLOUDREC_MERGE_DEFAULT]",
)
@click.option("--spec", "spec_file", type=click.File("r"), help="job spec JSON; flags override")
@click.option("--wait", is_flag=True, help="follow the job to its end; exit 0 only if completed")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def record(
    ctx: click.Context,
    cname: str,
    duration: int | None,
    layout: str | None,
    size: str | None,
    fps: int | None,
    bitrate: int | None,
    background: str | None,
    files: str | None,
    streams: str | None,
    max_idle: int | None,
    storage: str | None,
    app: str | None,
    prefix: str | None,
    uid: str | None,
    job_id: str | None,
    stop_early_max: float | None,
    merge: bool | None,
    spec_file: Any,
    wait: bool,
    as_json: bool,
) -> None:
    """Record CNAME: submit a job and print its id.

    With --wait, the exit code is the job's end: 0 completed, 10 empty, 11 idle_exit, 12 failed,
    13 cancelled.
    """
    from tasks.recording import submit_and_start

    spec = build_spec(
        cname,
        base=read_spec_file(spec_file) if spec_file else None,
        duration=duration,
        layout=layout,
        size=size,
        fps=fps,
        bitrate=bitrate,
        background=background,
        files=files,
        streams=streams,
        max_idle=max_idle,
        storage=storage,
        prefix=prefix,
        uid=uid,
        job_id=job_id,
        stop_early_max=stop_early_max,
        merge=merge,
        app=app,
    )
    rt = runtime_for(ctx)
    try:
        job, _ = submit_and_start(rt, spec)
    except CloudrecError as exc:
        raise CliError(str(exc)) from None
    if wait:
        job = follow_job(
            rt.store, job.job_id, quiet=as_json, merge_wait=rt.settings.merge_callback_wait
        )
    click.echo(json.dumps(job.status_json(), indent=2) if as_json else job.job_id)
    if wait:
        sys.exit(state_exit(job.state))


def read_spec_file(spec_file: IO[str]) -> dict[str, Any]:
    """A ``--spec`` file's JSON object; anything else is one line naming the cause (exit 2)."""
    name = getattr(spec_file, "name", "--spec")
    try:
        data = json.load(spec_file)
    except UnicodeDecodeError as exc:
        raise CliError(f"--spec {name}: not UTF-8 text ({exc.reason})", Exit.USAGE) from None
    except json.JSONDecodeError as exc:
        raise CliError(
            f"--spec {name}: not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            Exit.USAGE,
        ) from None
    except RecursionError:
        raise CliError(f"--spec {name}: JSON nested too deeply", Exit.USAGE) from None
    if not isinstance(data, dict):
        raise CliError(
            f"--spec {name}: must be a JSON object (a job spec), got a JSON {_json_kind(data)}",
            Exit.USAGE,
        )
    return data


def _json_kind(value: Any) -> str:
    kinds = {list: "array", str: "string", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else kinds.get(type(value), type(value).__name__)


def _stop_command(ctx: click.Context, job_id: str, reason: str, as_json: bool) -> None:
    from tasks.recording import request_stop
    from worker.steps import StopReason

    rt = runtime_for(ctx)
    try:
        job = request_stop(rt, job_id, StopReason(reason))
    except JobNotFound as exc:
        raise CliError(str(exc), Exit.NOT_FOUND) from None
    if as_json:
        # The job as `status --json` shows it, and what was asked: a script can poll to the end.
        click.echo(json.dumps({**job.status_json(), "requested": reason}, indent=2))
    else:
        click.echo(f"{job_id}: {job.state}" + ("" if job.terminal else f" ({reason} requested)"))


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="the job's status JSON, plus requested")
@click.pass_context
def stop(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Stop a recording now, before its deadline (it ends completed)."""
    _stop_command(ctx, job_id, "stop", as_json)


@cli.command()
@click.argument("job_id")
@click.option("--json", "as_json", is_flag=True, help="the job's status JSON, plus requested")
@click.pass_context
def cancel(ctx: click.Context, job_id: str, as_json: bool) -> None:
    """Cancel a job: never started if still queued, stopped at once if recording."""
    _stop_command(ctx, job_id, "cancel", as_json)
