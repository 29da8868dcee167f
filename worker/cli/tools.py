"""Offline and one-shot tools: ``render`` (a scripted channel, no services) and ``demo``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from worker.cli.base import (
    cli,
    settings_for,
)

if TYPE_CHECKING:
    pass


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
    from worker.cli.demo import DemoError, run_demo

    try:
        run_demo(settings_for(ctx), duration=duration, storage_dir=Path(storage_dir))
    except DemoError as exc:
        raise click.ClickException(str(exc)) from None
