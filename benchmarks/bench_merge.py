"""How long one merged MP4 takes (worker.merge_media): a recording of ``--minutes`` of media at
360x640, 15 fps, 500 kbps, split as the service splits it (MP4s rolled over every
``--rollover`` seconds, an HA failover with a 30 s gap half way), is joined and verified
``--reps`` times; prints the load average, then the median wall and CPU time of the join and of
the verification, and the media seconds merged per wall second.

    python benchmarks/bench_merge.py                       # 10 min of media, 3 rounds
    python benchmarks/bench_merge.py --minutes 30 --reps 5

The parts are made once, by the emulator's compositor rendering as fast as it can (not timed).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from fractions import Fraction
from pathlib import Path

from emulator.media import CompositeRecorder
from emulator.media.models import AudioSource, MediaConfig, UserSnapshot, VideoSource
from worker.merge import _fetch_parts, segments_of
from worker.merge_media import merge_parts, verify
from worker.merge_storage import LocalStorage

T0 = 1_700_000_000_000
GAP_MS = 30_000


def _render(folder: Path, seconds: float, start_ms: int, prefix: str, rollover: float) -> None:
    config = MediaConfig(
        width=360,
        height=640,
        fps=15,
        bitrate_kbps=500,
        av_file_types=("hls", "mp4"),
        mp4_max_seconds=rollover,
    )
    users = [
        UserSnapshot("1", VideoSource(color="#FF0000"), AudioSource(tone=440)),
        UserSnapshot("2", VideoSource(color="#00FF00"), AudioSource(tone=660)),
    ]
    recorder = CompositeRecorder(
        config, sid="bench", cname="room", out_dir=folder, start_epoch_ms=start_ms,
        name_prefix=prefix,
    )  # fmt: skip
    step = 10.0
    t = 0.0
    while t < seconds:
        t = min(seconds, t + step)
        recorder.advance_to(t, users)
    recorder.finish()


def _cpu() -> float:
    times = os.times()
    return times.user + times.system


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rollover", type=float, default=120.0, help="seconds per MP4")
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    print("load average:", " ".join(f"{x:.2f}" for x in os.getloadavg()))
    half = args.minutes * 30
    with tempfile.TemporaryDirectory(prefix="bench-merge-") as tmp:
        root = Path(tmp)
        store = root / "store"
        _render(store, half, T0, "", args.rollover)
        _render(store, half, T0 + int(half * 1000) + GAP_MS, "bak0_", args.rollover)
        segments = segments_of(LocalStorage(store).names(""), "bench", "room")
        (root / "parts").mkdir()
        parts = _fetch_parts(LocalStorage(store), "", segments, root / "parts")
        size = sum(p.path.stat().st_size for p in parts)
        print(f"{len(parts)} parts, {size / 1e6:.1f} MB, {2 * half:.0f} s of media + 30 s gap")
        joins, checks = [], []
        for rep in range(args.reps):
            out = root / f"merged{rep}.mp4"
            wall, cpu = time.perf_counter(), _cpu()
            span, _ = merge_parts(parts, out)
            joins.append((time.perf_counter() - wall, _cpu() - cpu))
            wall, cpu = time.perf_counter(), _cpu()
            merged = verify(out, Fraction(span), ["audio", "video"])
            checks.append((time.perf_counter() - wall, _cpu() - cpu))
            out.unlink()
        for name, runs in (("join", joins), ("verify", checks)):
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            rounds = ", ".join(f"{r[0]:.2f}" for r in runs)
            print(f"{name:7s} median wall {wall:.2f} s, CPU {cpu:.2f} s (rounds: {rounds})")
        total = statistics.median(j[0] + c[0] for j, c in zip(joins, checks, strict=True))
        print(f"merged {merged.duration:.1f} s of file: {merged.duration / total:.0f}x real time")


if __name__ == "__main__":
    main()
