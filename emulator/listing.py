"""How a task is shown: the ``fileList`` of query and stop answers
(docs/service/api-contract.md#file-lists), the identity echoed by every answer, event 3, and the dev
API's view of a recording. Callers hold the registry's lock."""

from __future__ import annotations

from typing import Any

from emulator.channels import iso_utc
from emulator.registry import Phase, Registry, Task, segment_of


def file_entries(task: Task, final: bool) -> list[dict[str, Any]]:
    """The ``fileList`` array (docs/service/api-contract.md#file-lists): the M3U8, then the MP4s, of
    each segment in turn (the original files, then bak0_, bak1_... after failovers)."""
    files = [u.file for u in task.uploads if u.file.kind in ("m3u8", "mp4")]
    if final:
        names = {f.name for f in files}
        files += [f for f in task.produced if f.kind == "mp4" and f.name not in names]
    # A stable sort: the MP4s of a segment stay in the order they were completed.
    entries = sorted(files, key=lambda f: (segment_of(f.name), f.kind != "m3u8"))
    return [
        {
            "fileName": f.name,
            "trackType": f.track_type,
            "uid": "0",
            "mixedAllUser": True,
            "isPlayable": True,
            "sliceStartTime": f.slice_start_ms,
        }
        for f in entries
    ]


def file_list(task: Task, final: bool) -> dict[str, Any]:
    """``fileListMode`` / ``fileList`` per avFileType (docs/service/api-contract.md#file-lists)."""
    if not task.json_file_list:
        playlist = next((u.file for u in task.uploads if u.file.kind == "m3u8"), None)
        return {"fileListMode": "string", "fileList": playlist.name if playlist else ""}
    return {"fileListMode": "json", "fileList": file_entries(task, final)}


def echo(task: Task) -> dict[str, Any]:
    """The identity every answer about a task repeats."""
    return {
        "cname": task.cname,
        "uid": task.uid,
        "resourceId": task.resource_id,
        "sid": task.sid,
    }


def status_update_event(registry: Registry, task: Task) -> None:
    """Event 3: a call that does not fit the task's state (docs/service/ncs.md#event-types)."""
    playlist = next((u.file.name for u in task.uploads if u.file.kind == "m3u8"), "")
    registry.event(task, 3, status=registry.status(task), recordingMode=1, fileList=playlist)


def _iso(epoch: float | None) -> str | None:
    return None if epoch is None else iso_utc(epoch)


def _uploading_status(task: Task) -> str | None:
    if task.phase is Phase.EXITED and task.uploads:
        return "backuped" if task.backuped else "uploaded"
    return None


def describe(registry: Registry, task: Task) -> dict[str, Any]:
    """The dev API's view of a recording (``GET /dev/recordings``)."""
    storage = task.storage
    return {
        "sid": task.sid,
        "resourceId": task.resource_id,
        "appId": task.appid,
        "cname": task.cname,
        "uid": task.uid,
        "mode": task.mode,
        "status": registry.status(task),
        "live": task.phase is Phase.LIVE,
        "recorderUid": task.recorder_uid,
        "migrating": task.migrating(registry.clock()),
        "failovers": [failover.to_json() for failover in task.failovers],
        "removed": task.sid not in registry.tasks,
        "startedAt": _iso(task.started_wall),
        "stoppedAt": _iso(task.stopped_wall),
        "exitReason": task.exit_reason,
        "error": task.error,
        "token": task.token_view,  # with an App Certificate: the verdict, never the token
        "recorderStartedAt": (
            _iso(task.recorder_start_ms / 1000) if task.recorder_start_ms else None
        ),
        "uploadingStatus": _uploading_status(task),
        "storage": {
            "vendor": storage.vendor,
            "region": storage.region,
            "bucket": storage.bucket,
            "fileNamePrefix": storage.fileNamePrefix or [],
        },
        "files": [upload.to_json() for upload in task.uploads],
        "realtime": task.realtime.to_json(),
    }
