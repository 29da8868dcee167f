"""One playable file per job: after a recording ends, its parts are joined into
``<prefix>/<job_id>.mp4`` beside them, and the job records it (``merged`` in its status).

The service splits a recording (docs/service/files.md#failover, docs/service/files.md#mp4): each HA
failover starts a new segment whose files carry a ``bak<n>_`` prefix, and within a segment the MP4
rolls over (``_0.mp4``, ``_1.mp4``...). The merge, in order:

1. lists the job's files in its storage (the storage profile's directory or bucket,
   :mod:`worker.merge_storage`), the ones of its sid: ``[bak<n>_]<sid>_<cname>...``;
2. per segment (the original, then bak0, bak1...), reads the playlist: the first TS slice's name
   is the segment's wall-clock start, to the millisecond (``<sid>_<cname>_<utc>.ts``,
   docs/service/files.md#naming); the segment's parts are its MP4s in index order, or, for a job
   recorded as HLS only (or a segment whose MP4 is missing), the TS slices of every segment in
   playlist order. A segment's parts follow each other without a gap (an MP4 rolls over at a
   slice boundary);
3. joins the parts (:mod:`worker.merge_media`): remuxed, not re-encoded, on the wall clock, a
   failover's gap kept as a gap (held picture, silence);
4. verifies the file, puts it beside the parts, and records
   ``merged: {"key", "size", "duration", "parts", "gaps"}`` on the job.

It runs as ``recording.merge`` on its own queue, ``cloudrec.merge``, which a worker polls after
all the others: a merge never delays a stop. It is due once a job that asked for it
(``"merge": true``, or ``CLOUDREC_MERGE_DEFAULT``) ends ``completed`` or ``idle_exit`` (the
store's transition makes the ``merge:<id>`` entry due, as for callbacks). Failure never changes
the job's state: it is recorded as ``merged: {"error": ...}``. The job's completion callback
waits for the merge (:func:`callback_wait`), so its summary carries ``merged``.
"""

from __future__ import annotations

import logging
import re
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from contract.naming import sanitize_cname
from worker.errors import MergeError
from worker.merge_storage import JobStorage, storage_for
from worker.states import JobState
from worker.steps import Step
from worker.store import JobRecord

if TYPE_CHECKING:
    from config import Settings
    from worker.merge_media import Part
    from worker.runtime import Runtime

log = logging.getLogger("cloudrec.merge")

MERGE_STATES = frozenset({JobState.COMPLETED, JobState.IDLE_EXIT})
MAX_ATTEMPTS = 3  # deliveries of one job's merge (a worker killed mid-merge) before giving up
SLOT_WAIT = 5.0  # seconds before a merge that found no free slot is tried again


@dataclass
class Segment:
    """The files of one segment: the original recording (index -1) or bak<index>_."""

    index: int
    playlist: str | None = None
    mp4s: dict[int, str] = field(default_factory=dict)


def segments_of(names: list[str], sid: str, cname: str) -> list[Segment]:
    """Group a listing's file names of recording ``sid`` by segment, in recording order."""
    pattern = re.compile(
        rf"(?:bak(\d+)_)?{re.escape(sid)}_{re.escape(sanitize_cname(cname))}"
        r"(?:(\.m3u8)|_(\d+)\.mp4)"
    )
    found: dict[int, Segment] = {}
    for name in names:
        match = pattern.fullmatch(name)
        if match is None:
            continue
        bak, playlist, mp4 = match.groups()
        index = -1 if bak is None else int(bak)
        segment = found.setdefault(index, Segment(index))
        if playlist:
            segment.playlist = name
        else:
            segment.mp4s[int(mp4)] = name
    return [found[i] for i in sorted(found)]


_SLICE_STAMP = re.compile(r"_(\d{17})\.ts$")
_TRACK_TIME = re.compile(r"#EXT-X-AGORA-TRACK-EVENT:.*TIME=(\d+)")


def playlist_slices(text: str) -> list[str]:
    """The TS slice names a playlist lists, in order."""
    return [line.strip() for line in text.splitlines() if line.strip().endswith(".ts")]


def segment_start(text: str) -> Fraction:
    """A segment's wall-clock start (epoch seconds) from its playlist: the first slice's UTC
    stamp (``YYYYMMDDhhmmssSSS``), else the Agora track event's ``TIME`` (epoch ms)."""
    for name in playlist_slices(text):
        stamp = _SLICE_STAMP.search(name)
        if stamp:
            digits = stamp.group(1)
            moment = datetime.strptime(digits[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
            return Fraction(int(moment.timestamp()) * 1000 + int(digits[14:]), 1000)
    event = _TRACK_TIME.search(text)
    if event:
        return Fraction(int(event.group(1)), 1000)
    raise MergeError("a playlist names no slice and no start time")


def key_prefix(job: JobRecord) -> str:
    """The key prefix of the job's files: fileNamePrefix joined with "/", and a "/"."""
    parts = job.job_spec.fileNamePrefix
    return "/".join(parts) + "/" if parts else ""


def merged_key(job: JobRecord) -> str:
    return f"{key_prefix(job)}{job.job_id}.mp4"


def merge_job(
    settings: Settings, job: JobRecord, storage: JobStorage | None = None
) -> dict[str, Any]:
    """Fetch, join, verify and store the job's merged MP4; returns what the job records."""
    if job.sid is None:
        raise MergeError("the job has no recording (no sid)")
    # PyAV is imported by merges only: the CLI and the callbacks read this module too.
    from worker.merge_media import merge_parts, verify

    storage = storage or storage_for(settings.storage_profile(job.storage))
    prefix = key_prefix(job)
    names = storage.names(prefix)
    segments = segments_of(names, job.sid, job.cname)
    if not segments:
        raise MergeError(f"no file of recording {job.sid} under {prefix or 'the bucket root'!r}")
    _check_listed_files(job, set(names))
    with tempfile.TemporaryDirectory(prefix="cloudrec-merge-") as tmp:
        workdir = Path(tmp)
        parts = _fetch_parts(storage, prefix, segments, workdir)
        out = workdir / f"{job.job_id}.mp4"
        span, gaps = merge_parts(parts, out)
        result = verify(out, span, _kinds(job))
        storage.put(out, merged_key(job))
    return {
        "key": merged_key(job),
        "size": result.size,
        "duration": result.duration,
        "parts": len(parts),
        "gaps": [[round(a, 3), round(b, 3)] for a, b in gaps],
    }


def _check_listed_files(job: JobRecord, stored: set[str]) -> None:
    """Every file the service reported for the job must be in storage: a merge of what is there
    would silently miss the rest (files still in the service's backup, ``backuped``,
    docs/service/files.md#failover)."""
    missing = [f.fileName for f in job.files if f.fileName not in stored]
    if missing:
        shown = ", ".join(missing[:3]) + (
            f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        )
        raise MergeError(
            f"not in storage: {shown} (uploading_status {job.uploading_status or 'unknown'})"
        )


def _kinds(job: JobRecord) -> list[str]:
    """The streams the merged file must have: the recording's streamTypes (0 audio, 1 video,
    2 both)."""
    stream_types = job.job_spec.recordingConfig.streamTypes
    return {0: ["audio"], 1: ["video"]}.get(int(stream_types), ["audio", "video"])


def _fetch_parts(
    storage: JobStorage, prefix: str, segments: list[Segment], workdir: Path
) -> list[Part]:
    """Download each segment's parts; the first part of a segment carries its wall-clock start,
    the others follow it (``start`` None). The parts are the MP4s if every segment has some,
    else the TS slices everywhere (an MP4 and a TS slice carry AAC differently: one kind only)."""
    from worker.merge_media import Part

    use_mp4 = all(segment.mp4s for segment in segments)
    parts: list[Part] = []
    for segment in segments:
        if segment.playlist is None:
            raise MergeError(f"segment {_segment_name(segment)}: no playlist, so no start time")
        playlist = workdir / segment.playlist
        storage.fetch(prefix + segment.playlist, playlist)
        text = playlist.read_text(encoding="utf-8", errors="replace")
        start: Fraction | None = segment_start(text)
        names = [segment.mp4s[i] for i in sorted(segment.mp4s)]
        if not use_mp4:
            names = playlist_slices(text)
        for name in names:
            local = workdir / name
            storage.fetch(prefix + name, local)
            parts.append(Part(local, start, name))
            start = None
        if use_mp4:
            _check_mp4_cover(segment, text, [workdir / n for n in names])
    return parts


def _check_mp4_cover(segment: Segment, playlist: str, mp4s: list[Path]) -> None:
    """A segment's MP4s must last as long as its playlist's slices (within half a slice; they
    hold the same media): an MP4 missing in the middle would otherwise shift the rest of the
    segment, unseen."""
    import av

    lengths = [float(line.split(":", 1)[1].split(",")[0]) for line in _extinf_lines(playlist)]
    if not lengths:
        return
    covered = 0.0
    for path in mp4s:
        with av.open(str(path)) as container:
            covered += float(container.duration or 0) / av.time_base
    if abs(covered - sum(lengths)) > max(lengths) / 2 + 0.25:
        raise MergeError(
            f"segment {_segment_name(segment)}: its MP4s last {covered:.1f} s, its playlist "
            f"{sum(lengths):.1f} s: an MP4 is missing"
        )


def _extinf_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("#EXTINF:")]


def _segment_name(segment: Segment) -> str:
    return "original" if segment.index < 0 else f"bak{segment.index}_"


# -- the step --------------------------------------------------------------------------------------
_slots_lock = threading.Lock()
_slots_used = 0


@contextmanager
def merge_slot(settings: Settings) -> Iterator[bool]:
    """One of this process's ``CLOUDREC_MERGE_SLOTS`` merge slots, if one is free (a merge
    takes a core for a while: the rest of the pool stays free for the recording steps)."""
    global _slots_used
    with _slots_lock:
        got = _slots_used < settings.merge_slots
        if got:
            _slots_used += 1
    try:
        yield got
    finally:
        if got:
            with _slots_lock:
                _slots_used -= 1


def merge_step(rt: Runtime, job_id: str) -> float | None:
    """Merge a finished job's files if it asked for it and has no ``merged`` yet. Returns None
    when done (or nothing to do), else seconds after which to try again (no free slot)."""
    job = rt.store.find(job_id)
    if job is None or not merge_pending(job):
        rt.store.unschedule(Step.MERGE, job_id)
        return None
    with merge_slot(rt.settings) as got:
        if not got:
            later = time.time() + SLOT_WAIT + rt.settings.stop_lease
            rt.store.extend_due(Step.MERGE, job_id, later)
            return SLOT_WAIT
        with rt.leases.hold(Step.MERGE, job_id) as mine:
            if mine:  # else: another delivery is merging it
                _merge_and_record(rt, job)
    return None


def merge_pending(job: JobRecord) -> bool:
    """The job asked for a merge, ended in a state that has one, and has no outcome yet."""
    return job.merge and job.state in MERGE_STATES and job.merged is None


def _merge_and_record(rt: Runtime, job: JobRecord) -> None:
    job_id = job.job_id
    attempts = rt.store.count_delivery(job_id, "merge")
    started = time.monotonic()
    if attempts > MAX_ATTEMPTS:
        merged: dict[str, Any] = {"error": f"gave up after {MAX_ATTEMPTS} interrupted attempts"}
    else:
        try:
            merged = merge_job(rt.settings, job)
        except MergeError as exc:
            merged = {"error": str(exc)}
        except Exception as exc:  # a bug or a library failure: recorded, the job stays as it is
            log.exception("job %s: merge failed", job_id, extra={"job_id": job_id})
            merged = {"error": f"merge failed: {type(exc).__name__}"}
    merged["at"] = time.time()
    rt.store.transition(job_id, {job.state}, None, merged=merged)
    rt.store.unschedule(Step.MERGE, job_id)
    if job.has_callback:
        rt.store.schedule(Step.CALLBACK, job_id, time.time())  # it was waiting for this
    outcome = "error" if "error" in merged else "merged"
    rt.metrics.merge(outcome)
    log.info(
        "job %s: merge %s in %.1f s: %s",
        job_id,
        outcome,
        time.monotonic() - started,
        merged.get("error") or merged.get("key"),
        extra={"job_id": job_id},
    )


def callback_wait(job: JobRecord, settings: Settings, now: float) -> float | None:
    """Seconds a finished job's callback should still wait for its merge (None: deliver now):
    while the merge is pending, until ``CLOUDREC_MERGE_CALLBACK_WAIT`` after the job ended. The
    merge makes the callback due as soon as it has an outcome."""
    if not merge_pending(job):
        return None
    ended = job.history[-1].at if job.history else job.created_at
    left = ended + settings.merge_callback_wait - now
    return left if left > 0 else None
