"""The page's ASGI app (Starlette): the jobs list, a page per job, their JSON, files, assets.

Routes (all behind basic auth when ``CLOUDREC_WEB_PASSWORD`` is set)::

    GET /                           the jobs list (?state=all|active|<state>, ?limit=N)
    GET /jobs/<id>                  a job's page: summary, player, history, files, error, callback
    GET /api/jobs                   {"now", "jobs": [status JSON...], "rows": <the list's rows>}
    GET /api/jobs/<id>              {"now", "job": status JSON, "sources", "sections"}
    GET /jobs/<id>/files/<name>     one of the job's recording files (worker.web.media)
    GET /static/<file>              the page's script and style, hls.js and its licence

Jobs are read with the job store's own reads and shown as their status JSON
(``JobRecord.status_json``): the page shows what ``cloudrec status --json`` says. Handlers are
plain functions (Starlette runs them in its thread pool: the store's reads block).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    Response,
)
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import Settings
from worker.redis_conn import redis_client
from worker.states import JobState
from worker.store import JobRecord, JobStore, iso
from worker.web import pages
from worker.web.access import BasicAuth, password_of
from worker.web.media import Recordings

log = logging.getLogger("cloudrec.web")

STATIC_DIR = Path(__file__).resolve().parent / "static"
DEFAULT_PORT = 8720
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
SEARCH_SCAN = 10_000  # jobs a text search looks through, newest first
MAX_SEARCH = 128
REDIS_TIMEOUT = 3.0
# The page's own files only; hls.js feeds the <video> through MediaSource (blob: URLs) and runs
# its transmuxer in a worker it makes from a blob.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
]


class SecurityHeaders:
    """ASGI middleware adding :data:`SECURITY_HEADERS` to every answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class Jobs:
    """The reads the page makes: the listing and one job, as status JSON."""

    def __init__(self, store: JobStore) -> None:
        self.store = store

    def listing(self, query: ListQuery) -> list[JobRecord]:
        """The newest jobs in the query's state; with a text, the newest ``limit`` of them that
        match it, looking through at most :data:`SEARCH_SCAN` jobs."""
        active = query.state == "active"
        chosen = None if query.state in ("all", "active") else JobState(query.state)
        if not query.text:
            found = self.store.iter_ids(chosen, limit=query.limit, active=active)
            return [job for ids in found for job in self.store.listed_records(ids)]
        matches: list[JobRecord] = []
        for ids in self.store.iter_ids(chosen, limit=SEARCH_SCAN, active=active):
            matches += [job for job in self.store.listed_records(ids) if query.matches(job)]
            if len(matches) >= query.limit:
                break
        return matches[: query.limit]

    def find(self, job_id: str) -> JobRecord | None:
        return self.store.find(job_id)


@dataclass(frozen=True)
class ListQuery:
    """What the list shows: a state (all, active or one), how many, and an optional text
    found in the job id, the channel or a label."""

    state: str = "all"
    limit: int = DEFAULT_LIMIT
    text: str = ""

    @classmethod
    def of(cls, request: Request) -> ListQuery:
        params = request.query_params
        state = params.get("state") or "all"
        raw = params.get("limit") or ""
        limit = min(max(int(raw), 1), MAX_LIMIT) if raw.isdigit() else DEFAULT_LIMIT
        text = (params.get("q") or "").strip()[:MAX_SEARCH]
        return cls(state if state in pages.STATE_CHOICES else "all", limit, text)

    def matches(self, job: JobRecord) -> bool:
        needle = self.text.casefold()
        labels = job.spec.get("labels") or {}
        haystack = [job.job_id, job.cname, *map(str, labels.keys()), *map(str, labels.values())]
        return any(needle in value.casefold() for value in haystack)

    def params(self) -> str:
        return urlencode({"state": self.state, "limit": self.limit, "q": self.text})


def build_app(settings: Settings, storage_dir: Path, store: JobStore | None = None) -> Starlette:
    """The page's app, reading jobs from ``store`` (default: the settings' Redis) and
    recordings from ``storage_dir``."""
    if store is None:
        client = redis_client(
            settings, socket_timeout=REDIS_TIMEOUT, socket_connect_timeout=REDIS_TIMEOUT
        )
        store = JobStore(client, retention=settings.job_retention)
    jobs = Jobs(store)
    recordings = Recordings(settings, storage_dir)

    def list_page(request: Request) -> Response:
        query = ListQuery.of(request)
        statuses = [j.status_json() for j in jobs.listing(query)]
        return HTMLResponse(pages.jobs_page(statuses, time.time(), query))

    def list_json(request: Request) -> Response:
        now = time.time()
        listed = jobs.listing(ListQuery.of(request))
        statuses = [j.status_json() for j in listed]
        return _no_store(
            JSONResponse({"now": iso(now), "jobs": statuses, "rows": pages.job_rows(statuses, now)})
        )

    def job_page(request: Request) -> Response:
        job = jobs.find(request.path_params["job_id"])
        if job is None:
            return _not_found(request.path_params["job_id"])
        status = job.status_json()
        sources = recordings.sources(job, status)
        return HTMLResponse(pages.job_page(status, sources, time.time()))

    def job_json(request: Request) -> Response:
        job = jobs.find(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"error": "no such job"}, status_code=404)
        now = time.time()
        status = job.status_json()
        sources = recordings.sources(job, status)
        body: dict[str, Any] = {
            "now": iso(now),
            "job": status,
            "sources": [s.to_json() for s in sources],
            "sections": pages.job_sections(status, sources, now),
        }
        return _no_store(JSONResponse(body))

    def job_file(request: Request) -> Response:
        job = jobs.find(request.path_params["job_id"])
        name = request.path_params["name"]
        key = recordings.key_of(job, name, job.status_json()) if job is not None else None
        if job is None or key is None:
            return PlainTextResponse("no such file\n", status_code=404)
        response = recordings.response(job, key, name, request.headers.get("range"))
        if name.endswith(".m3u8"):  # a live playlist grows: never a cached version
            response.headers["cache-control"] = "no-store"
        return response

    routes = [
        Route("/", list_page, methods=["GET"]),
        Route("/api/jobs", list_json, methods=["GET"]),
        Route("/api/jobs/{job_id}", job_json, methods=["GET"]),
        Route("/jobs/{job_id}", job_page, methods=["GET"]),
        Route("/jobs/{job_id}/files/{name}", job_file, methods=["GET"]),
        Mount("/static", app=StaticFiles(directory=STATIC_DIR), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders)]
    password = password_of(settings)
    if password is not None:
        middleware.append(Middleware(BasicAuth, user=settings.web_user, password=password))
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={redis.RedisError: _redis_down},
    )


async def _redis_down(request: Request, exc: Exception) -> Response:
    # The page polls on: it shows "not updating" until Redis answers again.
    log.warning("web: Redis does not answer: %s", type(exc).__name__)
    return PlainTextResponse("503: Redis does not answer\n", status_code=503)


def _no_store(response: Response) -> Response:
    response.headers["cache-control"] = "no-store"
    return response


def _not_found(job_id: str) -> Response:
    body = (
        f'<p>no job <span class="job-id">{pages.e(job_id)}</span></p>'
        '<p><a href="/">all jobs</a></p>'
    )
    return HTMLResponse(pages.page("not found", body, data={"page": "none"}), status_code=404)


def serve(settings: Settings, storage_dir: Path, host: str, port: int) -> None:
    """Run the page until interrupted."""
    import uvicorn

    uvicorn.run(
        build_app(settings, storage_dir),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="off",
    )
