"""A Redis Sentinel failover during a batch of jobs: what a deployment loses (nothing it
acknowledged) and how late its stops come (issue 12.1).

What runs, each in its own process (scenario: ``tests/support/failover.py``): one Redis master,
one replica, three sentinels (``down-after-milliseconds 1000``, quorum 2); the emulator;
``cloudrec worker`` (threads, 4) and ``cloudrec beat``, configured only through
``CLOUDREC_REDIS_SENTINELS`` / ``CLOUDREC_REDIS_MASTER`` in real-service mode
(``CLOUDREC_DEV_API=false``), submits acknowledged only once the replica holds them (WAIT, the
default with sentinels). A plain Celery app submits ``--jobs`` jobs through the intake, one
after another, each again with its ``job_id`` until acknowledged. Once ``--kill-after`` are
acknowledged, the master is SIGKILLed; when the sentinels have promoted the replica, the dead
node is started again, empty, as its replica.

Printed per run: the failover's timings (promotion, the old node back), jobs acknowledged and
stored on the new master, refused submits by cause, end states, recordings left live or started
twice, and the stop lateness (the emulator's ``stoppedAt`` minus the job's ``stop_at``), for
every deadline stop and for those due during the failover; with ``--runs`` > 1, the medians.

Run: ``.venv/bin/python benchmarks/sentinel_failover.py [--runs 3]`` (about a minute a run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.support.failover import Plan, Report, run_failover


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=40)
    parser.add_argument("--kill-after", type=int, default=15, help="acknowledged jobs")
    parser.add_argument("--pace", type=float, default=0.2, help="seconds between submits")
    parser.add_argument("--runs", type=int, default=1)
    return parser.parse_args()


def worst(values: list[float]) -> float:
    return max(values, default=0.0)


def main() -> int:
    args = parse_args()
    plan = Plan(jobs=args.jobs, kill_after=args.kill_after, pace=args.pace)
    reports: list[Report] = []
    failed = False
    for run in range(args.runs):
        report = run_failover(Path(tempfile.mkdtemp(prefix="cloudrec-failover-")), plan)
        reports.append(report)
        print(f"-- run {run + 1}")
        for line in report.lines():
            print("  " + line)
        v = report.verdict
        failed |= bool(
            v.not_terminal
            or v.left_live
            or v.started_twice
            or report.stored_on_new_master != len(report.acked)
        )
    if args.runs > 1:
        print("-- medians over the runs")
        print(f"  promotion: {statistics.median(r.promoted_after for r in reports):.2f} s")
        during = [worst(r.during_failover()) for r in reports]
        every = [r.verdict.max_lateness for r in reports]
        print(
            f"  max stop lateness, deadlines during the failover: {statistics.median(during):.3f} s"
        )
        print(f"  max stop lateness, every deadline: {statistics.median(every):.3f} s")
    print("RESULT:", "a promise broken" if failed else "every promise held")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
