"""The HLS playlist text (docs/service/files.md#slicing), rewritten every time a slice completes."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class PlaylistEntry:
    name: str
    seconds: float


def render_playlist(
    entries: Sequence[PlaylistEntry],
    *,
    target_seconds: float,
    track_types: Sequence[str],
    start_epoch_ms: int,
    ended: bool,
) -> str:
    """M3U8 text: version 3, the Agora START track events before the first slice, one
    `#EXTINF:<len>,` per slice, and `#EXT-X-ENDLIST` once the recording has ended.

    `track_types` are "VIDEO" and/or "AUDIO". The target duration is the longest slice
    rounded up (HLS requires every EXTINF, rounded, to be at most the target).
    """
    longest = max([target_seconds, *(entry.seconds for entry in entries)])
    lines = [
        "#EXTM3U",
        "#EXT-X-VERSION:3",
        "#EXT-X-MEDIA-SEQUENCE:0",
        f"#EXT-X-TARGETDURATION:{max(1, math.ceil(longest - 1e-6))}",
    ]
    lines += [
        f"#EXT-X-AGORA-TRACK-EVENT:EVENT=START,TRACK_TYPE={track},TIME={start_epoch_ms}"
        for track in track_types
    ]
    for entry in entries:
        lines.append(f"#EXTINF:{entry.seconds:.3f},")
        lines.append(entry.name)
    if ended:
        lines.append("#EXT-X-ENDLIST")
    return "\n".join(lines) + "\n"


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` in one step so a reader (an uploader) never sees half a playlist."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
