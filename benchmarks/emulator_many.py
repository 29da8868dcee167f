"""The emulator holding many live recordings in empty channels (what ``scale.py`` asks of it):
what a start costs, how many threads they hold, and what a housekeeping tick costs.

In one process, the emulator's service without HTTP: N acquire + start pairs, each in a channel
of its own that nobody joins, then housekeeping ticks (every 0.2 s when served; the lock every
REST call takes is held for a tick's whole length).

Figures printed: acquire + start per pair (mean over the N), the process's threads after the N
starts, the first tick (it looks at every new recording once) and the median of five more.

Run: ``.venv/bin/python benchmarks/emulator_many.py --recordings 100000`` (about a minute).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from emulator import EmulatorConfig
from emulator.service import RecordingService
from tests.support.emulator import start_request


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=10_000)
    args = parser.parse_args()
    config = EmulatorConfig(port=0, qps=0, storage_dir=Path(tempfile.mkdtemp()))
    service = RecordingService(config)
    client_request = start_request(max_idle=3600)
    threads_before = threading.active_count()
    began = time.perf_counter()
    for i in range(args.recordings):
        cname = f"room{i}"
        _, acquired = service.acquire("app", {"cname": cname, "uid": "9", "clientRequest": {}})
        body = {"cname": cname, "uid": "9", "clientRequest": client_request}
        status, _ = service.start("app", acquired["resourceId"], "mix", body)
        assert status == 200
    starts = time.perf_counter() - began
    ticks = []
    for _ in range(6):
        began = time.perf_counter()
        service.tick()
        ticks.append(time.perf_counter() - began)
    figures = {
        "recordings": args.recordings,
        "acquire_and_start_ms_each": round(starts / args.recordings * 1000, 3),
        "threads_before_and_after": [threads_before, threading.active_count()],
        "first_tick_ms": round(ticks[0] * 1000, 2),
        "tick_ms_median_of_5": round(statistics.median(ticks[1:]) * 1000, 3),
    }
    service.close(timeout=5)
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
