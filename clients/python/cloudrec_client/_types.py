"""The status JSON of a job (``cloudrec status JOB --json``, the result of ``recording.status``,
``recording.cancel`` and ``recording.stop_now``) as typed values."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# A job in one of these states will not change again.
TERMINAL_STATES = frozenset({"completed", "empty", "idle_exit", "failed", "cancelled"})


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 UTC as the worker writes it (``2026-01-01T10:00:00.000Z``), aware."""
    if not isinstance(value, str) or not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True)
class FileInfo:
    """One recorded file: its name, and its object key in the bucket."""

    file_name: str
    key: str


@dataclass(frozen=True)
class HistoryEntry:
    state: str
    at: datetime | None


@dataclass(frozen=True)
class JobStatus:
    """A job's status. ``raw`` is the document as received (fields added later are there)."""

    job_id: str
    state: str
    cname: str
    uid: str | None = None
    app: str = "default"  # the app profile (Agora project) the job records with
    resource_id: str | None = None
    sid: str | None = None
    start_at: datetime | None = None
    stop_at: datetime | None = None
    files: tuple[FileInfo, ...] = ()
    uploading_status: str | None = None
    error: dict[str, Any] | None = None
    stop_reason: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    callback: dict[str, Any] | None = None
    # The merged MP4 of a job that asked for one: {"key", "size", "duration", ...} or {"error"}
    merged: dict[str, Any] | None = None
    history: tuple[HistoryEntry, ...] = ()
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_STATES

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> JobStatus:
        return cls(
            job_id=str(doc["job_id"]),
            state=str(doc["state"]),
            cname=str(doc.get("cname") or ""),
            uid=doc.get("uid"),
            app=str(doc.get("app") or "default"),
            resource_id=doc.get("resource_id"),
            sid=doc.get("sid"),
            start_at=parse_time(doc.get("start_at")),
            stop_at=parse_time(doc.get("stop_at")),
            files=tuple(
                FileInfo(file_name=f.get("fileName", ""), key=f.get("key", ""))
                for f in doc.get("files") or []
            ),
            uploading_status=doc.get("uploading_status"),
            error=doc.get("error"),
            stop_reason=doc.get("stop_reason"),
            labels=dict(doc.get("labels") or {}),
            callback=doc.get("callback"),
            merged=doc.get("merged"),
            history=tuple(
                HistoryEntry(state=h.get("state", ""), at=parse_time(h.get("at")))
                for h in doc.get("history") or []
            ),
            raw=doc,
        )
