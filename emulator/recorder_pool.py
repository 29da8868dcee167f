"""Recorders in worker processes (``--recorder-processes N``): many live recordings on a
shared machine without one interpreter lock between them.

In one process every recording's compositing, mixing and muxing takes the interpreter lock in
turn; when the machine is busy with other work, a thread preempted while holding it stalls
every recording at once (measured by ``benchmarks/emulator_load.py``: seconds of lag at 10
recordings with a load average of 10-20 on 2 cores). With a pool, each of N worker processes
hosts its share of the recordings (the least busy one takes a new recording) and runs their
``CompositeRecorder`` s; a driver thread's ``advance_to`` is a call to its worker, which
answers with the files completed meanwhile (handed to ``on_file`` in this process, as an
in-process recorder would).
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import threading
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from emulator.media import LayoutSpec, MediaConfig, OutputFile, UserSnapshot
from emulator.media.access import MediaDirs


class RecorderProcessError(RuntimeError):
    """The worker process failed a call (its message says what), or died."""


class _Worker:
    """One child process and the calls to it (one at a time: the pipe is shared)."""

    def __init__(self, context: Any) -> None:
        self._conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child,), daemon=True)
        self.process.start()
        child.close()
        self._lock = threading.Lock()
        self.recordings = 0

    def call(self, *request: Any) -> Any:
        with self._lock:
            try:
                self._conn.send(request)
                ok, answer = self._conn.recv()
            except (EOFError, OSError) as exc:
                raise RecorderProcessError(f"recorder process died: {exc}") from None
        if not ok:
            raise RecorderProcessError(answer)
        return answer

    def close(self) -> None:
        with self._lock:
            with contextlib.suppress(OSError):
                self._conn.send(("exit", 0))
            self._conn.close()
        self.process.join(10)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class RemoteRecorder:
    """A ``CompositeRecorder`` in a worker process (the driver's ``Recorder``)."""

    def __init__(
        self, pool: RecorderPool, worker: _Worker, key: int, on_file: Callable[[OutputFile], None]
    ) -> None:
        self._pool = pool
        self._worker = worker
        self._key = key
        self._on_file = on_file
        self._finished = False

    def advance_to(self, t: float, users: Sequence[UserSnapshot]) -> None:
        self._emit(self._worker.call("advance", self._key, t, list(users)))

    def set_layout(self, layout: LayoutSpec) -> None:
        self._worker.call("layout", self._key, layout)

    def finish(self) -> list[OutputFile]:
        if self._finished:
            return []
        self._finished = True
        try:
            emitted, files = self._worker.call("finish", self._key)
        finally:
            self._pool.released(self._worker)
        self._emit(emitted)
        return list(files)

    def _emit(self, files: list[OutputFile]) -> None:
        for output in files:
            self._on_file(output)


class RecorderPool:
    """``processes`` worker processes (started on first use), each hosting recorders."""

    def __init__(self, processes: int) -> None:
        """Start the processes now: a recording's clock starts before its recorder is made,
        so a process started (and importing PyAV) then would put it seconds behind."""
        self._size = max(1, processes)
        self._workers: list[_Worker] = []
        self._keys = itertools.count()
        self._lock = threading.Lock()
        with self._lock:
            self._top_up()

    def recorder(
        self,
        config: MediaConfig,
        *,
        sid: str,
        cname: str,
        out_dir: Path,
        start_epoch_ms: int,
        on_file: Callable[[OutputFile], None],
        name_prefix: str = "",
        media: MediaDirs | None = None,
    ) -> RemoteRecorder:
        """A recorder factory (``emulator.registry.RecorderFactory``)."""
        worker, key = self._assign()
        options = {
            "sid": sid,
            "cname": cname,
            "out_dir": out_dir,
            "start_epoch_ms": start_epoch_ms,
            "name_prefix": name_prefix,
            "media": media or MediaDirs(),
        }
        try:
            worker.call("open", key, config, options)
        except Exception:
            self.released(worker)
            raise
        return RemoteRecorder(self, worker, key, on_file)

    def released(self, worker: _Worker) -> None:
        with self._lock:
            worker.recordings -= 1

    def close(self) -> None:
        with self._lock:
            workers, self._workers = self._workers, []
        for worker in workers:
            worker.close()

    def _assign(self) -> tuple[_Worker, int]:
        with self._lock:
            self._top_up()
            worker = min(self._workers, key=lambda w: w.recordings)
            worker.recordings += 1
            return worker, next(self._keys)

    def _top_up(self) -> None:
        """Replace dead workers, start missing ones. Caller holds the lock."""
        self._workers = [w for w in self._workers if w.process.is_alive()]
        while len(self._workers) < self._size:
            # spawn: a fresh interpreter, not a fork of this threaded one
            self._workers.append(_Worker(multiprocessing.get_context("spawn")))


# -- the worker process ---------------------------------------------------------------------


def _serve(conn: Connection) -> None:
    """Run recorders until told to exit: every request is answered (ok, result)."""
    from emulator.media import CompositeRecorder

    recorders: dict[int, tuple[CompositeRecorder, list[OutputFile]]] = {}
    while True:
        try:
            op, key, *args = conn.recv()
        except (EOFError, OSError):
            op, key, args = "exit", 0, []
        if op == "exit":
            for recorder, _ in recorders.values():
                recorder.finish()
            return
        try:
            result = _handle(recorders, op, key, args, CompositeRecorder)
        except Exception as exc:
            recorders.pop(key, None)
            conn.send((False, f"{type(exc).__name__}: {exc}"))
            continue
        conn.send((True, result))


def _handle(
    recorders: dict[int, tuple[Any, list[OutputFile]]],
    op: str,
    key: int,
    args: list[Any],
    factory: Any,
) -> Any:
    if op == "open":
        config, options = args
        emitted: list[OutputFile] = []
        recorder = factory(config, on_file=emitted.append, encoder_threads=False, **options)
        recorders[key] = (recorder, emitted)
        return None
    recorder, emitted = recorders[key]
    if op == "advance":
        recorder.advance_to(*args)
    elif op == "layout":
        recorder.set_layout(*args)
    elif op == "finish":
        files = recorder.finish()
        del recorders[key]
        return list(emitted), files
    files, emitted[:] = list(emitted), []
    return files
