"""The status JSON's fixed keys (design section 8): what ``cloudrec status``, ``recording.status``
and ``JobRecord.status_json`` always hold, whatever else a version adds."""

from __future__ import annotations

STATUS_KEYS = frozenset(
    {
        "job_id",
        "state",
        "cname",
        "uid",
        "resource_id",
        "sid",
        "stop_at",
        "files",
        "uploading_status",
        "error",
        "history",
    }
)
