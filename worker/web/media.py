"""A job's recording files as the page serves them: which may be served, and where they are read.

Only a job's own files are served, by name under its page (``/jobs/<id>/files/<name>``): the
files its record lists, its merged MP4 (``merged`` in the status JSON, when it has one) and,
while it records, the playlist and slices being written under its prefix (their names begin with
the job's sid and channel, ``docs/service/files.md#naming``). Nothing else in the bucket, and no
path: a name is one path segment.

Files are read from the emulator's local storage back-end, ``<storage-dir>/<bucket>/<key>``
(``cloudrec emulator --storage-dir``, ``./recordings`` by default), with the bucket of the job's
storage profile. The page proxies them (HLS playlists name their slices relative to themselves,
so a proxy under one path serves the whole recording).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from config import Settings
from contract.naming import sanitize_cname
from worker.recording import expected_playlist_name
from worker.store import JobRecord

Kind = Literal["hls", "mp4"]
MEDIA_TYPES = {
    ".m3u8": "application/vnd.apple.mpegurl",
    ".ts": "video/mp2t",
    ".mp4": "video/mp4",
}


@dataclass(frozen=True)
class Source:
    """Something the player can play: a playlist or an MP4 of the job."""

    label: str
    name: str
    kind: Kind
    url: str
    live: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "name": self.name,
            "kind": self.kind,
            "url": self.url,
            "live": self.live,
        }


def file_url(job_id: str, name: str) -> str:
    return f"/jobs/{quote(job_id, safe='')}/files/{quote(name, safe='')}"


def merged_of(status: dict[str, Any]) -> dict[str, Any] | None:
    """The status JSON's ``merged`` (key, size, duration), when the job has a merged MP4."""
    merged = status.get("merged")
    return merged if isinstance(merged, dict) and isinstance(merged.get("key"), str) else None


def _prefix(job: JobRecord) -> list[str]:
    prefix = job.spec.get("fileNamePrefix") or []
    return [str(p) for p in prefix]


def _live_name(job: JobRecord) -> re.Pattern[str] | None:
    """The names of the files a recording writes: ``[bak<n>_]<sid>_<cname>...``."""
    if not job.sid:
        return None
    stem = f"{re.escape(job.sid)}_{re.escape(sanitize_cname(job.cname))}"
    return re.compile(rf"(?:bak\d+_)?{stem}[A-Za-z0-9_.]*\.(?:m3u8|ts|mp4)")


class Recordings:
    """A deployment's recording files, read from the local storage directory."""

    def __init__(self, settings: Settings, storage_dir: Path) -> None:
        self.settings = settings
        self.root = storage_dir.resolve()

    def key_of(self, job: JobRecord, name: str, status: dict[str, Any]) -> str | None:
        """The object key of the job's file ``name``; None unless the page may serve it."""
        if "/" in name or name in ("", ".", ".."):
            return None
        for f in job.files:
            if f.fileName == name:
                return f.key
        merged = merged_of(status)
        if merged is not None and merged["key"].rpartition("/")[2] == name:
            return str(merged["key"])
        pattern = _live_name(job)
        if pattern is not None and pattern.fullmatch(name):
            return "/".join([*_prefix(job), name])
        return None

    def path_of(self, job: JobRecord, key: str) -> Path | None:
        """Where object ``key`` of the job's bucket is on disk; None if it is not a file there."""
        try:
            bucket = self.settings.storage_profile(job.storage).bucket
        except KeyError:
            return None
        parts = [bucket, *key.split("/")]
        if any(p in ("", ".", "..") or "\\" in p for p in parts):
            return None
        path = self.root.joinpath(*parts)
        try:
            resolved = path.resolve(strict=True)
        except OSError:
            return None
        if not resolved.is_relative_to(self.root) or not resolved.is_file():
            return None
        return resolved

    def sources(self, job: JobRecord, status: dict[str, Any]) -> list[Source]:
        """What the player can play, best first: the merged MP4, the playlists, the MP4s.
        Only files that exist now, so the player never asks for a missing one."""
        found: list[Source] = []
        merged = merged_of(status)
        if merged is not None:
            name = merged["key"].rpartition("/")[2]
            found.append(Source("merged MP4", name, "mp4", file_url(job.job_id, name)))
        live = expected_playlist_name(job.sid, job.cname) if job.sid else None
        if live is not None and not job.terminal:  # the composite being written, as it grows
            found.append(Source("live", live, "hls", file_url(job.job_id, live), live=True))
        for f in job.files:
            kind: Kind | None = "hls" if f.fileName.endswith(".m3u8") else None
            if f.fileName.endswith(".mp4"):
                kind = "mp4"
            if kind is not None and not (f.fileName == live and not job.terminal):
                found.append(Source(f.fileName, f.fileName, kind, file_url(job.job_id, f.fileName)))
        return [s for s in found if self._exists(job, s.name, status)]

    def _exists(self, job: JobRecord, name: str, status: dict[str, Any]) -> bool:
        key = self.key_of(job, name, status)
        return key is not None and self.path_of(job, key) is not None


def media_type(name: str) -> str:
    return MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
