"""The page's renderer and file rules, on records built in memory: hostile text stays text, and
only a job's own files are served (no other name, no path out of the storage directory)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from config import Settings
from worker.states import JobState
from worker.store import FileRecord, JobRecord
from worker.web import pages
from worker.web.app import ListQuery
from worker.web.media import Recordings, Source

HOSTILE = "<img src=x onerror=alert(1)>\"'&"
SID = "0123456789abcdef0123456789abcdef"


class Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse(html: str) -> Tags:
    parser = Tags()
    parser.feed(html)
    return parser


def job(**fields: Any) -> JobRecord:
    values: dict[str, Any] = {
        "job_id": "job-1",
        "state": JobState.RECORDING,
        "cname": "class.42",  # files: class-42 (naming replaces the dot)
        "uid": "900000001",
        "spec": {"fileNamePrefix": ["a", "b"]},
        "created_at": time.time(),
        "stop_at": time.time() + 60,
        "sid": SID,
    }
    return JobRecord(**(values | fields))


def test_hostile_text_is_escaped_everywhere() -> None:
    record = job(
        cname=HOSTILE,
        spec={"labels": {HOSTILE: HOSTILE}},
        error={"message": HOSTILE, "code": 2},
        callback_status={"webhook": {"outcome": HOSTILE}},
        files=[FileRecord(fileName=HOSTILE + ".m3u8", key="k/" + HOSTILE)],
        state=JobState.FAILED,
    )
    status = record.status_json()
    source = Source(HOSTILE, HOSTILE, "hls", "/jobs/x/files/" + HOSTILE)
    for html in (
        pages.job_page(status, [source], time.time()),
        pages.jobs_page([status], time.time(), ListQuery(text=HOSTILE)),
        *pages.job_sections(status, [source], time.time()).values(),
    ):
        parsed = parse(html)
        assert not [t for t, _ in parsed.tags if t in ("img", "iframe", "object", "embed")]
        assert all(not name.startswith("on") for _, attrs in parsed.tags for name, _ in attrs)
        scripts = [dict(attrs).get("src") for tag, attrs in parsed.tags if tag == "script"]
        assert all(src and src.startswith("/static/") for src in scripts), scripts
    assert HOSTILE in "".join(parse(pages.job_page(status, [], time.time())).text)


def test_only_the_jobs_own_files_are_served(tmp_path: Path) -> None:
    recordings = Recordings(Settings(), tmp_path)
    record = job(files=[FileRecord(fileName="listed.mp4", key="x/listed.mp4")])
    status = record.status_json() | {"merged": {"key": "a/b/job-1.mp4", "size": 1, "duration": 1}}
    assert recordings.key_of(record, "listed.mp4", status) == "x/listed.mp4"
    assert recordings.key_of(record, "job-1.mp4", status) == "a/b/job-1.mp4"
    for name in (f"{SID}_class-42.m3u8", f"{SID}_class-42_20250101000000000.ts",
                 f"bak1_{SID}_class-42.m3u8", f"{SID}_class-42_0.mp4"):  # fmt: skip
        assert recordings.key_of(record, name, status) == f"a/b/{name}"
    for name in ("other.m3u8", f"{SID[::-1]}_class-42.m3u8", f"{SID}_class-42.txt",
                 "../listed.mp4", f"x/{SID}_class-42.m3u8", "", "..", "."):  # fmt: skip
        assert recordings.key_of(record, name, status) is None, name


def test_a_file_is_read_only_inside_the_storage_directory(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    (root / "recordings" / "a").mkdir(parents=True)
    (root / "recordings" / "a" / "in.ts").write_bytes(b"ts")
    (tmp_path / "outside.ts").write_bytes(b"secret")
    (root / "recordings" / "a" / "link.ts").symlink_to(tmp_path / "outside.ts")
    recordings = Recordings(Settings(), root)
    record = job()
    path = recordings.local.path_of("recordings", "a/in.ts")
    assert path == (root / "recordings/a/in.ts").resolve()
    assert recordings.exists(record, "a/in.ts")
    for key in (
        "a/link.ts",
        "../outside.ts",
        "a/../../outside.ts",
        "a/missing.ts",
        "a",
        "a//in.ts",
    ):
        assert recordings.local.path_of("recordings", key) is None, key
        assert not recordings.exists(record, key)
    assert not recordings.exists(job(storage="no-such-profile"), "a/in.ts")


def test_sources_are_the_files_that_exist_best_first(tmp_path: Path) -> None:
    recordings = Recordings(Settings(), tmp_path)
    live_name = f"{SID}_class-42.m3u8"
    record = job()
    assert recordings.sources(record, record.status_json()) == []  # nothing written yet
    (tmp_path / "recordings" / "a" / "b").mkdir(parents=True)
    (tmp_path / "recordings" / "a" / "b" / live_name).write_text("#EXTM3U\n")
    live = recordings.sources(record, record.status_json())
    assert [(s.label, s.live) for s in live] == [("live", True)]
    (tmp_path / "recordings" / "a" / "b" / "job-1.mp4").write_bytes(b"mp4")
    ended = job(
        state=JobState.COMPLETED, files=[FileRecord(fileName=live_name, key=f"a/b/{live_name}")]
    )
    status = ended.status_json() | {"merged": {"key": "a/b/job-1.mp4", "size": 3, "duration": 1}}
    assert [(s.kind, s.name) for s in recordings.sources(ended, status)] == [
        ("mp4", "job-1.mp4"),
        ("hls", live_name),
    ]


def test_after_a_failover_the_live_playlist_is_the_new_one(tmp_path: Path) -> None:
    recordings = Recordings(Settings(), tmp_path)
    folder = tmp_path / "recordings" / "a" / "b"
    folder.mkdir(parents=True)
    (folder / f"{SID}_class-42.m3u8").write_text("#EXTM3U\n")
    record = job(failover_uids=["900000002"])  # NCS told of one HA failover
    assert [s.name for s in recordings.sources(record, record.status_json())] == [
        f"{SID}_class-42.m3u8"  # the new server has written nothing yet
    ]
    (folder / f"bak0_{SID}_class-42.m3u8").write_text("#EXTM3U\n")
    assert [s.name for s in recordings.sources(record, record.status_json())] == [
        f"bak0_{SID}_class-42.m3u8"
    ]


def test_the_job_page_names_the_app_the_job_records_under() -> None:
    for app in ("school", "default"):
        summary = pages.job_sections(job(app=app).status_json(), [], time.time())["summary"]
        cells = parse(summary).text
        assert cells[cells.index("app") + 1] == app


def test_a_live_playlist_replaced_while_served_comes_whole(tmp_path: Path) -> None:
    """The emulator renames each new playlist version over the old one: every answer is one
    version, whole, with the length it says (a browser rejects a length that lies)."""
    recordings = Recordings(Settings(), tmp_path)
    folder = tmp_path / "recordings" / "a" / "b"
    folder.mkdir(parents=True)
    name = f"{SID}_class-42.m3u8"
    versions = [b"#EXTM3U\n" + b"#EXTINF:2.0,\nseg.ts\n" * n for n in (1, 400)]
    (folder / name).write_bytes(versions[0])
    record = job()
    stop = threading.Event()

    def rewrite() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            tmp = folder / f".{name}.tmp"
            tmp.write_bytes(versions[n % 2])
            os.replace(tmp, folder / name)

    writer = threading.Thread(target=rewrite, daemon=True)
    writer.start()
    try:
        for _ in range(400):
            length, body = asyncio.run(
                _served(recordings.response(record, f"a/b/{name}", name, None))
            )
            assert length == len(body)
            assert body in versions
    finally:
        stop.set()
        writer.join()


async def _served(response: Any) -> tuple[int, bytes]:
    """Run an ASGI response as a server would: the length it announced, and the body it sent."""
    sent: list[dict[str, Any]] = []

    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if requested:  # the client stays connected until the answer is sent
            await asyncio.sleep(3600)
        requested = True
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "GET", "headers": [], "path": "/", "query_string": b""}
    await response(scope, receive, send)
    headers = dict(sent[0]["headers"])
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return int(headers[b"content-length"]), body
