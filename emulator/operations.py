"""The Cloud Recording REST operations (docs/service/api-contract.md): acquire, start, query,
update, updateLayout and stop, each given the path parameters and the parsed JSON body.

Each returns its typed answer, the contract's response model (``AcquireResponse``,
``StartResponse``, ...), or raises :class:`~emulator.errors.ApiError` with the real service's
error body. The facade (``emulator.service``) turns an answer into ``(200, body)``.
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import time
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from contract import models as contract
from emulator import errors
from emulator.driver import RecorderDriver
from emulator.faults import FaultInjector, Operation
from emulator.lifecycle import Lifecycle
from emulator.listing import echo, file_list, status_update_event
from emulator.media import layout_spec_from_api, media_config_from_api
from emulator.registry import Phase, Registry, Resource, Task
from emulator.subscription import Subscription
from emulator.tokens import join_check, token_view

log = logging.getLogger(__name__)

ModelT = TypeVar("ModelT", bound=BaseModel)
ClientT = TypeVar("ClientT", bound=BaseModel)

MODES = ("mix", "individual", "web")


def _validate(model: type[ModelT], data: Any) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise errors.invalid_parameter(contract.describe_validation_error(exc)) from None


def _optional_client_request(body: Any) -> Any:
    """``body`` with a missing or ``null`` clientRequest read as ``{}``: every field of it is
    optional for acquire, update, updateLayout and stop (the Go client's low-level API sends
    ``null`` for a request built without one)."""
    if isinstance(body, dict) and body.get("clientRequest") is None:
        return {**body, "clientRequest": {}}
    return body


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise errors.invalid_parameter(f"mode: must be one of {', '.join(MODES)} (got {mode!r})")
    if mode != "mix":
        raise errors.invalid_parameter(
            f"mode: {mode!r} recording is not implemented by the emulator; use mix"
        )


def _task_request(model: type[ClientT], mode: str, body: Any) -> contract.ApiRequest[ClientT]:
    """The checked mode and body of an operation on a task; its clientRequest is optional."""
    _check_mode(mode)
    # A pydantic generic parametrised at run time, which mypy does not take for a type.
    request_model = contract.ApiRequest[model]  # type: ignore[valid-type]
    return _validate(request_model, _optional_client_request(body))


def _check_identity(task: Task, cname: str, uid: str) -> None:
    if (cname, uid) != (task.cname, task.uid):
        raise errors.parameter_mismatch()


class Operations:
    """The REST operations on the registry's resources and tasks. Thread-safe."""

    def __init__(
        self,
        registry: Registry,
        *,
        lifecycle: Lifecycle,
        driver: RecorderDriver,
        faults: FaultInjector,
    ) -> None:
        self._registry = registry
        self._lifecycle = lifecycle
        self._driver = driver
        self._faults = faults

    def acquire(self, appid: str, body: Any) -> contract.AcquireResponse:
        cname = body.get("cname") if isinstance(body, dict) else None
        if isinstance(cname, str) and contract.channel_name_problem(cname):
            # docs/service/api-contract.md#acquire: acquire answers 401, not 2
            raise errors.invalid_channel_name()
        request = _validate(
            contract.ApiRequest[contract.AcquireClientRequest], _optional_client_request(body)
        )
        resource = Resource(
            resource_id=secrets.token_urlsafe(168),  # 224 URL-safe characters, opaque
            appid=appid,
            cname=request.cname,
            uid=request.uid,
            created=self._registry.clock(),
            expired_hour=request.clientRequest.resourceExpiredHour,
        )
        with self._registry.lock:
            self._registry.resources[resource.resource_id] = resource
        return contract.AcquireResponse(
            cname=request.cname, uid=request.uid, resourceId=resource.resource_id
        )

    def start(self, appid: str, resource_id: str, mode: str, body: Any) -> contract.StartResponse:
        _check_mode(mode)
        registry = self._registry
        with registry.lock:
            resource = registry.resources.get(resource_id)
        if resource is None:
            raise errors.resource_unparsable()
        request = _validate(contract.ApiRequest[contract.StartClientRequest], body)
        if (appid, request.cname, request.uid) != (resource.appid, resource.cname, resource.uid):
            raise errors.parameter_mismatch()
        task = self._new_task(request, resource, mode)
        check = join_check(
            registry.config, appid, request.cname, request.uid, request.clientRequest.token
        )
        with registry.lock:
            self._check_startable(resource, task)
            task.uploader = self._lifecycle.new_uploader(task)
            registry.add_task(task, resource)
            registry.event(task, 30, status=0)
            if check is not None:
                task.token_view = token_view(check)
                if check.problem is not None:
                    # Accepted, then the recorder cannot join (emulator.tokens).
                    log.info("recording %s: the recorder cannot join: %s", task.sid, check.reason)
                    self._lifecycle.fail(task, f"token: {check.reason}", code=int(check.problem))
                    return contract.StartResponse.model_validate(echo(task))
                task.token_valid_until = check.valid_until
            registry.event(task, 40, status=0)
            if registry.has_subscribed_publisher(task, registry.channels.users(task.cname)):
                self._driver.start(task)  # someone publishes already: record from now
        log.info("recording %s started: cname=%r uid=%s", task.sid, task.cname, task.uid)
        return contract.StartResponse.model_validate(echo(task))

    def _new_task(
        self,
        request: contract.ApiRequest[contract.StartClientRequest],
        resource: Resource,
        mode: str,
    ) -> Task:
        """The task a valid start would create (not registered yet)."""
        client = request.clientRequest
        recording = client.recordingConfig
        recording_wire = recording.model_dump(mode="json", exclude_none=True)
        file_wire = client.recordingFileConfig.model_dump(mode="json", exclude_none=True)
        try:
            media_config = media_config_from_api(recording_wire, file_wire)
        except ValueError as exc:
            raise errors.invalid_parameter(f"clientRequest.recordingConfig: {exc}") from None
        now = self._registry.clock()
        return Task(
            sid=secrets.token_hex(16),
            resource_id=resource.resource_id,
            appid=resource.appid,
            cname=request.cname,
            uid=request.uid,
            mode=mode,
            recording=recording,
            av_file_types=tuple(client.recordingFileConfig.avFileType),
            media_config=media_config,
            storage=client.storageConfig,
            subscription=Subscription.from_recording(recording),
            started=now,
            started_wall=time.time(),
            api_deadline=now + resource.expired_hour * self._registry.config.hour_seconds,
        )

    def _check_startable(self, resource: Resource, task: Task) -> None:
        """The errors of a start that is too late or a second one. Caller holds the lock."""
        registry = self._registry
        if resource.sid is not None:
            started = registry.tasks.get(resource.sid)
            if started is not None:
                status_update_event(registry, started)
            raise errors.already_started(resource.resource_id)
        if task.started - resource.created > registry.config.resource_ttl_seconds:
            raise errors.resource_expired()
        if registry.unexited(task.appid, task.cname, task.uid) is not None:
            raise errors.task_conflict()

    def query(self, appid: str, resource_id: str, sid: str, mode: str) -> contract.QueryResponse:
        _check_mode(mode)
        with self._registry.lock:
            task = self._task(appid, resource_id, sid, "query")
            server: dict[str, Any] = {
                "status": self._registry.status(task),
                **file_list(task, final=task.phase is Phase.EXITED),
            }
            if task.recorder_start_ms is not None:
                server["sliceStartTime"] = task.recorder_start_ms
            return contract.QueryResponse.model_validate({**echo(task), "serverResponse": server})

    def update(
        self, appid: str, resource_id: str, sid: str, mode: str, body: Any
    ) -> contract.UpdateResponse:
        request = _task_request(contract.UpdateClientRequest, mode, body)
        client = request.clientRequest
        with self._registry.lock:
            task = self._live_task(appid, resource_id, sid, "update", request)
            subscribe = client.streamSubscribe
            if subscribe is not None:
                task.subscription.apply(subscribe)
            if client.storageConfig is not None:
                task.storage = client.storageConfig
            return contract.UpdateResponse.model_validate(echo(task))

    def update_layout(
        self, appid: str, resource_id: str, sid: str, mode: str, body: Any
    ) -> contract.UpdateResponse:
        request = _task_request(contract.LayoutUpdate, mode, body)
        # docs/service/api-contract.md#updatelayout: the whole layout is replaced; omitted fields
        # are back to their defaults.
        spec = layout_spec_from_api(
            request.clientRequest.model_dump(mode="json", exclude_none=True)
        )
        with self._registry.lock:
            task = self._live_task(appid, resource_id, sid, "updateLayout", request)
            task.media_config = dataclasses.replace(task.media_config, layout=spec)
            if task.recorder is not None:
                task.recorder.set_layout(spec)  # thread-safe in CompositeRecorder
            return contract.UpdateResponse.model_validate(echo(task))

    def stop(
        self, appid: str, resource_id: str, sid: str, mode: str, body: Any
    ) -> contract.StopResponse:
        request = _task_request(contract.StopClientRequest, mode, body)
        registry = self._registry
        with registry.lock:
            task = self._task(appid, resource_id, sid, "stop")
            _check_identity(task, request.cname, request.uid)
            if task.phase is not Phase.LIVE:
                status_update_event(registry, task)
                # already exiting (docs/service/api-contract.md#stop: code 49)
                raise errors.invalid_operation()
            self._lifecycle.begin_exit(task, "stop")
            if task.driver is None:  # nobody ever published: nothing to finish
                self._lifecycle.exit_empty(task)
                raise errors.no_recorded_data()
        self._lifecycle.finish_in_thread(task, name=f"stop-{sid[:8]}")
        if request.clientRequest.async_stop:
            with registry.lock:
                server = {**file_list(task, final=False), "uploadingStatus": "unknown"}
            return contract.StopResponse.model_validate({**echo(task), "serverResponse": server})
        return self._stopped(task)

    def _stopped(self, task: Task) -> contract.StopResponse:
        """The answer of a synchronous stop: once the task has exited, its files."""
        registry = self._registry
        if not task.done.wait(registry.config.sync_stop_timeout_seconds):
            # docs/service/api-contract.md#stop: over 20 s, code 50
            raise errors.upload_timeout(**echo(task))
        with registry.lock:
            if not task.uploads:
                task.exit_reason = "empty"
                raise errors.no_recorded_data()
            server = {
                **file_list(task, final=True),
                "uploadingStatus": "backuped" if task.backuped else "uploaded",
            }
            return contract.StopResponse.model_validate({**echo(task), "serverResponse": server})

    def _live_task(
        self,
        appid: str,
        resource_id: str,
        sid: str,
        operation: Operation,
        request: contract.ApiRequest[Any],
    ) -> Task:
        """The addressed task for a change (update, updateLayout): it must be live."""
        task = self._task(appid, resource_id, sid, operation)
        _check_identity(task, request.cname, request.uid)
        if task.phase is not Phase.LIVE:
            raise errors.worker_not_found()
        return task

    def _task(self, appid: str, resource_id: str, sid: str, operation: Operation) -> Task:
        """The addressed task, or 404 "failed to find worker". Caller holds the lock."""
        if self._faults.not_found(operation):
            raise errors.worker_not_found()
        registry = self._registry
        task = registry.tasks.get(sid)
        now = registry.clock()
        linger = registry.config.exit_linger_seconds
        if (
            task is None
            or task.resource_id != resource_id
            or task.appid != appid
            or now > task.api_deadline
            or (task.exited is not None and now - task.exited > linger)
            # docs/service/errors.md#not-found, docs/service/api-contract.md#status-values
            or now - task.started < self._faults.start_not_found_seconds
            or task.migrating(now)  # docs/service/files.md#failover: between servers
        ):
            raise errors.worker_not_found()
        return task
