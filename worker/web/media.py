"""A job's recording files as the page serves them: which may be served, and where they are read.

Only a job's own files are served, by name under its page (``/jobs/<id>/files/<name>``): the
files its record lists, its merged MP4 (``merged`` in the status JSON, when it has one) and,
while it records, the playlist and slices being written under its prefix (their names begin with
the job's sid and channel, ``docs/service/files.md#naming``). Nothing else in the bucket, and no
path: a name is one path segment.

Where the files are read, per storage profile: a profile with an ``endpoint`` (S3-compatible,
vendor 11, or S3 at a given endpoint) from its bucket over S3 with the profile's own keys; any
other from the emulator's local storage back-end, ``<storage-dir>/<bucket>/<key>`` (``cloudrec
emulator --storage-dir``, ``./recordings`` by default). The page proxies them either way (an HLS
playlist names its slices relative to itself, so one path serves the whole recording; byte
ranges pass through for MP4 seeking), and never shows a key or credential.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from starlette.responses import FileResponse, PlainTextResponse, Response, StreamingResponse

from config import Settings, StorageProfile
from contract.naming import failover_prefix, playlist_name, sanitize_cname
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
    """A deployment's recording files: which a job may serve, and where each one is."""

    def __init__(self, settings: Settings, storage_dir: Path) -> None:
        self.settings = settings
        self.local = LocalFiles(storage_dir)
        self.s3 = S3Files()

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

    def profile_of(self, job: JobRecord) -> StorageProfile | None:
        try:
            return self.settings.storage_profile(job.storage)
        except KeyError:
            return None

    def exists(self, job: JobRecord, key: str) -> bool:
        profile = self.profile_of(job)
        if profile is None:
            return False
        if profile.endpoint:
            return self.s3.exists(profile, key)
        return self.local.path_of(profile.bucket, key) is not None

    def response(self, job: JobRecord, key: str, name: str, byte_range: str | None) -> Response:
        """The file as an HTTP answer (404 when it is not there)."""
        profile = self.profile_of(job)
        if profile is not None and profile.endpoint:
            return self.s3.response(profile, key, media_type(name), byte_range)
        path = self.local.path_of(profile.bucket, key) if profile is not None else None
        if path is None:
            return PlainTextResponse("no such file\n", status_code=404)
        if name.endswith(".m3u8"):
            return _playlist_response(path, media_type(name))
        return FileResponse(path, media_type=media_type(name))

    def sources(self, job: JobRecord, status: dict[str, Any]) -> list[Source]:
        """What the player can play, best first: the merged MP4, the playlists, the MP4s.
        Only files that exist now, so the player never asks for a missing one."""
        found: list[Source] = []
        merged = merged_of(status)
        if merged is not None:
            name = merged["key"].rpartition("/")[2]
            found.append(Source("merged MP4", name, "mp4", file_url(job.job_id, name)))
        live = self._live_playlist(job, status) if not job.terminal else None
        if live is not None:  # the composite being written, as it grows
            found.append(Source("live", live, "hls", file_url(job.job_id, live), live=True))
        for f in job.files:
            kind: Kind | None = "hls" if f.fileName.endswith(".m3u8") else None
            if f.fileName.endswith(".mp4"):
                kind = "mp4"
            if kind is not None and f.fileName != live:
                found.append(Source(f.fileName, f.fileName, kind, file_url(job.job_id, f.fileName)))
        return [s for s in found if self._exists(job, s.name, status)]

    def _live_playlist(self, job: JobRecord, status: dict[str, Any]) -> str | None:
        """The playlist a live recording writes now: after its n-th HA failover (NCS told of
        each, ``failover_uids``) the ``bak<n-1>_`` one, else the first; the newest that exists."""
        if not job.sid:
            return None
        prefixes = [failover_prefix(n) for n in reversed(range(len(job.failover_uids)))]
        for prefix in [*prefixes, ""]:
            name = playlist_name(job.sid, job.cname, prefix)
            if self._exists(job, name, status):
                return name
        return None

    def _exists(self, job: JobRecord, name: str, status: dict[str, Any]) -> bool:
        key = self.key_of(job, name, status)
        return key is not None and self.exists(job, key)


def _playlist_response(path: Path, kind: str) -> Response:
    """A playlist read whole, once. A live playlist is replaced (renamed over) while the
    recording goes on: a file response would take its length from one version and its bytes
    from the next, which a browser rejects (``ERR_CONTENT_LENGTH_MISMATCH``). Playlists are a
    few kilobytes; nobody caches a live one."""
    try:
        body = path.read_bytes()
    except OSError:
        return PlainTextResponse("no such file\n", status_code=404)
    return Response(body, media_type=kind, headers={"Cache-Control": "no-cache"})


class LocalFiles:
    """The emulator's local storage back-end: ``<root>/<bucket>/<key>``."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def path_of(self, bucket: str, key: str) -> Path | None:
        """Where object ``key`` of ``bucket`` is; None unless it is a regular file inside the
        root (no ``..``, no symlink out of it)."""
        parts = [bucket, *key.split("/")]
        if any(p in ("", ".", "..") or "\\" in p for p in parts):
            return None
        try:
            resolved = self.root.joinpath(*parts).resolve(strict=True)
        except OSError:
            return None
        if not resolved.is_relative_to(self.root) or not resolved.is_file():
            return None
        return resolved


S3_TIMEOUT = 5.0  # seconds to connect and per read: a page must not hang on a dead endpoint
CHUNK = 256 * 1024


def s3_endpoint(profile: StorageProfile) -> str | None:
    """The profile's endpoint as a URL (a bare host name is HTTPS, as the service reads it)."""
    host = profile.endpoint
    if not host:
        return None
    return host if "://" in host else f"https://{host}"


class S3Files:
    """Objects read over S3 with each profile's own keys (boto3, one client per profile)."""

    def __init__(self) -> None:
        self._clients: dict[tuple[str | None, str], Any] = {}
        self._lock = threading.Lock()

    def _client(self, profile: StorageProfile) -> Any:
        endpoint = s3_endpoint(profile)
        access = profile.access_key.get_secret_value()
        with self._lock:
            client = self._clients.get((endpoint, access))
            if client is None:
                import boto3  # type: ignore[import-untyped]  # no stubs
                from botocore.config import Config  # type: ignore[import-untyped]

                client = boto3.session.Session().client(
                    "s3",
                    endpoint_url=endpoint,
                    region_name="us-east-1",  # S3-compatible servers; S3 redirects to its own
                    aws_access_key_id=access,
                    aws_secret_access_key=profile.secret_key.get_secret_value(),
                    config=Config(
                        connect_timeout=S3_TIMEOUT,
                        read_timeout=S3_TIMEOUT,
                        retries={"max_attempts": 2},
                    ),
                )
                self._clients[(endpoint, access)] = client
        return client

    def exists(self, profile: StorageProfile, key: str) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        try:
            self._client(profile).head_object(Bucket=profile.bucket, Key=key)
        except (ClientError, BotoCoreError):
            return False
        return True

    def response(
        self, profile: StorageProfile, key: str, content_type: str, byte_range: str | None
    ) -> Response:
        from botocore.exceptions import BotoCoreError, ClientError

        request: dict[str, Any] = {"Bucket": profile.bucket, "Key": key}
        if byte_range:
            request["Range"] = byte_range
        try:
            found = self._client(profile).get_object(**request)
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if code in ("NoSuchKey", "404", "NotFound"):
                return PlainTextResponse("no such file\n", status_code=404)
            if code == "InvalidRange":
                return PlainTextResponse("range not satisfiable\n", status_code=416)
            return PlainTextResponse(f"storage refused: {code}\n", status_code=502)
        except BotoCoreError as exc:  # its messages name the endpoint, never a key
            return PlainTextResponse(f"storage unavailable: {exc}\n", status_code=502)
        headers = {"accept-ranges": "bytes", "content-length": str(found["ContentLength"])}
        if found.get("ContentRange"):
            headers["content-range"] = found["ContentRange"]
        body = found["Body"]
        return StreamingResponse(
            body.iter_chunks(CHUNK),
            status_code=206 if found.get("ContentRange") else 200,
            headers=headers,
            media_type=content_type,
        )


def media_type(name: str) -> str:
    return MEDIA_TYPES.get(Path(name).suffix.lower(), "application/octet-stream")
