"""The client: cloudrec's public tasks (docs/tasks.md) over a plain Celery app of its own."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from celery import Celery
from celery.exceptions import TimeoutError as CeleryTimeout

from cloudrec_client._errors import JobSpecError, NoAnswer, WaitTimeout, from_task_failure
from cloudrec_client._seal import is_sealed, seal_token
from cloudrec_client._types import JobStatus

INTAKE_QUEUE = "cloudrec"
SPEC_REPR = "(<job spec>)"  # what Flower and the worker's log show instead of a spec


class CloudrecClient:
    """Submit and follow cloudrec jobs.

    ``broker_url``: the broker cloudrec's workers use (their ``CLOUDREC_REDIS_URL``);
    ``backend_url``: where their results are (the same Redis by default). ``queue``: the
    workers' intake (``CLOUDREC_INTAKE_QUEUE``). ``vault_key``: the workers'
    ``CLOUDREC_VAULT_KEY``, needed only to submit specs with an RTC token. ``timeout``: how long
    each call waits for its answer.
    """

    def __init__(
        self,
        broker_url: str,
        backend_url: str | None = None,
        *,
        queue: str = INTAKE_QUEUE,
        vault_key: str | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.queue = queue
        self.timeout = timeout
        self._vault_key = vault_key
        self.app = Celery(
            "cloudrec-client",
            broker=broker_url,
            backend=backend_url or broker_url,
            set_as_current=False,
        )
        self.app.conf.update(
            task_serializer="json",
            result_serializer="json",
            accept_content=["json"],
            result_accept_content=["json"],
            broker_connection_retry_on_startup=True,
        )

    # -- the public tasks -------------------------------------------------------------------
    def submit(self, spec: Mapping[str, Any]) -> str:
        """Submit a job; returns its id. Raises :class:`JobSpecError` for an invalid spec
        (nothing is stored). Submitting a spec with the same ``job_id`` again returns that job.
        A ``token`` is sealed before it is sent."""
        job_id: str = self._call("recording.submit", [self._sealed(spec)], argsrepr=SPEC_REPR)
        return job_id

    def status(self, job_id: str) -> JobStatus:
        """The job's status. Raises :class:`JobNotFound` for an unknown id."""
        return JobStatus.from_json(self._call("recording.status", [job_id]))

    def cancel(self, job_id: str) -> JobStatus:
        """Cancel: a job not started yet never starts, a live recording is stopped now."""
        return JobStatus.from_json(self._call("recording.cancel", [job_id]))

    def stop(self, job_id: str) -> JobStatus:
        """Stop the recording now, before its deadline (``cloudrec stop``)."""
        return JobStatus.from_json(self._call("recording.stop_now", [job_id]))

    def wait(self, job_id: str, timeout: float, poll: float = 1.0) -> JobStatus:
        """Poll the status until the job is terminal; :class:`WaitTimeout` after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            status = self.status(job_id)
            if status.terminal:
                return status
            left = deadline - time.monotonic()
            if left <= 0:
                raise WaitTimeout(job_id, timeout, status)
            time.sleep(min(poll, left))

    def close(self) -> None:
        self.app.close()

    def __enter__(self) -> CloudrecClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- plumbing ---------------------------------------------------------------------------
    def _call(self, task: str, args: list[Any], argsrepr: str | None = None) -> Any:
        result = self.app.send_task(
            task,
            args=args,
            queue=self.queue,
            argsrepr=argsrepr if argsrepr is not None else repr(tuple(args)),
            kwargsrepr="{}",
        )
        try:
            value = result.get(timeout=self.timeout, propagate=False)
        except CeleryTimeout:
            raise NoAnswer(
                f"{task}: no answer within {self.timeout:g} s; is a cloudrec worker serving "
                f"queue {self.queue!r} on this broker? (cloudrec health tells)"
            ) from None
        try:
            if result.failed():
                raise from_task_failure(task, value)
            return value
        finally:
            result.forget()  # read once: do not leave it in Redis for a day

    def _sealed(self, spec: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(spec)
        token = out.get("token")
        if not isinstance(token, str) or not token or is_sealed(token):
            return out
        if self._vault_key is None:
            raise JobSpecError(
                "token: a plain RTC token must not cross the broker; give the client the "
                "workers' vault key (CloudrecClient(..., vault_key=...)) to seal it"
            )
        out["token"] = seal_token(token, self._vault_key)
        return out
