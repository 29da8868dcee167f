"""The Celery result backend the public tasks answer through, stored compactly.

Callers of the intake (``send_task("recording.submit", ...)``) read a task's answer from
Celery's result backend: the job id, a status JSON. Celery keeps each answer
``result_expires`` (a day) under ``celery-task-meta-<task id>``, so at scale every job carries
one: 360 bytes of Redis per job in ``benchmarks/deployment.py``, a quarter of the total.

A success stores only what a reader needs: ``status``, ``result`` and ``task_id`` (Celery's
own :class:`celery.result.AsyncResult` and the result consumer of its Redis backend read
these; ``traceback``, ``children`` and ``date_done`` are read with ``.get()``, so a missing one
reads as None). ``date_done``, an empty ``children`` and a null ``traceback`` are left out.
Failures, retries and anything with children are stored as Celery stores them. A success is
written without Celery's read of the stored answer first (see ``_store_result``).

Every answer is JSON without the blanks kombu's serializer puts after ``,`` and ``:`` (any
JSON reader reads it the same): the 96-byte answer of a submit becomes 90, and Redis's
allocator then keeps it in its 96-byte class instead of its 112-byte one.
"""

from __future__ import annotations

import functools
from typing import Any

from celery import Celery, states
from celery.app import backends
from celery.exceptions import BackendStoreError
from kombu.utils import json as kombu_json
from kombu.utils.encoding import bytes_to_str

# What a success leaves out (each reads as None through .get()).
_LEFT_OUT_ON_SUCCESS = ("traceback", "children", "date_done")


class CompactResultMeta:
    """A mixin over a Celery backend class: successes without the fields no reader needs, and
    JSON without blanks."""

    def _get_result_meta(
        self,
        result: Any,
        state: str,
        traceback: Any,
        request: Any,
        format_date: bool = True,
        encode: bool = False,
    ) -> dict[str, Any]:
        meta: dict[str, Any] = super()._get_result_meta(  # type: ignore[misc]
            result, state, traceback, request, format_date=format_date, encode=encode
        )
        if state == states.SUCCESS and not meta.get("children") and meta.get("traceback") is None:
            for name in _LEFT_OUT_ON_SUCCESS:
                meta.pop(name, None)
        return meta

    def _store_result(
        self,
        task_id: str,
        result: Any,
        state: str,
        traceback: Any = None,
        request: Any = None,
        **kwargs: Any,
    ) -> Any:
        """A success is written without reading the stored answer first. Celery reads it to
        keep a late failure or retry of a lost task from overwriting a success; a success
        written over a success cannot do that harm, and the read was a round trip per answer
        (every submit's). Every other state is stored as Celery stores it, read first."""
        if state != states.SUCCESS:
            return super()._store_result(  # type: ignore[misc]
                task_id, result, state, traceback=traceback, request=request, **kwargs
            )
        meta = self._get_result_meta(result, state, traceback, request)
        meta["task_id"] = bytes_to_str(task_id)
        try:
            self._set_with_state(  # type: ignore[attr-defined]
                self.get_key_for_task(task_id),  # type: ignore[attr-defined]
                self.encode(meta),  # type: ignore[attr-defined]
                state,
            )
        except BackendStoreError as exc:
            raise BackendStoreError(str(exc), state=state, task_id=task_id) from exc
        return result

    def _encode(self, data: Any) -> tuple[str, str, Any]:
        if self.serializer != "json":  # type: ignore[attr-defined]
            return super()._encode(data)  # type: ignore[misc,no-any-return]
        return "application/json", "utf-8", kombu_json.dumps(data, separators=(",", ":"))


@functools.cache
def compact(backend_cls: type) -> type:
    """``backend_cls`` (Celery's Redis or Sentinel backend, as the settings chose) storing
    successes compactly."""
    return type(f"Compact{backend_cls.__name__}", (CompactResultMeta, backend_cls), {})


class CloudrecCelery(Celery):  # type: ignore[misc]
    """Celery, with the result backend the configuration names made compact.

    The backend is still chosen by ``result_backend`` (a ``redis://`` URL or Sentinel's
    ``sentinel://``), so everything Celery derives from that URL stays as it is (the banner's
    and Flower's masked URL among them); only the class is wrapped."""

    def _get_backend(self) -> Any:
        backend_cls, url = backends.by_url(
            self.backend_cls or self.conf.result_backend, self.loader
        )
        return compact(backend_cls)(app=self, url=url)
