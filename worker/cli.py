"""The ``cloudrec`` command line (docs/design.md#fixed-interfaces fixes its commands and flags).

Scripts depend on it: every command that reports has ``--json``, errors are one line on stderr
(never a traceback), and the exit code says what happened (:class:`Exit`, documented in the
README's "Command line" section).
"""

from __future__ import annotations

import enum
import json
import logging
import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, NoReturn

import click

from worker.errors import CloudrecError, JobNotFound, JobSpecError
from worker.states import JobState

# Settings, Redis and HTTP clients are imported where a command needs them: `cloudrec render`
# and `--help` should not pay for pydantic-settings, redis-py and requests at start-up.
if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.progress import Progress, TaskID

    from config import Settings
    from worker.devapi import DevApiClient
    from worker.schedules import ScheduleBook
    from worker.store import JobRecord, JobStore

LAYOUTS = {"floating": 0, "best-fit": 1, "vertical": 2, "custom": 3}
STREAMS = {"audio": 0, "video": 1, "both": 2}


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


def _settings(ctx: click.Context) -> Settings:
    """The settings, built (and logging set up with them) the first time a command asks."""
    root = ctx.find_root()
    if root.obj is None:
        root.obj = _load_settings()
        _logging(root.obj, logging.WARNING)
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
        _settings(ctx)  # before any command imports worker.celery_app, which reads them too


def _logging(settings: Settings, level: int | str) -> None:
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
        click.echo(f"Error: Redis does not answer: {_redis_error(exc)}", err=True)
        sys.exit(Exit.REDIS_DOWN)


def _is_redis_error(exc: Exception) -> bool:
    # Without importing redis: `cloudrec render` never loads it.
    redis = sys.modules.get("redis")
    return redis is not None and isinstance(exc, redis.RedisError)


def _redis_error(exc: BaseException) -> str:
    """The error's kind and message: redis-py's messages name host and port, never a password."""
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _runtime(ctx: click.Context) -> Any:
    """The runtime for a command that reads or writes Redis, after a ping with short timeouts:
    a Redis that is down or does not answer is one line and :attr:`Exit.REDIS_DOWN` in
    seconds, not a hang or a traceback."""
    from worker.celery_app import configure, runtime

    settings = _settings(ctx)
    configure(settings)
    problem = _redis_problem(settings.redis_url)
    if problem is not None:
        raise CliError(problem, Exit.REDIS_DOWN)
    return runtime()


# -- services ----------------------------------------------------------------------------------
@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8700, show_default=True, type=int)
@click.option("--storage-dir", default="recordings", show_default=True, type=click.Path())
@click.option("--customer-id", default=None, help="[default: CLOUDREC_CUSTOMER_ID]")
@click.option("--customer-secret", default=None, help="[default: CLOUDREC_CUSTOMER_SECRET]")
@click.option("--qps", default=10, show_default=True, type=int, help="0 = unlimited")
@click.option("--slice-seconds", default=15.0, show_default=True, type=float)
@click.option("--s3-endpoint", default=None, help="upload vendor-1 (S3) storage to this URL")
@click.option("--ncs-url", default=None, help="POST notification events here, signed")
@click.option("--ncs-secret", default=None, help="HMAC key of the notification signatures")
@click.option(
    "--backup-transfer",
    default=0.0,
    show_default=True,
    type=float,
    help="seconds between retries of backed-up uploads (0 = never)",
)
@click.option(
    "--sync-stop-timeout",
    default=20.0,
    show_default=True,
    type=float,
    help="a synchronous stop longer than this answers 206 code 50",
)
@click.option(
    "--media-dir",
    "media_dirs",
    multiple=True,
    type=click.Path(file_okay=False),
    help="users' media files and local background images are read only under these "
    "(repeatable; default: none)",
)
@click.option(
    "--dev-token",
    default=None,
    help="require 'Authorization: Bearer TOKEN' on /dev/ (needed beyond loopback) "
    "[default: CLOUDREC_DEV_TOKEN]",
)
@click.pass_context
def emulator(
    ctx: click.Context,
    host: str,
    port: int,
    storage_dir: str,
    customer_id: str | None,
    customer_secret: str | None,
    qps: int,
    slice_seconds: float,
    s3_endpoint: str | None,
    ncs_url: str | None,
    ncs_secret: str | None,
    backup_transfer: float,
    sync_stop_timeout: float,
    media_dirs: tuple[str, ...],
    dev_token: str | None,
) -> None:
    """Run the recording-service emulator (REST API + dev API)."""
    from emulator.config import EmulatorConfig
    from emulator.devauth import DevTokenMissing
    from emulator.server import serve

    settings = _settings(ctx)
    _logging(settings, logging.INFO)
    config = EmulatorConfig(
        host=host,
        port=port,
        storage_dir=Path(storage_dir),
        customer_id=customer_id or settings.customer_id,
        customer_secret=customer_secret or settings.customer_secret.get_secret_value(),
        qps=qps,
        slice_seconds=slice_seconds,
        s3_endpoint_url=s3_endpoint,
        ncs_url=ncs_url,
        ncs_secret=ncs_secret or EmulatorConfig.ncs_secret,
        backup_transfer_seconds=backup_transfer,
        sync_stop_timeout_seconds=sync_stop_timeout,
        media_dirs=tuple(Path(d) for d in media_dirs),
        dev_token=dev_token or settings.dev_token_value,
    )
    try:
        serve(config)
    except DevTokenMissing as exc:
        raise click.ClickException(str(exc)) from None


# Options cloudrec does not know go to Celery as they are: `cloudrec worker -n w1@%h
# --autoscale 8,2 -Q cloudrec.control` is `celery -A worker.celery_app worker ...` with
# cloudrec's defaults in front (Celery takes the last of a repeated option).
PASS_THROUGH = {"ignore_unknown_options": True, "allow_extra_args": True}


@cli.command(context_settings=PASS_THROUGH)
@click.option("-c", "--concurrency", default=4, show_default=True, type=int)
@click.option(
    "--pool",
    default="threads",
    show_default=True,
    type=click.Choice(["prefork", "threads", "solo"]),
)
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def worker(
    ctx: click.Context, concurrency: int, pool: str, loglevel: str, celery_args: tuple[str, ...]
) -> None:
    """Run a Celery worker for the recording queues (the app's task_queues).

    Any other option is Celery's (`celery worker --help`): -Q, -n, --autoscale, ...
    """
    from worker.celery_app import app, configure

    _logging(_settings(ctx), loglevel.upper())
    configure(_settings(ctx))
    # Logging, the job fields of each task's lines and redaction are installed by the app's
    # own signals (worker.logs.connect_celery_logging), as under `celery -A worker.celery_app`.
    app.worker_main(
        ["worker", "-c", str(concurrency), "--pool", pool, "-E", "-l", loglevel, *celery_args]
    )


@cli.command(context_settings=PASS_THROUGH)
@click.option("-l", "--loglevel", default="INFO", show_default=True)
@click.argument("celery_args", nargs=-1, type=click.UNPROCESSED)
@click.pass_context
def beat(ctx: click.Context, loglevel: str, celery_args: tuple[str, ...]) -> None:
    """Run celery beat: the deadline dispatcher, the reconciler, scheduled recordings.

    Any other option is Celery's (`celery beat --help`), e.g. --pidfile, --max-interval.
    """
    from worker.celery_app import app, configure

    _logging(_settings(ctx), loglevel.upper())
    configure(_settings(ctx))
    app.start(["beat", "-l", loglevel, *celery_args])


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9808, show_default=True, type=int)
@click.pass_context
def metrics(ctx: click.Context, host: str, port: int) -> None:
    """Serve recording-level metrics for Prometheus at http://HOST:PORT/metrics."""
    from worker.exporter import serve_metrics

    settings = _settings(ctx)
    _logging(settings, logging.INFO)
    _, thread = serve_metrics(settings.redis_url, host, port, settings)
    click.echo(f"serving metrics on http://{host}:{port}/metrics", err=True)
    thread.join()


@cli.command()
@click.option("--beat", "check_beat", is_flag=True, help="also require an active celery beat")
@click.option("--max-age", default=30.0, show_default=True, help="seconds since beat's last tick")
@click.option("--json", "as_json", is_flag=True, help='{"ok": bool, "problems": [...]}')
@click.pass_context
def health(ctx: click.Context, check_beat: bool, max_age: float, as_json: bool) -> None:
    """Exit 0 if Redis answers, no cloudrec task waits on a queue no cloudrec worker serves
    (a caller that forgot queue="cloudrec"), and, with --beat, a beat holds the lock and ticks;
    else 1.

    Only 0 and 1, as container healthchecks expect.
    """
    from worker.celery_app import app, configure
    from worker.schedules import beat_problem

    settings = _settings(ctx)
    configure(settings)
    problem = _redis_problem(settings.redis_url)
    if problem is None:
        problem = _stranded_problem(settings)  # a caller sending to a queue nobody serves
    if problem is None and check_beat:
        problem = beat_problem(app, time.time(), max_age)
    if as_json:
        _health_json([problem] if problem is not None else [])
    if problem is not None:
        raise click.ClickException(problem)
    click.echo("ok")


def _health_json(problems: list[str]) -> NoReturn:
    """Print the health report as JSON; exit 1 if there is any problem, else 0."""
    click.echo(json.dumps({"ok": not problems, "problems": problems}))
    sys.exit(Exit.ERROR if problems else Exit.OK)


def _redis_problem(url: str) -> str | None:
    import redis

    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=3, retry=None)
    try:
        client.ping()
    except redis.RedisError as exc:
        return f"Redis does not answer: {_redis_error(exc)}"
    finally:
        client.close()
    return None


def _stranded_problem(settings: Settings) -> str | None:
    import redis

    from worker.queues import find_stranded

    client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3, socket_timeout=3)
    try:
        stranded = find_stranded(client, settings)
    finally:
        client.close()
    return "; ".join(s.describe() for s in stranded) or None


# -- channels (emulator dev API) ---------------------------------------------------------------
@cli.group()
def channel() -> None:
    """Simulated channels and users in the emulator."""


def _dev(ctx: click.Context) -> DevApiClient:
    from worker.devapi import DevApiClient

    settings = _settings(ctx)
    return DevApiClient(settings.api_base_url, token=settings.dev_token_value)


def _dev_call(func: Any, *args: Any, **kwargs: Any) -> Any:
    from worker.devapi import DevApiError

    try:
        return func(*args, **kwargs)
    except DevApiError as exc:
        raise click.ClickException(str(exc)) from None


@channel.command("join")
@click.argument("cname")
@click.argument("uid")
@click.option("--role", default="host", type=click.Choice(["host", "audience"]), show_default=True)
@click.option("--color", default=None, help="video: a synthetic pattern of this colour (#RRGGBB)")
@click.option("--tone", default=None, type=float, help="audio: a sine tone of this frequency (Hz)")
@click.option("--video", "video_file", default=None, type=click.Path(exists=True))
@click.option("--audio", "audio_file", default=None, type=click.Path(exists=True))
@click.option("--no-video", is_flag=True)
@click.option("--no-audio", is_flag=True)
@click.pass_context
def channel_join(
    ctx: click.Context,
    cname: str,
    uid: str,
    role: str,
    color: str | None,
    tone: float | None,
    video_file: str | None,
    audio_file: str | None,
    no_video: bool,
    no_audio: bool,
) -> None:
    """A simulated user joins CNAME and publishes video and audio."""
    video: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    if not no_video:
        video = (
            {"file": str(Path(video_file).resolve())}
            if video_file
            else {"color": color or "#3366FF"}
        )
    if not no_audio:
        audio = {"file": str(Path(audio_file).resolve())} if audio_file else {"tone": tone or 440.0}
    result = _dev_call(_dev(ctx).join, cname, uid, role=role, video=video, audio=audio)
    click.echo(json.dumps(result))


@channel.command("leave")
@click.argument("cname")
@click.argument("uid")
@click.pass_context
def channel_leave(ctx: click.Context, cname: str, uid: str) -> None:
    """A simulated user leaves CNAME."""
    _dev_call(_dev(ctx).leave, cname, uid)


def _publish(ctx: click.Context, cname: str, uid: str, video: bool, audio: bool, on: bool) -> None:
    if not video and not audio:
        video = audio = True
    _dev_call(
        _dev(ctx).publish, cname, uid, video=on if video else None, audio=on if audio else None
    )


@channel.command("mute")
@click.argument("cname")
@click.argument("uid")
@click.option("--video", is_flag=True)
@click.option("--audio", is_flag=True)
@click.pass_context
def channel_mute(ctx: click.Context, cname: str, uid: str, video: bool, audio: bool) -> None:
    """Stop publishing video and/or audio (both if neither flag is given)."""
    _publish(ctx, cname, uid, video, audio, on=False)


@channel.command("unmute")
@click.argument("cname")
@click.argument("uid")
@click.option("--video", is_flag=True)
@click.option("--audio", is_flag=True)
@click.pass_context
def channel_unmute(ctx: click.Context, cname: str, uid: str, video: bool, audio: bool) -> None:
    """Publish video and/or audio again."""
    _publish(ctx, cname, uid, video, audio, on=True)


@channel.command("show")
@click.argument("cname")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def channel_show(ctx: click.Context, cname: str, as_json: bool) -> None:
    """Who is in CNAME and what they publish."""
    info = _dev_call(_dev(ctx).channel, cname)
    if as_json:
        click.echo(json.dumps(info, indent=2))
        return
    users = info.get("users", [])
    click.echo(f"channel {cname}: {len(users)} user(s), {info.get('hosts', 0)} host(s)")
    for user in users:
        video = _source_text(user.get("video"), user.get("videoPublished", True))
        audio = _source_text(user.get("audio"), user.get("audioPublished", True))
        click.echo(f"  uid {user.get('uid')}  {user.get('role')}  video {video}  audio {audio}")


def _source_text(source: dict[str, Any] | None, published: bool) -> str:
    """``color #FF0000``, ``tone 440 Hz``, ``file a.mp4`` or ``none``; ``(muted)`` if off."""
    if not source:
        return "none"
    if "color" in source:
        text = f"color {source['color']}"
    elif "tone" in source:
        text = f"tone {source['tone']:g} Hz"
    else:
        text = " ".join(f"{k} {v}" for k, v in source.items())
    return text if published else f"{text} (muted)"


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
    optional = {"duration": duration, "storage": storage, "uid": uid, "job_id": job_id}
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
@click.option("--prefix", help="fileNamePrefix as a/b/c")
@click.option("--uid", help="recorder uid (default: from the configured range)")
@click.option("--job-id", help="idempotency key")
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
    prefix: str | None,
    uid: str | None,
    job_id: str | None,
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
    )
    rt = _runtime(ctx)
    try:
        job, _ = submit_and_start(rt, spec)
    except CloudrecError as exc:
        raise CliError(str(exc)) from None
    if wait:
        job = follow_job(rt.store, job.job_id, quiet=as_json)
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


def follow_job(store: Any, job_id: str, *, quiet: bool = False, poll: float = 0.5) -> JobRecord:
    """Poll a job to its terminal state with a progress bar to its deadline (on stderr)."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

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
    for label, key in (("state", "state"), ("channel", "cname"), ("elapsed", "elapsed")):
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
    for column in ("job", "state", "cname", "elapsed", "remaining", "files"):
        table.add_column(column, no_wrap=column in ("job", "state"))
    for job in records:
        view = job_view(job, now)
        table.add_row(
            *(view[c] for c in ("job", "state", "cname", "elapsed", "remaining", "files"))
        )
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
            pass
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
    store = _runtime(ctx).store
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
    out = job.status_json()
    view = job_view(job, time.time())
    click.echo(f"job {job.job_id}: {out['state']}  channel {job.cname}  recorder uid {job.uid}")
    click.echo(f"  stop at {out['stop_at']}  sid {job.sid or '-'}")
    click.echo(f"  elapsed {view['elapsed']}  remaining {view['remaining']}  files {view['files']}")
    for entry in out["history"]:
        click.echo(f"  {entry['at']}  {entry['state']}")
    for f in out["files"]:
        click.echo(f"  file {f['key']}")
    if job.error:
        click.echo(f"  error: {job.error}")


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
    store = _runtime(ctx).store
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


def _stop_command(ctx: click.Context, job_id: str, reason: str, as_json: bool) -> None:
    from tasks.recording import request_stop

    rt = _runtime(ctx)
    try:
        job = request_stop(rt, job_id, reason)
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


# -- scheduled recordings ----------------------------------------------------------------------
@cli.group()
def schedule() -> None:
    """Recurring recordings fired by celery beat (kept in Redis; changes apply while beat runs)."""


def _book(ctx: click.Context) -> ScheduleBook:
    from tasks.schedules import schedule_book

    return schedule_book(_runtime(ctx))


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


@cli.command()
@click.argument("scenario", type=click.File("r"))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
def render(scenario: Any, out_dir: str) -> None:
    """Composite a scripted channel offline, as fast as the machine allows."""
    from emulator.media import render_scenario

    for output in render_scenario(json.load(scenario), Path(out_dir)):
        click.echo(str(output.path))


@cli.command()
@click.option("--duration", default=12, show_default=True, type=int)
@click.option("--storage-dir", default="recordings", show_default=True, type=click.Path())
@click.pass_context
def demo(ctx: click.Context, duration: int, storage_dir: str) -> None:
    """Everything local, one shot: record three simulated users into HLS and MP4."""
    from worker.demo import DemoError, run_demo

    try:
        run_demo(_settings(ctx), duration=duration, storage_dir=Path(storage_dir))
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None


# -- NCS notifications (worker.ncs, worker.ncs_receiver) ---------------------------------------
@cli.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8710, show_default=True, type=int)
@click.pass_context
def ncs(ctx: click.Context, host: str, port: int) -> None:
    """Receive Agora's NCS notifications at http://HOST:PORT/ (signed with CLOUDREC_NCS_SECRET)."""
    if ctx.invoked_subcommand is not None:
        return
    from worker.ncs_receiver import serve

    settings = _settings(ctx)
    if settings.ncs_secret is None or not settings.ncs_secret.get_secret_value():
        raise click.ClickException("CLOUDREC_NCS_SECRET: required (the NCS webhook's secret)")
    _logging(settings, logging.INFO)
    click.echo(f"receiving NCS notifications on http://{host}:{port}/", err=True)
    serve(settings, host, port)


def _ledger(ctx: click.Context) -> Any:
    import redis

    from worker.ncs import NcsLedger

    settings = _settings(ctx)
    return NcsLedger(redis.Redis.from_url(settings.redis_url), settings.ncs_ttl)


@ncs.command("unclaimed")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ncs_unclaimed(ctx: click.Context, as_json: bool) -> None:
    """Recordings NCS told of that no job holds (another system's, or a job that lost track)."""
    recordings = [r.summary() for r in _ledger(ctx).unclaimed()]
    if as_json:
        click.echo(json.dumps(recordings, indent=2))
        return
    for r in recordings:
        click.echo(f"{r['sid']}  {r['cname']}  uid {r['uid']}  events {r['events']}")
    click.echo(f"{len(recordings)} unclaimed recording(s)", err=True)


@ncs.command("show")
@click.argument("sid")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def ncs_show(ctx: click.Context, sid: str, as_json: bool) -> None:
    """What NCS told of recording SID, and its events in arrival order."""
    ledger = _ledger(ctx)
    found = ledger.get(sid)
    if found is None:
        raise click.ClickException(f"no notification heard of sid {sid!r}")
    data = found.summary() | {"log": ledger.events(sid)}
    click.echo(json.dumps(data, indent=None if not as_json else 2))


if __name__ == "__main__":
    main()
