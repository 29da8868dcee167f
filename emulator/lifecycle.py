"""How a recording ends, and its uploads' events.

``stop`` (or the idle rule, a failing recorder, shutdown) moves a task to EXITING: status 6
while the recorder finishes, 7 while the last files upload, then 8 (20 after an error).
Events 41 (recorder leave), 33 (progress 10000), 31 or 32 (uploaded / backuped), 11 (session
exit). A task that never recorded exits at once. The uploader of each task (made here) reports
events 4, 1 and 2. Finishing runs on worker threads, which :class:`Lifecycle` keeps so that
shutdown and reset can wait for them.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable

from contract.models import StorageConfig
from emulator.events import LEAVE_CALLED, LEAVE_INIT_FAILURE, LEAVE_NO_USERS, LEAVE_SIGINT
from emulator.faults import FaultInjector
from emulator.listing import file_entries
from emulator.media import OutputFile
from emulator.registry import Phase, Registry, Task, unique_files
from emulator.storage import StorageBackend, StorageError
from emulator.uploads import TaskUploader

log = logging.getLogger(__name__)

_LEAVE_CODES = {
    "stop": LEAVE_CALLED,
    "idle": LEAVE_NO_USERS,
    "shutdown": LEAVE_SIGINT,
    "error": LEAVE_INIT_FAILURE,
}


def safe_reason(exc: Exception) -> str:
    """What went wrong, for events and the dev API: the kind of error, never a local path."""
    if isinstance(exc, OSError) and exc.strerror:
        return f"{type(exc).__name__}: {exc.strerror}"
    return type(exc).__name__


class Lifecycle:
    """Exits of tasks, their uploaders, and the worker threads that finish them."""

    def __init__(
        self, registry: Registry, *, storage: StorageBackend, faults: FaultInjector
    ) -> None:
        self._registry = registry
        self._storage = storage
        self._faults = faults
        self._workers: list[threading.Thread] = []

    # -- worker threads ------------------------------------------------------------------

    def run_in_thread(self, target: Callable[[], None], name: str) -> None:
        """Run ``target`` on a worker thread that shutdown and reset wait for."""
        thread = threading.Thread(target=target, name=name, daemon=True)
        with self._registry.lock:
            self._workers = [w for w in self._workers if w.is_alive()]
            self._workers.append(thread)
        thread.start()

    def finish_in_thread(self, task: Task, name: str) -> None:
        self.run_in_thread(lambda: self.finish(task), name)

    def finish_everything(self, timeout: float) -> None:
        """Exit every live task (as at shutdown) and wait for every worker thread."""
        registry = self._registry
        with registry.lock:
            live = [t for t in registry.tasks.values() if t.phase is Phase.LIVE]
            for task in live:
                self.begin_exit(task, "shutdown")
        for task in live:
            self.finish(task)
        with registry.lock:
            workers = list(self._workers)
        for worker in workers:
            worker.join(timeout)

    # -- uploads -------------------------------------------------------------------------

    def new_uploader(self, task: Task) -> TaskUploader:
        def storage() -> StorageConfig:
            with self._registry.lock:
                return task.storage  # update may refresh it (docs/service/api-contract.md#update)

        def listener(what: str, output: OutputFile, error: StorageError | None) -> None:
            self._on_upload(task, what, output, error)

        return TaskUploader(
            sid=task.sid,
            storage=storage,
            backend=self._storage,
            faults=self._faults,
            backup_dir=self._registry.config.backup_root,
            listener=listener,
        )

    def _on_upload(
        self, task: Task, what: str, output: OutputFile, error: StorageError | None
    ) -> None:
        """Events for one handled file: 4 at the first M3U8 (docs/service/files.md#slicing), 1 and 2
        at the first failure of each kind (uploader error 32 storage configuration / 47 upload
        failed, warning 32 re-uploading to the backup cloud)."""
        registry = self._registry
        with registry.lock:
            if output.kind == "m3u8" and output.name not in task.playlists_announced:
                # Once per playlist: a failover's bak<n>_ playlist is announced too.
                task.playlists_announced.add(output.name)
                registry.event(task, 4, fileList=output.name)
            if what != "failed" or error is None:
                return
            code = 32 if error.config_error else 47
            if code not in task.errors_reported:
                task.errors_reported.add(code)
                registry.event(
                    task, 1, module=1, errorLevel=3, errorCode=code, stat=0, errorMsg=str(error)
                )
                registry.event(task, 2, module=1, warnCode=32)

    # -- exit ----------------------------------------------------------------------------

    def fail(self, task: Task, reason: str, code: int = 20) -> None:
        """The recorder died (or was dropped: ``code`` 109 when its RTC token expired): the task
        exits abnormally (status 20) with what it has. Event 1 carries ``code`` (recorder errors
        use the REST code table, docs/service/ncs.md#event-types)."""
        with self._registry.lock:
            task.error = reason
            self._registry.event(
                task, 1, module=0, errorLevel=5, errorCode=code, stat=0, errorMsg=reason
            )
            if task.phase is Phase.LIVE:
                self.begin_exit(task, "error")
                self.finish_in_thread(task, name=f"fail-{task.sid[:8]}")

    @staticmethod
    def begin_exit(task: Task, reason: str) -> None:
        """LIVE -> EXITING (status 6). Caller holds the lock."""
        task.phase = Phase.EXITING
        task.exit_status = 6
        task.exit_reason = reason
        task.stopped_wall = time.time()
        task.stop_event.set()

    def exit_empty(self, task: Task) -> None:
        """EXITING -> EXITED for a task that never recorded. Caller holds the lock."""
        self._leave_event(task)
        if task.uploader is not None:
            task.uploader.close(timeout=0)  # nothing queued; never join under the lock
        self._registry.mark_exited(task)
        # a recorder that failed (e.g. could not join: a bad token) exits abnormally
        task.exit_status = 20 if task.error else 8
        task.exit_reason = "empty" if task.exit_reason == "stop" else task.exit_reason
        self._registry.event(task, 11, exitStatus=1 if task.error else 0)
        task.done.set()

    def _leave_event(self, task: Task) -> None:
        """Event 41: the recorder left the channel, and why. Caller holds the lock."""
        self._registry.event(task, 41, leaveCode=_LEAVE_CODES.get(task.exit_reason or "", 0))

    def finish(self, task: Task) -> None:
        """Finish the recorder (status 6), upload its last files (7), then EXITED (8)."""
        registry = self._registry
        if task.driver is None:
            with registry.lock:
                self.exit_empty(task)
            return
        try:
            task.driver.join()
            uploader = task.uploader
            assert uploader is not None
            self._finish_recorder(task, uploader)
            with registry.lock:
                self._leave_event(task)
            uploader.close()
            self._final_upload_events(task)
            if task.error is None:
                shutil.rmtree(registry.staging_dir(task), ignore_errors=True)
        finally:
            with registry.lock:
                registry.event(task, 11, exitStatus=1 if task.error else 0)
                registry.mark_exited(task)
                task.exit_status = 20 if task.error else 8
            task.done.set()

    def _finish_recorder(self, task: Task, uploader: TaskUploader) -> None:
        """Finish the last recorder and hand its files to the uploader (status 7)."""
        recorder = task.recorder
        if recorder is None:
            return
        try:
            produced = recorder.finish()
        except Exception as exc:
            log.exception("recording %s: finishing the recorder failed", task.sid)
            task.error = task.error or f"finishing failed: {safe_reason(exc)}"
            produced = []
        for output in produced:  # anything on_file did not see in its final form
            uploader.submit(output)
        with self._registry.lock:
            task.exit_status = 7
            # earlier segments' files first; a recorder finished by a failover that
            # was never replaced answers its files again
            task.produced = unique_files([*task.produced, *produced])

    def _final_upload_events(self, task: Task) -> None:
        """Event 33 (progress 10000: all handled) then 31 uploaded or 32 backuped."""
        if task.recorder is None or task.uploader is None:
            return
        registry = self._registry
        with registry.lock:
            registry.event(task, 33, progress=task.uploader.progress())
            files = file_entries(task, final=True)
            registry.event(task, 32 if task.backuped else 31, status=0, fileList=files)
