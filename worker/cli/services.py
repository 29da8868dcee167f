"""Long-running services: ``emulator``, ``worker``, ``beat``, ``metrics``, and ``health``."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from worker.cli.base import (
    Exit,
    cli,
    redis_problem,
    settings_for,
    setup_cli_logging,
)

if TYPE_CHECKING:
    from config import Settings


# -- services ----------------------------------------------------------------------------------
@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8700, show_default=True, type=int)
@click.option("--storage-dir", default="recordings", show_default=True, type=click.Path())
@click.option("--customer-id", default=None, help="[default: CLOUDREC_CUSTOMER_ID]")
@click.option("--customer-secret", default=None, help="[default: CLOUDREC_CUSTOMER_SECRET]")
@click.option("--qps", default=10, show_default=True, type=int, help="0 = unlimited")
@click.option(
    "--app",
    "apps",
    multiple=True,
    metavar="APPID:CUSTOMER_ID:SECRET[:QPS]",
    help="serve this App ID with its own credentials and requests per second (repeatable); "
    "other App IDs use --customer-id/--customer-secret/--qps",
)
@click.option("--slice-seconds", default=15.0, show_default=True, type=float)
@click.option(
    "--mp4-rollover",
    default=7200.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="seconds of media per MP4 file before the next one starts (the service: ~2 h)",
)
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
    "--recorder-processes",
    default=0,
    show_default=True,
    type=click.IntRange(min=0),
    help="worker processes hosting the live recorders (0: all in the emulator's process)",
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
@click.option(
    "--app-certificate",
    "app_certificates",
    multiple=True,
    help="CERT: the project's App Certificate, the recorder then needs a valid RTC token "
    "(AccessToken2); APPID=CERT: that App ID's own (repeatable) [default: "
    "CLOUDREC_APP_CERTIFICATE and each CLOUDREC_APPS__<NAME>__APP_CERTIFICATE]",
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
    apps: tuple[str, ...],
    slice_seconds: float,
    mp4_rollover: float,
    s3_endpoint: str | None,
    ncs_url: str | None,
    ncs_secret: str | None,
    backup_transfer: float,
    sync_stop_timeout: float,
    recorder_processes: int,
    media_dirs: tuple[str, ...],
    dev_token: str | None,
    app_certificates: tuple[str, ...],
) -> None:
    """Run the recording-service emulator (REST API + dev API)."""
    from emulator.config import EmulatorApp, EmulatorConfig
    from emulator.devauth import DevTokenMissing
    from emulator.server import serve

    try:
        served = tuple(EmulatorApp.parse(text) for text in apps)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--app") from None
    settings = settings_for(ctx)
    setup_cli_logging(settings, logging.INFO)
    config = EmulatorConfig(
        host=host,
        port=port,
        storage_dir=Path(storage_dir),
        customer_id=customer_id or settings.customer_id,
        customer_secret=customer_secret or settings.customer_secret.get_secret_value(),
        qps=qps,
        apps=served,
        slice_seconds=slice_seconds,
        mp4_max_seconds=mp4_rollover,
        s3_endpoint_url=s3_endpoint,
        ncs_url=ncs_url,
        ncs_secret=ncs_secret or EmulatorConfig.ncs_secret,
        backup_transfer_seconds=backup_transfer,
        sync_stop_timeout_seconds=sync_stop_timeout,
        recorder_processes=recorder_processes,
        media_dirs=tuple(Path(d) for d in media_dirs),
        dev_token=dev_token or settings.dev_token_value,
        app_certificate=_app_certificate(app_certificates, settings),
        app_certificates=_per_app_certificates(app_certificates, settings),
    )
    try:
        serve(config)
    except DevTokenMissing as exc:
        raise click.ClickException(str(exc)) from None


def _app_certificate(options: tuple[str, ...], settings: Settings) -> str | None:
    """--app-certificate CERT (the last given), else CLOUDREC_APP_CERTIFICATE."""
    plain = [o for o in options if "=" not in o]
    if not plain:
        cert = settings.app_certificate
        return cert.get_secret_value() if cert is not None else None
    return _checked_certificate(plain[-1])


def _per_app_certificates(
    options: tuple[str, ...], settings: Settings
) -> tuple[tuple[str, str], ...]:
    """Each App ID's own certificate: the settings' app profiles', then --app-certificate
    APPID=CERT (which wins)."""
    owned = {
        p.app_id: p.app_certificate.get_secret_value()
        for p in settings.apps.values()  # the app "default" is CLOUDREC_APP_CERTIFICATE
        if p.app_certificate is not None
    }
    for option in options:
        app_id, sep, cert = option.partition("=")
        if sep:
            if not app_id:
                raise click.BadParameter(
                    "APPID=CERT: the App ID must not be empty", param_hint="--app-certificate"
                )
            owned[app_id] = _checked_certificate(cert)
    return tuple(owned.items())


def _checked_certificate(cert: str) -> str:
    """Refused unless 32 hexadecimal characters (the error never echoes it)."""
    if len(cert) != 32 or any(c not in "0123456789abcdefABCDEF" for c in cert):
        raise click.BadParameter(
            "must be the project's App Certificate: 32 hexadecimal characters",
            param_hint="--app-certificate",
        )
    return cert


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

    setup_cli_logging(settings_for(ctx), loglevel.upper())
    configure(settings_for(ctx))
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

    setup_cli_logging(settings_for(ctx), loglevel.upper())
    configure(settings_for(ctx))
    app.start(["beat", "-l", loglevel, *celery_args])


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9808, show_default=True, type=int)
@click.pass_context
def metrics(ctx: click.Context, host: str, port: int) -> None:
    """Serve recording-level metrics for Prometheus at http://HOST:PORT/metrics."""
    from worker.exporter import serve_metrics

    settings = settings_for(ctx)
    setup_cli_logging(settings, logging.INFO)
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

    settings = settings_for(ctx)
    configure(settings)
    problem = redis_problem(settings)
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


def _stranded_problem(settings: Settings) -> str | None:
    from worker.queues import find_stranded
    from worker.redis_conn import redis_client

    client = redis_client(settings, socket_connect_timeout=3, socket_timeout=3)
    try:
        stranded = find_stranded(client, settings)
    finally:
        client.close()
    return "; ".join(s.describe() for s in stranded) or None
