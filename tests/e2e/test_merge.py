"""Tier 3: one merged MP4 per job (worker.merge), from real recordings of the emulator with real
HA failovers (bak<n>_ files) and MP4 rollovers (``mp4_max_seconds``, ``cloudrec emulator
--mp4-rollover``), through the real worker, in real-service mode (the worker uses no dev API;
the test drives the emulator's channel and failover as the world would). The merged file is
decoded: duration, both streams, the held picture and silence in the gap, the tones where they
were recorded, monotonic timestamps."""

from __future__ import annotations

import json
import re
import time
from dataclasses import replace
from datetime import UTC, datetime
from itertools import pairwise
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest

from config.settings import StorageProfile
from tasks.recording import submit_and_start
from tests.support.emulator import PROCESS_EMULATOR, serving
from tests.support.mediadecode import close_to, decode_audio, decode_video, tone_levels
from tests.support.waiting import wait_for
from worker.celery_app import app, runtime
from worker.store import JobRecord

pytestmark = pytest.mark.e2e

FPS = 15
FRAME = 1 / FPS
ROLLOVER = 4.0  # seconds per MP4: two of PROCESS_EMULATOR's 2 s slices
GREEN, RED = (0, 255, 0), (255, 0, 0)
BEFORE, AFTER = 440.0, 880.0
CALLBACK_KEY = "test:merge-callbacks"
_STAMP = re.compile(r"_(\d{17})\.ts$")


@app.task(name="tests.e2e.on_merged_recording")
def on_merged_recording(job_id: str, summary: dict[str, Any]) -> None:
    """A caller's callback task: keeps what it was sent, and when."""
    runtime().redis.rpush(CALLBACK_KEY, json.dumps([job_id, summary, time.time()]))


@pytest.fixture
def emulator_server(tmp_path: Path):
    config = replace(PROCESS_EMULATOR, storage_dir=tmp_path / "storage", mp4_max_seconds=ROLLOVER)
    with serving(config) as server:
        yield server


@pytest.fixture
def stack_settings(tmp_path: Path) -> dict[str, Any]:
    local = StorageProfile(bucket="recordings", local_dir=str(tmp_path / "storage"))
    # A profile whose directory holds nothing: the recording goes to the emulator's storage as
    # ever (its directory is the emulator's), the merge finds no file there.
    elsewhere = StorageProfile(bucket="recordings", local_dir=str(tmp_path / "elsewhere"))
    return {"dev_api": False, "storage": {"default": local, "elsewhere": elsewhere}}


def _spec(cname: str, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "cname": cname,
        "duration": 15,
        "merge": True,
        "recordingConfig": {
            "maxIdleTime": 30,
            "transcodingConfig": {
                "width": 160,
                "height": 120,
                "fps": FPS,
                "bitrate": 200,
                "mixedVideoLayout": 1,
            },
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "fileNamePrefix": ["merge", cname],
    }
    spec.update(overrides)
    return spec


def _job(stack, job_id: str) -> JobRecord:
    return stack.runtime.store.get(job_id)


def _wait(stack, job_id: str, check, timeout: float, what: str) -> JobRecord:
    def probe() -> JobRecord | None:
        job = _job(stack, job_id)
        return job if check(job) else None

    return wait_for(probe, timeout, 0.2, what)


def _epoch(stamp: str) -> float:
    moment = datetime.strptime(stamp[:14], "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return moment.timestamp() + int(stamp[14:]) / 1000


def _segment_span(playlist: Path) -> tuple[float, float]:
    """A segment's wall-clock [start, end) from its playlist: slice names and lengths."""
    lines = playlist.read_text().splitlines()
    slices = [
        (float(lines[i - 1].split(":")[1].rstrip(",")), line)
        for i, line in enumerate(lines)
        if line.endswith(".ts")
    ]
    first = _epoch(_STAMP.search(slices[0][1]).group(1))
    last = _epoch(_STAMP.search(slices[-1][1]).group(1))
    return first, last + slices[-1][0]


def _monotonic(path: Path) -> dict[str, int]:
    """Packets per stream; fails unless every stream's decode times strictly increase."""
    counts: dict[str, int] = {}
    with av.open(str(path)) as container:
        for stream in container.streams:
            last = None
            for packet in container.demux(stream):
                if packet.dts is None:
                    continue
                assert last is None or packet.dts > last, (stream.type, last, packet.dts)
                last = packet.dts
                counts[stream.type] = counts.get(stream.type, 0) + 1
            container.seek(0)
    return counts


def _rgb(frame: np.ndarray) -> tuple[int, int, int]:
    h, w, _ = frame.shape
    patch = frame[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4].reshape(-1, 3)
    median = np.median(patch, axis=0)
    return int(median[0]), int(median[1]), int(median[2])


def test_failovers_and_rollovers_merge_into_one_wall_clock_file(stack, redis_client):
    stack.dev.join("mroom", "1", video={"color": "#00FF00"}, audio={"tone": BEFORE})
    spec = _spec("mroom", duration=20, callback={"task": "tests.e2e.on_merged_recording"})
    job, _ = submit_and_start(stack.runtime, spec)
    job = _wait(stack, job.job_id, lambda j: j.sid, 30, "the recording's sid")
    folder = stack.storage_dir / "recordings" / "merge" / "mroom"
    base = f"{job.sid}_mroom"
    # The first MP4 rolled over: the original segment has two files before the failover.
    wait_for(lambda: (folder / f"{base}_0.mp4").exists(), 30, 0.2, "the first MP4 to roll over")
    time.sleep(1.0)  # some media in the second MP4

    # HA failover: 3 s with nothing recorded; meanwhile the channel changes (red, 880 Hz).
    stack.dev.failover(job.sid, 3.0)
    stack.dev.leave("mroom", "1")
    stack.dev.join("mroom", "2", video={"color": "#FF0000"}, audio={"tone": AFTER})
    wait_for(lambda: (folder / f"bak0_{base}.m3u8").exists(), 30, 0.2, "bak0_'s first slice")
    time.sleep(1.0)
    # A second one, as fault injection makes it: the 404 window of every live task.
    stack.dev.set_faults({"notFoundSeconds": 2.0, "failover": True})

    job = _wait(stack, job.job_id, lambda j: j.terminal, 60, "the job to end")
    assert job.state == "completed", job.error
    job = _wait(stack, job.job_id, lambda j: j.merged, 120, "the merge")
    merged = job.merged
    assert "error" not in merged, merged

    # The parts really are split: a rollover in the original segment, two bak segments.
    names = sorted(p.name for p in folder.iterdir())
    assert f"{base}_0.mp4" in names and f"{base}_1.mp4" in names, names
    for prefix in ("bak0_", "bak1_"):
        assert f"{prefix}{base}.m3u8" in names and f"{prefix}{base}_0.mp4" in names, names
    parts = [n for n in names if n.endswith(".mp4") and job.sid in n]
    assert merged["parts"] == len(parts) >= 4

    # Written beside them, as recorded on the job.
    out = folder / f"{job.job_id}.mp4"
    assert merged["key"] == f"merge/mroom/{job.job_id}.mp4"
    assert out.stat().st_size == merged["size"]

    # The wall clock: from the original segment's start to bak1's end; a gap between segments
    # as long as each failover recorded nothing.
    spans = [_segment_span(folder / f"{p}{base}.m3u8") for p in ("", "bak0_", "bak1_")]
    start, end = spans[0][0], spans[-1][1]
    expected_gaps = [(a[1] - start, b[0] - start) for a, b in pairwise(spans)]
    assert expected_gaps[0][1] - expected_gaps[0][0] >= 3.0 - 0.05
    # The faults' window fails tasks over at the emulator's next tick, for what is left of it.
    assert expected_gaps[1][1] - expected_gaps[1][0] >= 1.0
    span = end - start
    video = decode_video(out)
    audio = decode_audio(out)
    assert abs(merged["duration"] - span) <= FRAME + 0.01, (merged, span)
    assert abs(video.duration - span) <= FRAME + 0.01, (video.duration, span)
    assert abs(audio.duration - span) <= FRAME + 0.01, (audio.duration, span)
    assert len(merged["gaps"]) == 2, merged["gaps"]
    for (gap_from, gap_to), (want_from, want_to) in zip(merged["gaps"], expected_gaps, strict=True):
        assert abs(gap_from - want_from) <= FRAME + 0.01, (merged["gaps"], expected_gaps)
        assert abs(gap_to - want_to) <= FRAME + 0.01, (merged["gaps"], expected_gaps)

    # Timestamps monotonic, both streams there.
    counts = _monotonic(out)
    assert counts["video"] > 0 and counts["audio"] > 0

    rate = audio.sample_rate

    def window(a: float, b: float) -> np.ndarray:
        return audio.samples[:, int(a * rate) : int(b * rate)]

    # Picture: no frame made up in a gap, the last one held; sound: silence in a gap.
    for (gap_from, gap_to), colour in zip(merged["gaps"], (GREEN, RED), strict=True):
        inside = [t for t in video.times if gap_from + FRAME / 2 < t < gap_to - 0.01]
        assert inside == [], inside
        assert close_to(_rgb(video.frame_at(gap_from - 0.3)), colour)
        assert close_to(_rgb(video.frame_at((gap_from + gap_to) / 2)), colour)  # held
        assert float(np.abs(window(gap_from + 0.1, gap_to - 0.1)).max()) < 1e-3
    # Green and 440 Hz before the first failover; red and 880 Hz after it, on both sides of the
    # second one.
    (first_from, first_to), (second_from, second_to) = merged["gaps"]
    assert close_to(_rgb(video.frame_at(first_to + 0.3)), RED)
    assert close_to(_rgb(video.frame_at(second_to + 0.3)), RED)
    for a, b, heard, silent in (
        (0.3, first_from - 0.2, BEFORE, AFTER),
        (first_to + 0.2, second_from - 0.2, AFTER, BEFORE),
        (second_to + 0.2, span - 0.3, AFTER, BEFORE),
    ):
        levels = tone_levels(window(a, b), rate, [heard, silent])
        assert levels[heard] > 0.9 and levels[silent] < 0.1, (a, b, levels)

    # The callback came after the merge and carries it.
    raw = wait_for(lambda: redis_client.lrange(CALLBACK_KEY, 0, -1), 15, 0.1, "the callback")
    [(job_id, summary, _)] = [json.loads(r) for r in raw]
    assert job_id == job.job_id and summary["merged"] == merged
    assert summary["state"] == "completed"


def test_a_failed_merge_is_recorded_and_the_job_stays_completed(stack, redis_client):
    stack.dev.join("mfail", "1", video={"color": "#00FF00"}, audio={"tone": BEFORE})
    spec = _spec(
        "mfail",
        duration=4,
        storage="elsewhere",
        callback={"task": "tests.e2e.on_merged_recording"},
    )
    job, _ = submit_and_start(stack.runtime, spec)
    job = _wait(stack, job.job_id, lambda j: j.merged, 60, "the merge's outcome")
    assert job.state == "completed"
    assert "no file of recording" in job.merged["error"], job.merged
    assert job.status_json()["merged"] == job.merged
    raw = wait_for(lambda: redis_client.lrange(CALLBACK_KEY, 0, -1), 15, 0.1, "the callback")
    [(_, summary, _)] = [json.loads(r) for r in raw]
    assert summary["state"] == "completed" and summary["merged"]["error"] == job.merged["error"]


def test_without_merge_nothing_is_merged(stack):
    stack.dev.join("mnone", "1", video={"color": "#00FF00"}, audio={"tone": BEFORE})
    job, _ = submit_and_start(stack.runtime, _spec("mnone", duration=3, merge=False))
    job = _wait(stack, job.job_id, lambda j: j.terminal, 30, "the job to end")
    assert job.state == "completed" and not job.merge
    assert stack.runtime.store.due_at("merge", job.job_id) is None
    assert job.merged is None and job.status_json()["merged"] is None
