"""One recording's uploader: its files go to the customer's storage in order, on a thread of
their own, so a slow or failing bucket never stalls the compositor (docs/service/files.md#failover,
docs/service/files.md#slicing).

* Every completed TS slice and MP4, and every rewrite of the M3U8, is queued by the recorder's
  ``on_file`` callback. Only the newest M3U8 version still queued is uploaded.
* A failed upload keeps the file in the backup area, ``<backup_root>/<sid>/``, with the real
  service's names (docs/service/files.md#failover): TS and MP4 files unchanged, each M3U8 version as
  ``<sid>_<cname>_<tick>_<index>.m3u8`` (tick: epoch ms of the backup, index: 0 for the first
  backed-up version). Nothing is lost, and the stop answers ``uploadingStatus: "backuped"``.
* :meth:`TaskUploader.transfer_backups` pushes the backed-up files to the customer's storage
  later ("later transferred"), under those same names, and removes them from the backup area.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contract.models import StorageConfig
from emulator.faults import FaultInjector
from emulator.media import OutputFile
from emulator.storage import StorageBackend, StorageError

log = logging.getLogger(__name__)


@dataclass
class Upload:
    """Where one output file is (its latest version)."""

    file: OutputFile
    key: str  # object key in the customer's bucket
    location: str  # where the latest version is now: a storage path/URL or the backup path
    uploaded: bool  # False: the latest version is only in the backup area
    version: tuple[int, int]  # (size, mtime_ns) of that version
    backups: list[Backup]

    def to_json(self) -> dict[str, Any]:
        return {
            "fileName": self.file.name,
            "key": self.key,
            "kind": self.file.kind,
            "uploaded": self.uploaded,
            "location": self.location,
            "backups": [b.to_json() for b in self.backups],
        }


@dataclass
class Backup:
    """One version of a file kept in the backup area after its upload failed."""

    name: str  # the name it has in the backup area and, once transferred, in the bucket
    path: Path
    key: str  # the object key it is transferred to
    transferred_to: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "fileName": self.name,
            "key": self.key,
            "path": str(self.path),
            "transferred": self.transferred_to is not None,
            "location": self.transferred_to or str(self.path),
        }


# What the uploader tells the service: ("uploaded", file) / ("failed", file, StorageError).
UploadListener = Callable[[str, OutputFile, StorageError | None], None]


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def backup_playlist_name(name: str, tick_ms: int, index: int) -> str:
    """``<stem>_<tick>_<index>.m3u8`` for a backed-up M3U8 version
    (docs/service/files.md#failover)."""
    stem = name.removesuffix(".m3u8")
    return f"{stem}_{tick_ms}_{index}.m3u8"


class TaskUploader:
    """Uploads one recording's files in submission order on a daemon thread."""

    def __init__(
        self,
        *,
        sid: str,
        storage: Callable[[], StorageConfig],
        backend: StorageBackend,
        faults: FaultInjector,
        backup_dir: Path,
        listener: UploadListener,
    ) -> None:
        self.sid = sid
        self._storage = storage
        self._backend = backend
        self._faults = faults
        self._backup_dir = backup_dir
        self._listener = listener
        self._cond = threading.Condition()
        self._queue: deque[tuple[OutputFile, int]] = deque()
        self._latest_playlist: dict[str, int] = {}  # name -> newest queued version number
        self._submitted = 0
        self._busy = False
        self._closed = False
        self._uploads: dict[str, Upload] = {}
        self._ever_backuped = False
        self._bytes_recorded: dict[str, int] = {}
        self._bytes_done: dict[str, int] = {}
        # The thread starts with the first file: a recording in a channel nobody publishes in
        # never produces one, and a deployment holds tens of thousands of those at once
        # (benchmarks/scale.py); a thread each would exhaust the machine's pids.
        self._thread: threading.Thread | None = None

    # -- producer side -------------------------------------------------------------------

    def submit(self, output: OutputFile) -> None:
        """Queue ``output`` (called on the recorder's thread; never blocks on storage)."""
        size = _size(output.path)
        with self._cond:
            self._submitted += 1
            if output.kind == "m3u8":
                self._latest_playlist[output.name] = self._submitted
            else:
                self._bytes_recorded[output.name] = size
            self._queue.append((output, self._submitted))
            if self._thread is None:  # after close too: the thread handles what is queued
                self._thread = threading.Thread(
                    target=self._run, name=f"upload-{self.sid[:8]}", daemon=True
                )
                self._thread.start()
            self._cond.notify_all()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far is handled; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._queue or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = None) -> None:
        """Finish the queue, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None:
            thread.join(timeout)

    # -- state -----------------------------------------------------------------------------

    @property
    def uploads(self) -> list[Upload]:
        with self._cond:
            return list(self._uploads.values())

    @property
    def backuped(self) -> bool:
        """Whether any file ever went to the backup area (docs/service/api-contract.md#stop:
        ``backuped``)."""
        with self._cond:
            return self._ever_backuped

    @property
    def pending_backups(self) -> int:
        with self._cond:
            return sum(
                1 for u in self._uploads.values() for b in u.backups if b.transferred_to is None
            )

    def progress(self) -> int:
        """Event 33's ``progress``: handled / recorded bytes of the TS and MP4 files, x 10000."""
        with self._cond:
            recorded = sum(self._bytes_recorded.values())
            done = sum(self._bytes_done.values())
        return 10000 if recorded == 0 else min(10000, done * 10000 // recorded)

    # -- the thread --------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                output, number = self._queue.popleft()
                stale = output.kind == "m3u8" and self._latest_playlist[output.name] != number
                self._busy = not stale
            if stale:
                continue  # a newer version of this playlist is queued
            try:
                self._handle(output)
            except Exception:  # keep uploading the rest whatever happens to one file
                log.exception("recording %s: upload of %s failed", self.sid, output.name)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()

    def _handle(self, output: OutputFile) -> None:
        try:
            stat = output.path.stat()
        except OSError:
            log.warning("recording %s: output %s vanished before upload", self.sid, output.name)
            return
        version = (stat.st_size, stat.st_mtime_ns)
        with self._cond:
            previous = self._uploads.get(output.name)
        if previous is not None and previous.version == version:
            return  # this very version is already in storage or backup
        storage = self._storage()
        key = storage.object_key(output.name)
        try:
            location = self._put(storage, key, output.path)
        except StorageError as exc:
            log.warning("recording %s: %s; keeping %s in backup", self.sid, exc, output.name)
            self._keep_in_backup(output, key, version, previous)
            self._listener("failed", output, exc)
            return
        with self._cond:
            backups = previous.backups if previous is not None else []
            self._uploads[output.name] = Upload(output, key, location, True, version, backups)
            self._bytes_done[output.name] = stat.st_size
        self._listener("uploaded", output, None)

    def _put(self, storage: StorageConfig, key: str, source: Path) -> str:
        latency = self._faults.upload_latency
        if latency:
            time.sleep(latency)
        if self._faults.upload_fails():
            raise StorageError(f"upload of {key!r} failed: injected upload failure")
        return self._backend.put(storage, key, source)

    def _keep_in_backup(
        self, output: OutputFile, key: str, version: tuple[int, int], previous: Upload | None
    ) -> None:
        backups = previous.backups if previous is not None else []
        name = output.name
        if output.kind == "m3u8":
            name = backup_playlist_name(name, int(time.time() * 1000), len(backups))
        dest = self._backup_dir / self.sid / name
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(output.path, dest)
        except OSError:
            log.exception("recording %s: backup of %s failed", self.sid, output.name)
        backup_key = key.rsplit("/", 1)[0] + "/" + name if "/" in key else name
        with self._cond:
            backups = [*backups, Backup(name, dest, backup_key)]
            self._uploads[output.name] = Upload(output, key, str(dest), False, version, backups)
            self._ever_backuped = True
            self._bytes_done[output.name] = version[0]

    # -- later transfer (docs/service/files.md#failover) -------------------------------------------

    def transfer_backups(self) -> int:
        """Push every backed-up file to the customer's storage (current storageConfig); return
        how many went. A file that fails again stays in the backup area for the next pass."""
        with self._cond:
            pending = [
                (u, b) for u in self._uploads.values() for b in u.backups if not b.transferred_to
            ]
        moved = 0
        storage = self._storage()
        for upload, backup in pending:
            try:
                location = self._put(storage, backup.key, backup.path)
            except StorageError as exc:
                log.info("recording %s: transfer of %s failed: %s", self.sid, backup.name, exc)
                continue
            backup.path.unlink(missing_ok=True)
            with self._cond:
                backup.transferred_to = location
                if upload.file.kind != "m3u8" and not upload.uploaded:
                    upload.uploaded, upload.location = True, location
            moved += 1
        return moved
