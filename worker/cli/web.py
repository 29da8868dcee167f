"""``cloudrec web``: the page to watch and find recordings (worker.web)."""

from __future__ import annotations

import logging
from pathlib import Path

import click

from worker.cli.base import CliError, Exit, cli, runtime_for, settings_for, setup_cli_logging


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8720, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--storage-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="the emulator's local storage (its --storage-dir), where recordings are read "
    "[default: CLOUDREC_WEB_STORAGE_DIR, else ./recordings]",
)
@click.pass_context
def web(ctx: click.Context, host: str, port: int, storage_dir: Path | None) -> None:
    """The jobs list at http://HOST:PORT/, a page per job with its player. Basic auth with
    CLOUDREC_WEB_USER / CLOUDREC_WEB_PASSWORD; without a password, loopback only."""
    from worker.web.access import listen_problem, password_of
    from worker.web.app import serve

    settings = settings_for(ctx)
    problem = listen_problem(host, settings)
    if problem is not None:
        raise CliError(problem, Exit.USAGE)
    runtime_for(ctx)  # Redis answers (else one line and exit 4), before the page says it is up
    setup_cli_logging(settings, logging.INFO)
    auth = "basic auth" if password_of(settings) else "no password: loopback only"
    shown = f"[{host}]" if ":" in host else host
    click.echo(f"cloudrec web on http://{shown}:{port}/ ({auth})", err=True)
    serve(settings, storage_dir or settings.web_storage_dir, host, port)
