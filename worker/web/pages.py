"""The page's HTML, rendered on the server from the status JSON (``JobRecord.status_json``).

Everything a job says is escaped here (channel names, labels, error messages and callback
outcomes come from callers and services). The page's script never builds markup from data: it
puts these server-rendered fragments in place and ticks the countdowns, so this module is the one
renderer. No inline script or style: the Content-Security-Policy allows the page's own files
only.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import datetime
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from worker.states import TERMINAL_STATES, JobState
from worker.web.media import Source, file_url, merged_of

if TYPE_CHECKING:
    from worker.web.app import ListQuery

TERMINAL = frozenset(str(s) for s in TERMINAL_STATES)
STATE_CHOICES = ("all", "active", *(s.value for s in JobState))


def e(value: Any) -> str:
    """Any value as escaped text (None as a dash)."""
    return "-" if value is None else escape(str(value), quote=True)


def job_href(job_id: str) -> str:
    return f"/jobs/{quote(job_id, safe='')}"


def _epoch(text: str | None) -> float | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:  # the store's expanded years (+10000-...) are not a date Python reads
        return None


def duration(seconds: float) -> str:
    """``1h02m03s`` / ``2m03s`` / ``3s``, as the command line shows times."""
    if not math.isfinite(seconds):
        return "-"
    whole = max(round(seconds), 0)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def countdown_text(status: dict[str, Any], now: float) -> str:
    """Time left to the stop deadline (the page's script ticks it every second)."""
    stop = _epoch(status.get("stop_at"))
    if status["state"] in TERMINAL or stop is None:
        return "-"
    left = stop - now
    return f"{duration(left)} left" if left >= 0 else f"overdue {duration(-left)}"


def countdown(status: dict[str, Any], now: float) -> str:
    ended = "1" if status["state"] in TERMINAL else "0"
    return (
        f'<span class="countdown" data-stop-at="{e(status.get("stop_at"))}" '
        f'data-ended="{ended}">{e(countdown_text(status, now))}</span>'
    )


def state_badge(state: str) -> str:
    return f'<span class="state state-{e(state)}">{e(state)}</span>'


def page(title: str, body: str, *, scripts: Iterable[str] = (), data: dict[str, str]) -> str:
    """A whole page: the page's data travels in ``data-*`` attributes of <body>."""
    attributes = "".join(f' data-{e(k)}="{e(v)}"' for k, v in data.items())
    tags = "".join(f'<script src="/static/{e(s)}" defer></script>' for s in scripts)
    return (
        "<!doctype html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(title)} - cloudrec</title>"
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        f'<link rel="stylesheet" href="/static/style.css">{tags}</head>'
        f"<body{attributes}>"
        '<header><a class="home" href="/">cloudrec</a> recordings</header>'
        f"<main>{body}</main></body></html>\n"
    )


# -- the jobs list ------------------------------------------------------------------------------
def jobs_page(statuses: list[dict[str, Any]], now: float, query: ListQuery) -> str:
    options = "".join(
        f'<option value="{e(c)}"{" selected" if c == query.state else ""}>{e(c)}</option>'
        for c in STATE_CHOICES
    )
    body = (
        '<form class="filter" method="get" action="/"><label>state '
        f'<select name="state">{options}</select></label> '
        '<label>find <input type="search" name="q" placeholder="job, channel or label" '
        f'value="{e(query.text)}"></label>'
        f'<input type="hidden" name="limit" value="{query.limit}">'
        '<button type="submit">show</button>'
        '<span class="refresh" id="refresh">live</span></form>'
        '<table class="jobs"><thead><tr><th>job</th><th>state</th><th>channel</th>'
        "<th>deadline</th><th>stop at</th><th>files</th></tr></thead>"
        f'<tbody id="jobs">{job_rows(statuses, now)}</tbody></table>'
    )
    data = {"page": "jobs", "poll": f"/api/jobs?{query.params()}"}
    return page("jobs", body, scripts=["app.js"], data=data)


def job_rows(statuses: list[dict[str, Any]], now: float) -> str:
    if not statuses:
        return '<tr class="none"><td colspan="6">no jobs</td></tr>'
    return "".join(_job_row(s, now) for s in statuses)


def _job_row(status: dict[str, Any], now: float) -> str:
    job_id = status["job_id"]
    files = len(status.get("files") or [])
    merged = " + merged" if merged_of(status) else ""
    return (
        f'<tr class="job" data-job="{e(job_id)}">'
        f'<td><a href="{e(job_href(job_id))}">{e(job_id)}</a></td>'
        f"<td>{state_badge(status['state'])}</td>"
        f'<td class="cname">{e(status["cname"])}</td>'
        f"<td>{countdown(status, now)}</td>"
        f"<td>{e(status.get('stop_at'))}</td>"
        f"<td>{files}{merged}</td></tr>"
    )


# -- one job ------------------------------------------------------------------------------------
def job_page(status: dict[str, Any], sources: list[Source], now: float) -> str:
    job_id = status["job_id"]
    sections = job_sections(status, sources, now)
    body = (
        f'<h1>job <span class="job-id">{e(job_id)}</span></h1>'
        f'<section id="summary">{sections["summary"]}</section>'
        '<section class="player"><h2>recording</h2>'
        '<video id="player" controls muted playsinline preload="auto"></video>'
        f'<div id="sources">{sections["sources"]}</div></section>'
        f'<section id="history">{sections["history"]}</section>'
        f'<section id="files">{sections["files"]}</section>'
        f'<section id="problems">{sections["problems"]}</section>'
    )
    data = {
        "page": "job",
        "poll": f"/api/jobs/{quote(job_id, safe='')}",
        "sources": json.dumps([s.to_json() for s in sources]),
    }
    return page(f"job {job_id}", body, scripts=["hls.min.js", "app.js"], data=data)


def job_sections(status: dict[str, Any], sources: list[Source], now: float) -> dict[str, str]:
    """The parts of a job's page that change as it runs (the script swaps them in)."""
    return {
        "summary": _summary(status, now),
        "sources": _sources(sources),
        "history": _history(status),
        "files": _files(status),
        "problems": _problems(status),
    }


def _rows(pairs: Iterable[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{e(k)}</th><td>{v}</td></tr>" for k, v in pairs)


def _summary(status: dict[str, Any], now: float) -> str:
    labels = ", ".join(f"{k}={v}" for k, v in (status.get("labels") or {}).items())
    pairs = [
        ("state", state_badge(status["state"])),
        ("channel", f'<span class="cname">{e(status["cname"])}</span>'),
        ("app", e(status.get("app"))),  # the app profile (Agora project) the job records under
        ("recorder uid", e(status.get("uid"))),
        ("deadline", countdown(status, now)),
        ("start at", e(status.get("start_at"))),
        ("stop at", e(status.get("stop_at"))),
        ("sid", e(status.get("sid"))),
        ("stop reason", e(status.get("stop_reason"))),
        ("labels", e(labels or None)),
    ]
    return f'<table class="summary">{_rows(pairs)}</table>'


def _sources(sources: list[Source]) -> str:
    if not sources:
        return '<p class="none">nothing to play yet</p>'
    items = "".join(
        f'<li><a class="source" href="{e(s.url)}" data-kind="{e(s.kind)}">{e(s.label)}</a>'
        f"{' (recording now)' if s.live else ''}</li>"
        for s in sources
    )
    return f'<ul class="sources">{items}</ul>'


def _history(status: dict[str, Any]) -> str:
    entries = status.get("history") or []
    items = []
    previous: float | None = None
    for entry in entries:
        at = _epoch(entry.get("at"))
        gap = f" (+{duration(at - previous)})" if at is not None and previous is not None else ""
        previous = at if at is not None else previous
        items.append(
            f"<li><time>{e(entry.get('at'))}</time> {state_badge(entry['state'])}{e(gap)}</li>"
        )
    return f'<h2>history</h2><ol class="timeline">{"".join(items)}</ol>'


def _files(status: dict[str, Any]) -> str:
    job_id = status["job_id"]
    items = [
        f'<li><a href="{e(file_url(job_id, f["fileName"]))}">{e(f["fileName"])}</a> '
        f'<span class="key">{e(f["key"])}</span></li>'
        for f in status.get("files") or []
    ]
    merged = merged_of(status)
    if merged is not None:
        name = merged["key"].rpartition("/")[2]
        items.insert(
            0,
            f'<li><a href="{e(file_url(job_id, name))}">{e(name)}</a> merged, '
            f"{e(merged.get('size'))} bytes, {e(merged.get('duration'))} s "
            f'<span class="key">{e(merged["key"])}</span></li>',
        )
    upload = status.get("uploading_status")
    note = f"<p>upload: {e(upload)}</p>" if upload else ""
    listing = f'<ul class="files">{"".join(items)}</ul>' if items else '<p class="none">none</p>'
    return f"<h2>files</h2>{note}{listing}"


def _pre(value: Any) -> str:
    return f"<pre>{e(json.dumps(value, indent=2))}</pre>"


def _problems(status: dict[str, Any]) -> str:
    error = status.get("error")
    callback = status.get("callback")
    parts = ["<h2>error</h2>"]
    parts.append(
        f'<pre class="error">{e(json.dumps(error, indent=2))}</pre>' if error else "<p>none</p>"
    )
    parts.append("<h2>callback</h2>")
    if callback:
        outcomes = (
            (str(k), f"<pre>{e(json.dumps(v, indent=2))}</pre>") for k, v in callback.items()
        )
        rows = _rows(outcomes)
        parts.append(f'<table class="callback">{rows}</table>')
    else:
        parts.append("<p>none</p>")
    return "".join(parts)
