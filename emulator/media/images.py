"""Background images: load from a path or an http(s) URL, decode once, cache scaled pictures.

Every image loads on a background thread, local files too, so a live recording's clock loop
never waits on the network or the disk (a named pipe given as a path once blocked it for good);
until the load finishes the image is treated as not configured
(docs/service/api-contract.md#transcodingconfig: "The setting only takes effect once the image has
downloaded"). A failed load is logged once and the image ignored. Local paths are read only under
the emulator's media directories (:class:`emulator.media.access.MediaDirs`; unrestricted only for an
offline render, which reads the operator's own scenario), and only regular files. URLs are fetched
without following redirects, so a public URL cannot bounce the fetch to an internal address.
"""

from __future__ import annotations

import io
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from typing import Any

import av

from emulator.media.access import MediaDirs, read_regular_file
from emulator.media.canvas import Picture
from emulator.media.pictures import scale_to_region

log = logging.getLogger(__name__)

# docs/service/api-contract.md#transcodingconfig: images up to 6 MB
_MAX_IMAGE_BYTES = 6 * 1024 * 1024
_FETCH_TIMEOUT_S = 10.0


class ImageStore:
    """Decoded images by reference (path or URL) and their scaled pictures by size and mode."""

    def __init__(self, media: MediaDirs | None = None) -> None:
        """``media``: where local images may come from; None: anywhere (offline render)."""
        self._media = media
        self._lock = threading.Lock()
        self._frames: dict[str, av.VideoFrame | None] = {}  # None: failed to load
        self._pending: dict[str, Future[None]] = {}
        self._pictures: dict[tuple[str, int, int, int], Picture] = {}
        self._executor: ThreadPoolExecutor | None = None

    def request(self, ref: str) -> None:
        """Start loading `ref` unless it is loaded, loading or known bad."""
        with self._lock:
            if ref in self._frames or ref in self._pending:
                return
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="images")
            self._pending[ref] = self._executor.submit(self._download, ref)

    def frame(self, ref: str) -> av.VideoFrame | None:
        """The decoded image, or None while it is loading or if it failed (never blocks)."""
        self.request(ref)
        with self._lock:
            return self._frames.get(ref)

    def failed(self, ref: str) -> bool:
        """True if `ref` was tried and could not be loaded."""
        with self._lock:
            return ref in self._frames and self._frames[ref] is None

    def picture(self, ref: str, width: int, height: int, render_mode: int) -> Picture | None:
        """`ref` scaled for a `width` x `height` region, or None if not available (yet)."""
        key = (ref, width, height, render_mode)
        cached = self._pictures.get(key)
        if cached is not None:
            return cached
        frame = self.frame(ref)
        if frame is None:
            return None
        picture = scale_to_region(frame, width, height, render_mode)
        self._pictures[key] = picture
        return picture

    def wait(self, timeout: float | None = None) -> None:
        """Block until every requested download has finished (offline rendering)."""
        with self._lock:
            pending = list(self._pending.values())
        wait(pending, timeout=timeout)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def _download(self, ref: str) -> None:
        frame = _load_quietly(ref, _fetch_url if _is_url(ref) else self._read_file)
        with self._lock:
            self._frames[ref] = frame
            del self._pending[ref]

    def _read_file(self, ref: str) -> bytes:
        path = ref if self._media is None else self._media.resolve(ref)
        return read_regular_file(path, _MAX_IMAGE_BYTES + 1)


def _is_url(ref: str) -> bool:
    return ref.startswith(("http://", "https://"))


def _fetch_url(ref: str) -> bytes:
    import urllib.request  # here: it costs ~25 ms of start-up and most renders use no URL

    class NoRedirects(urllib.request.HTTPRedirectHandler):
        """A 3xx is an error (HTTPError), never followed: it could point at an internal address."""

        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    opener = urllib.request.build_opener(NoRedirects())
    with opener.open(ref, timeout=_FETCH_TIMEOUT_S) as response:
        data: bytes = response.read(_MAX_IMAGE_BYTES + 1)
        return data


def _load_quietly(ref: str, read: Callable[[str], bytes]) -> av.VideoFrame | None:
    """Read and decode an image; on any failure log a warning and return None."""
    try:
        data = read(ref)
        if len(data) > _MAX_IMAGE_BYTES:
            raise ValueError("image larger than 6 MB")
        return _decode_image(data)
    except Exception as exc:
        log.warning("ignoring background image %s: %s", ref, exc)
        return None


def _decode_image(data: bytes) -> av.VideoFrame:
    with av.open(io.BytesIO(data)) as container:
        for frame in container.decode(video=0):
            assert isinstance(frame, av.VideoFrame)
            return frame
    raise ValueError("no picture in image")
