"""Do the emulator's live recordings pay for having one driver thread each?

    python benchmarks/live_threads.py [--recordings 20] [--seconds 10] [--rounds 2]

The emulator advances every live recording on its own thread (emulator/driver.py), the
encoders on that thread too, so N recordings are N threads sharing one interpreter lock. A
suspected cause of the lag bursts of `emulator_load.py` was a lock convoy: many runnable
threads, each frame handing the lock over several times (x264, AAC, two muxers). This drives
N live-style `CompositeRecorder`s (4 users, 640x360, 15 fps, 500 kbps, HLS + MP4, encoding on
the driving thread) through `--seconds` of media in 0.2 s steps, as fast as they go, two ways,
alternating the order each round:

- "thread each": N threads, each advancing its recorder, as the emulator does;
- "2 at a time": the same N threads, but at most 2 advancing at once (a first-come,
  first-served turn), the others blocked in the kernel instead of on the interpreter lock.

It prints, per run, the wall time, the process's CPU time per second of recording (as a share
of one core: what a live recording costs), and the context switches. If the convoy cost CPU,
"thread each" would need more CPU per recording-second. The load average is printed with
each run: on a shared machine the wall times mostly say how much of the CPU the process got.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

from emulator.media.access import MediaDirs
from emulator.media.api_config import media_config_from_api
from emulator.media.models import AudioSource, UserSnapshot, VideoSource
from emulator.media.recorder import CompositeRecorder

USERS = [("#FF0000", 440), ("#00FF00", 660), ("#0000FF", 880), ("#FFFF00", 1100)]
TICK = 0.2  # the emulator's tick_seconds


class Turns:
    """At most `slots` holders, first come first served (a release hands its slot over)."""

    def __init__(self, slots: int) -> None:
        self._lock = threading.Lock()
        self._free = slots
        self._waiting: deque[threading.Lock] = deque()

    def __enter__(self) -> None:
        with self._lock:
            if self._free:
                self._free -= 1
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        turn.acquire()

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            if self._waiting:
                self._waiting.popleft().release()
            else:
                self._free += 1


def _recorder(out: Path, index: int) -> CompositeRecorder:
    config = media_config_from_api(
        {
            "streamTypes": 2,
            "audioProfile": 0,
            "transcodingConfig": {
                "width": 640,
                "height": 360,
                "fps": 15,
                "bitrate": 500,
                "mixedVideoLayout": 1,
            },
        },
        {"avFileType": ["hls", "mp4"]},
    )
    return CompositeRecorder(
        config,
        sid=f"live{index}",
        cname=f"c{index}",
        out_dir=out / str(index),
        start_epoch_ms=0,
        media=MediaDirs(),
        encoder_threads=False,  # as the emulator's live recordings
    )


def run(recordings: int, seconds: float, slots: int | None) -> dict[str, float]:
    users = [
        UserSnapshot(str(i), VideoSource(color=colour), AudioSource(tone=tone))
        for i, (colour, tone) in enumerate(USERS, start=1)
    ]
    with tempfile.TemporaryDirectory(prefix="live_threads_") as scratch:
        recorders = [_recorder(Path(scratch), i) for i in range(recordings)]
        turns = Turns(slots) if slots else None

        def drive(recorder: CompositeRecorder) -> None:
            step = 0
            while step * TICK < seconds:
                step += 1
                if turns is None:
                    recorder.advance_to(step * TICK, users)
                else:
                    with turns:
                        recorder.advance_to(step * TICK, users)

        threads = [threading.Thread(target=drive, args=(r,)) for r in recorders]
        before, started = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        for recorder in recorders:
            recorder.finish()
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return {
        "wall": wall,
        "cpu": cpu,
        "share": cpu / (recordings * seconds),
        "voluntary": after.ru_nvcsw - before.ru_nvcsw,
        "involuntary": after.ru_nivcsw - before.ru_nivcsw,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recordings", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=10.0, help="media time per recording")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs; {args.recordings} recordings x {args.seconds:g} s of media")
    for round_ in range(args.rounds):
        order: list[int | None] = [None, 2] if round_ % 2 == 0 else [2, None]
        for slots in order:
            load = os.getloadavg()[0]
            result = run(args.recordings, args.seconds, slots)
            name = "thread each" if slots is None else f"{slots} at a time"
            print(
                f"{name:12s} wall {result['wall']:7.2f} s  CPU {result['cpu']:6.2f} s "
                f"({result['share'] * 100:.2f}% of a core per recording-second)  context "
                f"switches {result['voluntary']:.0f} voluntary, {result['involuntary']:.0f} "
                f"involuntary  load avg {load:.1f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
