"""Storage back-ends: where the recorder's files are uploaded
(docs/service/api-contract.md#storageconfig, docs/service/files.md).

A back-end puts one local file at ``<bucket>/<key>`` for a given ``storageConfig``; the key is
the ``fileNamePrefix`` joined with ``/`` plus the file name. The M3U8 is put again each time it
is rewritten, overwriting the previous version, as the real service does
(docs/service/files.md#slicing).

* :class:`LocalDirectoryBackend` writes ``<root>/<bucket>/<key>`` whatever the vendor: the
  default, so a newcomer's recordings land on their disk.
* :class:`S3Backend` uploads with boto3: vendor 1 (Amazon S3, the region code mapped to its
  AWS region name) to a configured endpoint, vendor 11 (S3-compatible) to
  ``extensionParams.endpoint``.
* :class:`VendorRouter` picks one of them per ``storageConfig``.

Every failure is a :class:`StorageError` (boto3's and the OS's errors are translated here);
its message never carries a credential.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Protocol

from contract.models import STS_VENDORS, VENDOR_S3_COMPATIBLE, StorageConfig
from contract.s3 import S3_REGIONS as S3_REGIONS
from contract.s3 import VENDOR_S3 as VENDOR_S3

_SSE = {"kms": "aws:kms", "aes256": "AES256"}  # extensionParams.sse -> S3 ServerSideEncryption


class StorageError(Exception):
    """An upload failed; the caller keeps the file in its backup area.

    ``config_error``: the storage answered and refused (credentials, bucket, permissions),
    as opposed to a transport failure (docs/service/ncs.md#event-types: uploader error 32 vs 47).
    """

    def __init__(self, message: str, *, config_error: bool = False) -> None:
        super().__init__(message)
        self.config_error = config_error


class StorageBackend(Protocol):
    """Uploads finished files to the customer's storage."""

    def put(self, storage: StorageConfig, key: str, source: Path) -> str:
        """Upload ``source`` as object ``key`` of ``storage.bucket``; return where it went.

        Raises :class:`StorageError` when the upload fails.
        """
        ...


class LocalDirectoryBackend:
    """Writes ``<root>/<bucket>/<key>``, whatever the vendor. Writes are atomic (temp file +
    rename), so a reader never sees a half-written playlist."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def path_for(self, bucket: str, key: str) -> Path:
        parts = [bucket, *key.split("/")]
        if any(p in ("", ".", "..") or "\\" in p for p in parts) or "/" in bucket:
            raise StorageError(f"refusing unsafe bucket/key: {bucket!r}/{key!r}")
        return self.root.joinpath(*parts)

    def put(self, storage: StorageConfig, key: str, source: Path) -> str:
        dest = self.path_for(storage.bucket, key)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=".upload-")
            os.close(fd)
            try:
                shutil.copyfile(source, tmp)
                os.replace(tmp, dest)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as exc:
            raise StorageError(f"upload of {key!r} failed: {exc}") from exc
        return str(dest)


def s3_endpoint_for(storage: StorageConfig, vendor1_endpoint: str | None) -> str | None:
    """The endpoint URL boto3 talks to for ``storage``; None means Amazon S3 itself.

    Vendor 11 names a host (docs/service/api-contract.md#storageconfig: "the host name"); without a
    scheme it is HTTPS. A scheme given explicitly (``http://127.0.0.1:9000``) is kept, for loopback
    servers.
    """
    if storage.vendor == VENDOR_S3_COMPATIBLE:
        assert storage.extensionParams is not None and storage.extensionParams.endpoint
        host = storage.extensionParams.endpoint
        return host if "://" in host else f"https://{host}"
    return vendor1_endpoint


def s3_region_for(storage: StorageConfig) -> str:
    """The AWS region name of ``storage.region`` (docs/service/api-contract.md#storageconfig table);
    S3-compatible: us-east-1."""
    if storage.vendor == VENDOR_S3:
        return S3_REGIONS.get(storage.region, "us-east-1")
    return "us-east-1"


class S3Backend:
    """Uploads with boto3 to Amazon S3 or an S3-protocol server.

    One boto3 client per (endpoint, region, credentials), created on first use and kept:
    clients are thread-safe and costly to build. Requests are bounded by ``timeout`` and
    retried once by botocore, so a dead endpoint fails an upload in seconds, not minutes.
    """

    def __init__(self, vendor1_endpoint: str | None = None, timeout: float = 5.0) -> None:
        self.vendor1_endpoint = vendor1_endpoint
        self.timeout = timeout
        self._clients: dict[tuple[str | None, str, str, str, str | None], Any] = {}
        self._lock = threading.Lock()

    def put(self, storage: StorageConfig, key: str, source: Path) -> str:
        endpoint = s3_endpoint_for(storage, self.vendor1_endpoint)
        region = s3_region_for(storage)
        extra: dict[str, str] = {}
        ext = storage.extensionParams
        if ext is not None and ext.sse is not None:
            extra["ServerSideEncryption"] = _SSE[ext.sse]
        if ext is not None and ext.tag is not None:
            extra["Tagging"] = ext.tag
        from botocore.exceptions import (  # type: ignore[import-untyped]
            BotoCoreError,
            ClientError,
        )

        try:
            client = self._client(endpoint, region, storage)
            with source.open("rb") as body:
                client.put_object(Bucket=storage.bucket, Key=key, Body=body, **extra)
        except ClientError as exc:  # the service answered: wrong key, no bucket, denied...
            code = exc.response.get("Error", {}).get("Code", "error")
            raise StorageError(
                f"upload of {key!r} to bucket {storage.bucket!r} failed: {code}",
                config_error=True,
            ) from exc
        except (BotoCoreError, OSError) as exc:  # unreachable endpoint, timeouts, local I/O
            raise StorageError(
                f"upload of {key!r} to bucket {storage.bucket!r} failed: {type(exc).__name__}"
            ) from exc
        base = endpoint or f"https://s3.{region}.amazonaws.com"
        return f"{base.rstrip('/')}/{storage.bucket}/{key}"

    def _client(self, endpoint: str | None, region: str, storage: StorageConfig) -> Any:
        # docs/service/api-contract.md#storageconfig: an STS token is used with vendors 1, 2 and 3
        # only; elsewhere it is ignored.
        sts = storage.stsToken if storage.vendor in STS_VENDORS else None
        token = sts.get_secret_value() if sts else None
        secret = storage.secretKey.get_secret_value()
        cache_key = (endpoint, region, storage.accessKey, secret, token)
        with self._lock:
            client = self._clients.get(cache_key)
            if client is None:
                client = self._clients[cache_key] = self._new_client(
                    endpoint, region, storage.accessKey, secret, token
                )
            return client

    def _new_client(
        self, endpoint: str | None, region: str, access_key: str, secret: str, token: str | None
    ) -> Any:
        import boto3  # type: ignore[import-untyped]  # imported on first S3 upload only
        from botocore.config import Config  # type: ignore[import-untyped]

        config = Config(
            connect_timeout=self.timeout,
            read_timeout=self.timeout,
            retries={"max_attempts": 2, "mode": "standard"},
            # Path-style URLs work with every S3-protocol server and with loopback IPs.
            s3={"addressing_style": "path" if endpoint else "auto"},
            # Plain checksums: many S3-compatible servers reject the newer default ones.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        return boto3.session.Session().client(
            "s3",
            endpoint_url=endpoint,
            region_name=region,
            aws_access_key_id=access_key,
            aws_secret_access_key=secret,
            aws_session_token=token,
            config=config,
        )


class VendorRouter:
    """Chooses the back-end per ``storageConfig``: vendor 11 always, and vendor 1 when an S3
    endpoint is configured, go to :class:`S3Backend`; everything else to the local one."""

    def __init__(self, local: StorageBackend, s3: S3Backend) -> None:
        self.local = local
        self.s3 = s3

    def backend_for(self, storage: StorageConfig) -> StorageBackend:
        if storage.vendor == VENDOR_S3_COMPATIBLE:
            return self.s3
        if storage.vendor == VENDOR_S3 and self.s3.vendor1_endpoint is not None:
            return self.s3
        return self.local

    def put(self, storage: StorageConfig, key: str, source: Path) -> str:
        return self.backend_for(storage).put(storage, key, source)
