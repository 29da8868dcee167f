"""``cloudrec channel``: simulated users in an emulator channel (its dev API)."""

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
    from worker.devapi import DevApiClient


# -- channels (emulator dev API) ---------------------------------------------------------------
@cli.group()
def channel() -> None:
    """Simulated channels and users in the emulator."""


def _dev(ctx: click.Context) -> DevApiClient:
    from worker.devapi import DevApiClient

    settings = settings_for(ctx)
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
