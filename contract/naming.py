"""Output file names exactly as the real service writes them (docs/service/files.md#naming,
docs/service/files.md#failover).

The emulator writes files under these names; the worker expects them (the playlist it reports
before the service lists the files).
"""

from __future__ import annotations

from datetime import UTC, datetime

# Characters the service replaces with "-" in the cname part of file names
# (docs/service/files.md#naming).
_SPECIAL = frozenset("!@#$%^&*()+_.=[]{}~|,;:?<>")


def sanitize_cname(cname: str) -> str:
    """Replace every special character of docs/service/files.md#naming with "-"."""
    return "".join("-" if ch in _SPECIAL else ch for ch in cname)


def utc_stamp(epoch_ms: int) -> str:
    """`YYYYMMDDhhmmssSSS` in UTC for an epoch time in milliseconds."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, tz=UTC)
    return moment.strftime("%Y%m%d%H%M%S") + f"{epoch_ms % 1000:03d}"


def failover_prefix(failover: int) -> str:
    """`bak<n>_`: the prefix of every file written after the task's n-th HA failover (n from 0,
    docs/service/files.md#failover)."""
    return f"bak{failover}_"


def playlist_name(sid: str, cname: str, prefix: str = "") -> str:
    """`<sid>_<cname>.m3u8` (`bak<n>_<sid>_<cname>.m3u8` after a failover)."""
    return f"{prefix}{sid}_{sanitize_cname(cname)}.m3u8"


def slice_name(sid: str, cname: str, start_epoch_ms: int, prefix: str = "") -> str:
    """`<sid>_<cname>_<utc>.ts`, `<utc>` being the slice's start."""
    return f"{prefix}{sid}_{sanitize_cname(cname)}_{utc_stamp(start_epoch_ms)}.ts"


def mp4_name(sid: str, cname: str, index: int, prefix: str = "") -> str:
    """`<sid>_<cname>_<index>.mp4`, index from 0 (counted again from 0 after a failover)."""
    return f"{prefix}{sid}_{sanitize_cname(cname)}_{index}.mp4"
