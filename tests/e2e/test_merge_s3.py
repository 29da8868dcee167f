"""Tier 3: the merge against S3-compatible storage (vendor 11) on a real S3-protocol server
(moto in server mode, IAM authentication on): the emulator uploads the recording there, rolled
over and failed over; the worker lists, fetches and puts back the merged MP4 with the storage
profile's own keys, in real-service mode. A wrong key is refused and recorded, not fatal."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import pytest

from config.settings import StorageProfile
from tasks.recording import submit_and_start
from tests.support.emulator import PROCESS_EMULATOR, serving
from tests.support.s3 import BUCKET, S3Server, s3_server
from tests.support.waiting import wait_for
from worker.store import JobRecord

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server("merger") as server:
        yield server


@pytest.fixture
def emulator_server(tmp_path: Path):
    config = replace(PROCESS_EMULATOR, storage_dir=tmp_path / "storage", mp4_max_seconds=4.0)
    with serving(config) as server:
        yield server


@pytest.fixture
def stack_settings(s3: S3Server) -> dict[str, Any]:
    def profile(secret: str) -> StorageProfile:
        return StorageProfile(
            vendor=11,
            bucket=BUCKET,
            endpoint=s3.endpoint,
            access_key=s3.access_key,
            secret_key=secret,
        )

    return {
        "dev_api": False,
        "storage": {"default": profile(s3.secret_key), "wrongkey": profile("not-the-key")},
    }


def _wait_job(stack, job_id: str, check, timeout: float, what: str) -> JobRecord:
    def probe() -> JobRecord | None:
        job = stack.runtime.store.get(job_id)
        return job if check(job) else None

    return wait_for(probe, timeout, 0.2, what)


def _spec(cname: str, **overrides: Any) -> dict[str, Any]:
    spec = {
        "cname": cname,
        "duration": 12,
        "merge": True,
        "recordingConfig": {
            "maxIdleTime": 30,
            "transcodingConfig": {"width": 160, "height": 120, "fps": 15, "bitrate": 200},
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "fileNamePrefix": ["s3merge", cname],
    }
    spec.update(overrides)
    return spec


def test_a_recording_in_s3_is_merged_there_with_the_profiles_keys(stack, s3, tmp_path):
    stack.dev.join("s3room", "1", video={"color": "#00FF00"}, audio={"tone": 440})
    job, _ = submit_and_start(stack.runtime, _spec("s3room"))
    job = _wait_job(stack, job.job_id, lambda j: j.sid, 30, "the sid")
    first_mp4 = f"s3merge/s3room/{job.sid}_s3room_0.mp4"
    wait_for(lambda: first_mp4 in s3.object_keys(), 30, 0.3, "the first MP4 to roll over into S3")
    time.sleep(1.0)
    stack.dev.failover(job.sid, 2.0)
    job = _wait_job(stack, job.job_id, lambda j: j.merged, 120, "the merge")
    assert job.state == "completed"
    merged = job.merged
    assert "error" not in merged, merged
    assert merged["key"] == f"s3merge/s3room/{job.job_id}.mp4"
    keys = s3.object_keys()
    assert merged["key"] in keys and f"s3merge/s3room/bak0_{job.sid}_s3room_0.mp4" in keys
    assert f"s3merge/s3room/{job.sid}_s3room_1.mp4" in keys  # rolled over
    assert merged["parts"] >= 3 and len(merged["gaps"]) == 1
    [[gap_from, gap_to]] = merged["gaps"]
    assert gap_to - gap_from >= 2.0 - 0.05

    local = tmp_path / "merged.mp4"
    local.write_bytes(s3.client().get_object(Bucket=BUCKET, Key=merged["key"])["Body"].read())
    assert local.stat().st_size == merged["size"]
    with av.open(str(local)) as container:
        assert {s.type for s in container.streams} == {"audio", "video"}
        assert abs(float(container.duration or 0) / av.time_base - merged["duration"]) < 0.1


def test_a_key_the_storage_refuses_is_recorded_as_the_merges_error(stack, s3):
    stack.dev.join("s3bad", "1", video={"color": "#00FF00"}, audio={"tone": 440})
    # A profile with a key the storage refuses: the service keeps the files in its backup
    # area, and the merge (with the same profile) is refused at its first request.
    job, _ = submit_and_start(stack.runtime, _spec("s3bad", duration=4, storage="wrongkey"))
    job = _wait_job(stack, job.job_id, lambda j: j.merged, 60, "the merge's outcome")
    assert job.state == "completed"
    error = job.merged["error"]
    assert "listing 's3merge/s3bad/' in bucket 'recordings' failed" in error, error
    assert "not-the-key" not in json.dumps(job.status_json())
