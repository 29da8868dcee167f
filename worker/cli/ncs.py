"""``cloudrec ncs``: receive Agora's NCS notifications, and read what they told."""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import click

from worker.cli.base import (
    cli,
    settings_for,
    setup_cli_logging,
)

if TYPE_CHECKING:
    pass


# -- NCS notifications (worker.ncs, worker.ncs_receiver) ---------------------------------------
@cli.group(invoke_without_command=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8710, show_default=True, type=int)
@click.pass_context
def ncs(ctx: click.Context, host: str, port: int) -> None:
    """Receive Agora's NCS notifications at http://HOST:PORT/ (signed with CLOUDREC_NCS_SECRET)."""
    if ctx.invoked_subcommand is not None:
        return
    from worker.ncs_receiver import ncs_secrets, serve

    settings = settings_for(ctx)
    try:
        ncs_secrets(settings)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    setup_cli_logging(settings, logging.INFO)
    click.echo(f"receiving NCS notifications on http://{host}:{port}/", err=True)
    serve(settings, host, port)


def _ledger(ctx: click.Context) -> Any:
    from worker.ncs import NcsLedger
    from worker.redis_conn import redis_client

    settings = settings_for(ctx)
    return NcsLedger(redis_client(settings), settings.ncs_ttl)


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
