"""A job's files in its storage, for the merge (:mod:`worker.merge`): list them, fetch them, put
the merged file beside them, with the storage profile's own credentials.

Two kinds of place, chosen by the profile (:class:`config.settings.StorageProfile`):

* ``local_dir`` set: the directory holding ``<bucket>/<key>``, the emulator's local back-end
  (``cloudrec emulator --storage-dir``);
* otherwise the bucket over S3 with boto3: the profile's ``endpoint`` (an S3-compatible server;
  without a scheme, HTTPS), or Amazon S3 in the region of the profile's region code.

boto3's and the OS's errors are translated here into :class:`MergeError`, whose message names
the key and the cause, never a credential.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from config.settings import StorageProfile
from contract.s3 import s3_region_name
from worker.errors import MergeError

S3_TIMEOUT = 30.0  # connect and read timeout of one S3 request, seconds


class JobStorage(Protocol):
    """The bucket a job's recording was uploaded to."""

    def names(self, prefix: str) -> list[str]:
        """The file names directly under ``prefix`` (a key prefix ending in ``/``, or "")."""
        ...

    def fetch(self, key: str, dest: Path) -> None:
        """Copy object ``key`` to the local file ``dest``."""
        ...

    def put(self, source: Path, key: str) -> None:
        """Store the local file ``source`` as object ``key`` (replacing it)."""
        ...


def storage_for(profile: StorageProfile) -> JobStorage:
    """The place a profile's files are: its local directory, else its bucket over S3."""
    if profile.local_dir:
        return LocalStorage(Path(profile.local_dir) / profile.bucket)
    return S3Storage(profile)


class LocalStorage:
    """``<root>/<key>``: the emulator's local back-end (``root``: ``<storage-dir>/<bucket>``)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if any(p in ("", ".", "..") or "\\" in p for p in parts):
            raise MergeError(f"refusing the unsafe key {key!r}")
        return self.root.joinpath(*parts)

    def names(self, prefix: str) -> list[str]:
        folder = self._path(prefix.rstrip("/")) if prefix.strip("/") else self.root
        try:
            return sorted(p.name for p in folder.iterdir() if p.is_file())
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise MergeError(f"listing {prefix!r} failed: {exc.strerror}") from exc

    def fetch(self, key: str, dest: Path) -> None:
        try:
            shutil.copyfile(self._path(key), dest)
        except OSError as exc:
            raise MergeError(f"reading {key!r} failed: {exc.strerror}") from exc

    def put(self, source: Path, key: str) -> None:
        target = self._path(key)
        try:
            fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".merge-")
            os.close(fd)
            try:
                shutil.copyfile(source, tmp)
                os.replace(tmp, target)  # a reader never sees half a file
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as exc:
            raise MergeError(f"writing {key!r} failed: {exc.strerror}") from exc


class S3Storage:
    """The profile's bucket over S3 (boto3), with the profile's keys."""

    def __init__(self, profile: StorageProfile) -> None:
        self.bucket = profile.bucket
        self._profile = profile
        self._client_cache: Any = None

    def _client(self) -> Any:
        if self._client_cache is None:
            self._client_cache = _s3_client(self._profile)
        return self._client_cache

    def names(self, prefix: str) -> list[str]:
        found: list[str] = []
        with _translated(f"listing {prefix!r} in bucket {self.bucket!r}"):
            pages = self._client().get_paginator("list_objects_v2")
            for page in pages.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                found += [item["Key"][len(prefix) :] for item in page.get("Contents", [])]
        return sorted(found)

    def fetch(self, key: str, dest: Path) -> None:
        with _translated(f"reading {key!r} from bucket {self.bucket!r}"):
            self._client().download_file(self.bucket, key, str(dest))

    def put(self, source: Path, key: str) -> None:
        with _translated(f"writing {key!r} to bucket {self.bucket!r}"):
            self._client().upload_file(
                str(source), self.bucket, key, ExtraArgs={"ContentType": "video/mp4"}
            )


@contextmanager
def _translated(doing: str) -> Iterator[None]:
    """boto3's and the OS's errors as one :class:`MergeError` naming what was being done."""
    from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

    try:
        yield
    except ClientError as exc:  # the storage answered: no such key, denied, no bucket...
        code = exc.response.get("Error", {}).get("Code", "error")
        raise MergeError(f"{doing} failed: {code}") from exc
    except (BotoCoreError, OSError) as exc:  # unreachable endpoint, timeouts, local I/O
        raise MergeError(f"{doing} failed: {type(exc).__name__}") from exc


def _s3_client(profile: StorageProfile) -> Any:
    import boto3  # type: ignore[import-untyped]  # imported by merges only
    from botocore.config import Config  # type: ignore[import-untyped]

    endpoint = profile.endpoint
    if endpoint and "://" not in endpoint:
        endpoint = f"https://{endpoint}"  # vendor 11 names a host (as the emulator reads it)
    config = Config(
        connect_timeout=S3_TIMEOUT,
        read_timeout=S3_TIMEOUT,
        retries={"max_attempts": 3, "mode": "standard"},
        s3={"addressing_style": "path" if endpoint else "auto"},
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint,
        region_name=s3_region_name(profile.vendor, profile.region),
        aws_access_key_id=profile.access_key.get_secret_value(),
        aws_secret_access_key=profile.secret_key.get_secret_value(),
        config=config,
    )
