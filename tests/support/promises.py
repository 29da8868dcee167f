"""The worker's promises checked against the emulator's own record of every recording (used by
the reliability tests at small sizes and the benchmark scripts at full sizes), and the
real-service mode they are shown in.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from worker.devapi import DevApiClient
from worker.runtime import Runtime

# Real-service mode, the mode the guarantees are shown in: the worker uses nothing of the
# emulator's dev API (``dev_api=False``) and learns what the real service would tell it only
# through NCS notifications, posted by the emulator to a ``cloudrec ncs`` receiver.
NCS_SECRET = "reliability-ncs-secret"
REAL_SERVICE = {"dev_api": False, "ncs_secret": NCS_SECRET}
# The test's (and benchmark's) own calls to the dev API say who they are; any other caller
# the emulator logs (GET /dev/requests) is the worker.
TEST_AGENT = "cloudrec-reliability-test"


def observer_dev(base_url: str) -> DevApiClient:
    """The test's view of the emulator (never the worker's)."""
    return DevApiClient(base_url, user_agent=TEST_AGENT)


def dev_requests_mark(dev: DevApiClient) -> int:
    """Where the emulator's dev API log stands now (before the workers start: the emulator's
    own start-up probe is logged too)."""
    return len(dev.requests_log())


def worker_dev_requests(dev: DevApiClient, since: int) -> list[dict[str, Any]]:
    """Every dev API request the emulator logged after ``since`` that did not come from the
    test itself."""
    return [r for r in dev.requests_log()[since:] if r.get("userAgent") != TEST_AGENT]


# -- the promises, checked ------------------------------------------------------------------------
def epoch(iso: str | None) -> float | None:
    return datetime.fromisoformat(iso).timestamp() if iso else None


@dataclass
class Verdict:
    """The worker's promises, checked against the job store and the emulator's record."""

    jobs: int = 0
    states: Counter[str] = field(default_factory=Counter)
    not_terminal: list[str] = field(default_factory=list)
    started_twice: list[str] = field(default_factory=list)  # cnames with > 1 recording
    left_live: list[str] = field(default_factory=list)  # sids still live at the emulator
    unknown_recordings: list[str] = field(default_factory=list)  # no job for the cname
    lateness: list[float] = field(default_factory=list)  # emulator stop - stop_at, seconds
    stops: list[tuple[float, float, str]] = field(default_factory=list)  # stop_at, late, job
    failures: dict[str, str] = field(default_factory=dict)  # job id -> error reason
    # Every recording the emulator holds, whether or not its job ever learnt its sid.
    recordings: list[RecordingSeen] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)  # "state: reason" of every job

    @property
    def recording_lateness(self) -> list[float]:
        """How late each recording at the emulator was stopped (still live: not in it)."""
        return [r.late for r in self.recordings if r.late is not None]

    @property
    def max_lateness(self) -> float:
        return max(self.lateness, default=0.0)

    def percentile(self, q: float) -> float:
        if not self.lateness:
            return 0.0
        ordered = sorted(self.lateness)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        late = sorted(self.recording_lateness)
        return {
            "recordings": len(self.recordings),
            "recordings_stopped_late_over_30s": sum(1 for x in late if x > 30),
            "recording_lateness_p50_s": round(_quantile(late, 0.5), 3),
            "recording_lateness_p99_s": round(_quantile(late, 0.99), 3),
            "recording_lateness_max_s": round(max(late, default=0.0), 3),
            "recordings_sid_unknown_to_job": sum(1 for r in self.recordings if not r.job_knew_sid),
            "jobs": self.jobs,
            "states": dict(self.states),
            "not_terminal": len(self.not_terminal),
            "started_twice": len(self.started_twice),
            "left_live": len(self.left_live),
            "unknown_recordings": len(self.unknown_recordings),
            "deadline_stops": len(self.lateness),
            "lateness_p50_s": round(statistics.median(self.lateness), 3) if self.lateness else None,
            "lateness_p99_s": round(self.percentile(0.99), 3),
            "lateness_max_s": round(self.max_lateness, 3),
        }


def _quantile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


@dataclass(frozen=True)
class RecordingSeen:
    """One recording as the emulator saw it, against its job's deadline."""

    cname: str
    uid: str
    sid: str
    job_id: str | None
    job_state: str | None
    job_knew_sid: bool  # the job holds this sid (False: its start's answer was lost)
    late: float | None  # emulator stop time - the job's stop_at (None: still live)
    exit_reason: str | None

    def line(self) -> str:
        late = "LIVE" if self.late is None else f"{self.late:+7.2f} s"
        knew = "" if self.job_knew_sid else "  (sid unknown to the job)"
        return (
            f"{self.cname:<12} uid={self.uid:<10} {late}  exit={self.exit_reason}  "
            f"job={self.job_state}{knew}"
        )


def check_promises(rt: Runtime, dev: DevApiClient, job_ids: list[str]) -> Verdict:
    """Every job terminal; one recording per job at most; none left live; how late each
    deadline stop reached the service (its ``stoppedAt`` against the job's ``stop_at``)."""
    verdict = Verdict(jobs=len(job_ids))
    jobs = {j.job_id: j for j in rt.store.records(job_ids)}
    by_cname: dict[str, list[dict[str, Any]]] = {}
    for rec in dev.recordings():
        by_cname.setdefault(rec["cname"], []).append(rec)
        if rec["live"]:
            verdict.left_live.append(rec["sid"])
    cnames = {j.cname: j for j in jobs.values()}
    verdict.unknown_recordings = [c for c in by_cname if c not in cnames]
    for cname, recs in by_cname.items():
        owner = cnames.get(cname)
        for rec in recs:
            stopped = epoch(rec["stoppedAt"]) if rec["stoppedAt"] else None
            verdict.recordings.append(
                RecordingSeen(
                    cname=cname,
                    uid=str(rec["uid"]),
                    sid=rec["sid"],
                    job_id=owner.job_id if owner else None,
                    job_state=str(owner.state) if owner else None,
                    job_knew_sid=bool(owner and owner.sid == rec["sid"]),
                    late=None if stopped is None or owner is None else stopped - owner.stop_at,
                    exit_reason=rec.get("exitReason"),
                )
            )
    for job_id in job_ids:
        job = jobs.get(job_id)
        if job is None or not job.terminal:
            verdict.not_terminal.append(job_id)
            continue
        verdict.states[str(job.state)] += 1
        reason = (job.error or {}).get("reason") or job.stop_reason or ""
        verdict.reasons[f"{job.state}: {reason}"] += 1
        if job.state == "failed":
            verdict.failures[job_id] = str((job.error or {}).get("reason"))
        recs = by_cname.get(job.cname, [])
        if len(recs) > 1:
            verdict.started_twice.append(job.cname)
        if recs and job.stop_reason in (None, "deadline") and recs[0]["stoppedAt"]:
            stopped = epoch(recs[0]["stoppedAt"])
            assert stopped is not None
            if stopped >= job.stop_at - 5:  # stopped by its deadline, not by an error path
                verdict.lateness.append(stopped - job.stop_at)
                verdict.stops.append((job.stop_at, stopped - job.stop_at, job.job_id))
    return verdict


def wait_all_terminal(rt: Runtime, job_ids: list[str], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        jobs = rt.store.records(job_ids)
        if len(jobs) == len(job_ids) and all(j.terminal for j in jobs):
            return True
        time.sleep(0.5)
    return False


def injected_faults(
    rate: float, seed: int, *, late_answer: float, window: float = 0.0, after: float = 0.0
) -> dict[str, Any]:
    """The emulator's fault settings for the fault runs: 500/62, 206/65, 429 and an answer
    ``late_answer`` s late (the call took effect; the client gave up first), each at ``rate``
    per call; ``window``: a failover-style 404 window opening ``after`` s from now."""
    return {
        "errors": [
            {"status": 500, "code": 62, "reason": "request timeout", "rate": rate},
            {"status": 206, "code": 65, "reason": "request not completed", "rate": rate},
            {"status": 429, "message": "API rate limit exceeded", "rate": rate},
        ],
        "latency": [{"seconds": late_answer, "when": "after", "rate": rate}],
        "notFoundSeconds": window,
        "notFoundAfter": after,
        "seed": seed,
    }


def empty_channel_spec(
    cname: str, duration: float, *, max_idle: int = 3600, **extra: Any
) -> dict[str, Any]:
    """A job on a channel nobody joins: the emulator composites nothing (cheap), the recorder
    waits out a long maxIdleTime, and the stop answers 435 (the job ends ``empty``)."""
    return {
        "cname": cname,
        "duration": max(1, round(duration)),
        "recordingConfig": {
            "maxIdleTime": max_idle,
            "transcodingConfig": {"width": 160, "height": 120, "fps": 7, "bitrate": 100},
        },
        **extra,
    }
