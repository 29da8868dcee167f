"""Which local files the emulator may read, and how it opens them.

A simulated user's ``{"file": PATH}`` and a layout's local ``backgroundImage`` come from callers
of the HTTP API. Without limits they read any file FFmpeg can decode (a ``.asc`` file's text
showed up in a recording through FFmpeg's ``tty`` demuxer), tell a caller whether a path exists,
and a named pipe blocks whoever opens it. So:

- :class:`MediaDirs`: paths are accepted only under the directories the operator configured
  (``cloudrec emulator --media-dir DIR``, repeatable; none by default, so no local file at all),
  after resolving symlinks and ``..``, and only regular files. Every refusal has the same text,
  so it tells nothing about what exists.
- :func:`open_media`: opens with FFmpeg's own ``format_whitelist`` (container demuxers only: no
  ``tty``, ``concat``, ``hls``, ``image2`` sequences or other demuxers that read further files)
  and ``protocol_whitelist=file``, after checking without blocking that it is a regular file.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av

# Demuxers of self-contained files (FFmpeg names; "mov" is mov,mp4,m4a,3gp,3g2,mj2 and
# "matroska" is matroska,webm). The *_pipe image demuxers read one picture from one file, unlike
# image2, which expands patterns into sequences of other files.
ALLOWED_DEMUXERS = (
    "mov",
    "matroska",
    "avi",
    "flv",
    "mpegts",
    "ogg",
    "wav",
    "mp3",
    "aac",
    "flac",
    "yuv4mpegpipe",
    "png_pipe",
    "jpeg_pipe",
    "bmp_pipe",
    "webp_pipe",
    "tiff_pipe",
    "gif",
)
_OPTIONS = {"format_whitelist": ",".join(ALLOWED_DEMUXERS), "protocol_whitelist": "file"}
REFUSED = "must name a regular file under the emulator's media directories (--media-dir)"
NO_DIRS = "local files are off: the emulator was started without --media-dir"


class MediaRefused(OSError):
    """A local media file the emulator will not read; the text never says why in detail."""


@dataclass(frozen=True)
class MediaDirs:
    """The directories local media may come from. Empty: none."""

    dirs: tuple[Path, ...] = ()

    @classmethod
    def of(cls, dirs: Any) -> MediaDirs:
        return cls(tuple(Path(os.path.realpath(d)) for d in dirs or ()))

    def resolve(self, ref: str) -> str:
        """The real path of ``ref`` (absolute, or relative to a media directory) if it is a
        regular file under a media directory; :class:`MediaRefused` otherwise."""
        if not self.dirs:
            raise MediaRefused(NO_DIRS)
        for base in self.dirs:
            real = Path(os.path.realpath(base / ref))  # an absolute ref replaces base
            if real.is_relative_to(base) and _is_regular(real):
                return str(real)
        raise MediaRefused(REFUSED)


def _is_regular(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)  # stat never blocks, even on a FIFO
    except (OSError, ValueError):
        return False


def _open_regular(path: str) -> int:
    """A descriptor of ``path`` if it is a regular file, else MediaRefused. Opened with
    O_NONBLOCK, so a named pipe or a device answers at once instead of blocking the thread."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except (OSError, ValueError):
        raise MediaRefused(REFUSED) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise MediaRefused(REFUSED)
    return fd


def check_regular_file(path: str) -> None:
    os.close(_open_regular(path))


def open_media(path: str) -> Any:
    """An input container for a local media file, its demuxer from :data:`ALLOWED_DEMUXERS`.
    MediaRefused (an OSError) for anything else."""
    check_regular_file(path)
    try:
        return av.open(path, options=dict(_OPTIONS))
    except (av.FFmpegError, ValueError) as exc:
        raise MediaRefused(f"not a supported media container ({type(exc).__name__})") from None


def read_regular_file(path: str, limit: int) -> bytes:
    """At most ``limit`` bytes of a regular file (MediaRefused for a pipe, device, directory)."""
    with os.fdopen(_open_regular(path), "rb") as handle:
        return handle.read(limit)
