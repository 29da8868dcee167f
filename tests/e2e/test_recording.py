"""Tier 3: whole recordings through Redis, the Celery worker, the dispatcher and the emulator,
with the output decoded and checked (what is on screen where, which tones are heard)."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tasks.recording import request_stop, submit_and_start
from tests.support.mediacheck import (
    TS_NAME,
    close_to,
    color_at,
    frame_at,
    playlist_entries,
    probe,
    tone_levels,
)
from tests.support.status import STATUS_KEYS
from tests.support.waiting import wait_for
from worker.celery_app import app
from worker.errors import JobSpecError
from worker.store import JobRecord

# A start_at a day ahead: later than any test runs, well within CLOUDREC_MAX_START_AHEAD.
TOMORROW = datetime.fromtimestamp(time.time() + 86400, UTC).isoformat()

pytestmark = pytest.mark.e2e

USERS = [("11", "#FF0000", 440.0), ("12", "#00FF00", 660.0), ("13", "#0000FF", 1000.0)]


def _join_all(stack, cname: str) -> None:
    for uid, color, tone in USERS:
        stack.dev.join(cname, uid, video={"color": color}, audio={"tone": tone})


def _wait_terminal(stack, job_id: str, timeout: float = 60.0) -> JobRecord:
    def probe_job():
        job = stack.runtime.store.get(job_id)
        return job if job.terminal else None

    return wait_for(probe_job, timeout, 0.2, f"job {job_id} to end")


def _emulator_recording(stack, sid: str) -> dict:
    found = [r for r in stack.dev.recordings() if r["sid"] == sid]
    assert len(found) == 1, f"expected exactly one recording {sid} at the emulator: {found}"
    return found[0]


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _spec(cname: str, **overrides) -> dict:
    spec = {
        "cname": cname,
        "duration": 6,
        "recordingConfig": {
            "maxIdleTime": 30,
            "transcodingConfig": {
                "width": 320,
                "height": 240,
                "fps": 15,
                "bitrate": 400,
                "mixedVideoLayout": 1,
                "backgroundColor": "#000000",
            },
        },
        "recordingFileConfig": {"avFileType": ["hls", "mp4"]},
        "fileNamePrefix": ["e2e", "run1"],
    }
    spec.update(overrides)
    return spec


def test_recording_stopped_by_its_deadline_has_everyone_on_screen_and_in_the_audio(stack):
    _join_all(stack, "class42")
    job, created = submit_and_start(stack.runtime, _spec("class42"))
    assert created
    job = _wait_terminal(stack, job.job_id)

    assert job.state == "completed", job.error
    assert [h.state for h in job.history] == [
        "acquiring",
        "starting",
        "recording",
        "stopping",
        "completed",
    ]
    assert job.sid and job.resource_id
    names = {f.fileName for f in job.files}
    assert f"{job.sid}_class42.m3u8" in names
    assert f"{job.sid}_class42_0.mp4" in names
    assert all(f.key == f"e2e/run1/{f.fileName}" for f in job.files)
    assert job.uploading_status == "uploaded"

    emulated = _emulator_recording(stack, job.sid)
    assert not emulated["live"]
    stopped_at = _epoch(emulated["stoppedAt"])
    assert abs(stopped_at - job.stop_at) < 3.0, "the stop was not on time"
    recorded_span = stopped_at - _epoch(emulated["startedAt"])

    folder = stack.storage_dir / "recordings" / "e2e" / "run1"
    mp4 = folder / f"{job.sid}_class42_0.mp4"
    facts = probe(mp4)
    assert (facts.width, facts.height) == (320, 240)
    assert facts.video_codec == "h264" and facts.audio_codec == "aac"
    assert facts.fps == pytest.approx(15, abs=0.5)
    assert facts.duration == pytest.approx(recorded_span, abs=1.0)

    # Best fit with three users: a 2x2 grid, filled in join order.
    frame = frame_at(mp4, facts.duration / 2)
    assert close_to(color_at(frame, 0.25, 0.25), "#FF0000")
    assert close_to(color_at(frame, 0.75, 0.25), "#00FF00")
    assert close_to(color_at(frame, 0.25, 0.75), "#0000FF")
    assert close_to(color_at(frame, 0.75, 0.75), "#000000")  # the empty cell: background

    levels = tone_levels(mp4, [440.0, 660.0, 1000.0, 1500.0])
    assert min(levels[440.0], levels[660.0], levels[1000.0]) > 0.3, levels
    assert levels[1500.0] < 0.05, levels

    playlist = folder / f"{job.sid}_class42.m3u8"
    entries, text = playlist_entries(playlist)
    assert text.rstrip().endswith("#EXT-X-ENDLIST")
    assert len(entries) >= 2  # 2 s slices in the test emulator
    for _, uri in entries:
        match = TS_NAME.match(uri)
        assert match and match["sid"] == job.sid and match["cname"] == "class42", uri
        assert (folder / uri).exists()
    assert sum(seconds for seconds, _ in entries) == pytest.approx(recorded_span, abs=1.0)
    ts_facts = probe(folder / entries[0][1])
    assert ts_facts.video_codec == "h264" and ts_facts.audio_codec == "aac"


def test_floating_layout_puts_the_first_user_full_screen_and_others_bottom_left(stack):
    _join_all(stack, "float1")
    spec = _spec("float1", duration=4, fileNamePrefix=None)
    spec["recordingConfig"]["transcodingConfig"]["mixedVideoLayout"] = 0
    job, _ = submit_and_start(stack.runtime, spec)
    job = _wait_terminal(stack, job.job_id)
    assert job.state == "completed", job.error
    mp4 = stack.storage_dir / "recordings" / f"{job.sid}_float1_0.mp4"
    frame = frame_at(mp4, 1.5)
    assert close_to(color_at(frame, 0.5, 0.3), "#FF0000")  # first user: the whole canvas
    # Tiles of 23.5 % with 1.2 % margins, from the bottom-left, left to right.
    assert close_to(color_at(frame, 0.012 + 0.1175, 1 - 0.012 - 0.1175, 0.03), "#00FF00")
    assert close_to(
        color_at(frame, 0.012 * 2 + 0.235 + 0.1175, 1 - 0.012 - 0.1175, 0.03), "#0000FF"
    )


def test_submit_over_the_broker_returns_the_job_id(stack):
    _join_all(stack, "viatask")
    result = app.send_task("recording.submit", args=[_spec("viatask", duration=3)])
    job_id = result.get(timeout=20)
    job = _wait_terminal(stack, job_id)
    assert job.state == "completed", job.error
    # The same job id again is the same job, never a second recording.
    again = app.send_task("recording.submit", args=[_spec("viatask", job_id=job_id)])
    assert again.get(timeout=20) == job_id
    assert len([r for r in stack.dev.recordings() if r["cname"] == "viatask"]) == 1


@pytest.mark.parametrize(
    ("bad", "fragment"),
    [
        ({"recordingConfig": {"maxIdleTime": 1}}, "recordingConfig.maxIdleTime"),
        ({"recordingConfig": {"transcodingConfig": {"mixedVideoLayout": 9}}}, "mixedVideoLayout"),
        ({"cname": None}, "cname"),
        ({"recordingFileConfig": {"avFileType": ["mp4"]}}, "recordingFileConfig.avFileType"),
    ],
)
def test_an_invalid_spec_is_refused_and_leaves_nothing_behind(stack, redis_client, bad, fragment):
    spec = _spec("bad") | bad
    if spec["cname"] is None:
        del spec["cname"]
    with pytest.raises(JobSpecError) as info:
        submit_and_start(stack.runtime, spec)
    assert fragment in str(info.value)
    # Through the broker too: the caller gets the same message.
    with pytest.raises(Exception, match=fragment.split(".")[-1]):
        app.send_task("recording.submit", args=[spec]).get(timeout=20)
    assert [k for k in redis_client.keys("cloudrec:job*")] == []
    assert redis_client.zcard("cloudrec:due") == 0
    assert stack.dev.recordings() == []


def test_nobody_published_ends_empty(stack):
    job, _ = submit_and_start(stack.runtime, _spec("nobody", duration=3))
    job = _wait_terminal(stack, job.job_id)
    assert job.state == "empty"
    assert job.files == []


def test_recorder_that_left_by_itself_ends_idle_exit(stack):
    stack.dev.join("idle", "21", video={"color": "#FFFFFF"}, audio={"tone": 500})
    spec = _spec("idle", duration=14)
    spec["recordingConfig"]["maxIdleTime"] = 5
    job, _ = submit_and_start(stack.runtime, spec)
    wait_for(lambda: stack.runtime.store.get(job.job_id).state == "recording", 30)
    stack.dev.leave("idle", "21")
    job = _wait_terminal(stack, job.job_id, timeout=40)
    assert job.state == "idle_exit", job
    emulated = _emulator_recording(stack, job.sid)
    assert _epoch(emulated["stoppedAt"]) < job.stop_at - 3  # it left before our deadline


def test_stop_now_ends_completed_before_the_deadline(stack):
    _join_all(stack, "early")
    job, _ = submit_and_start(stack.runtime, _spec("early", duration=120))
    wait_for(lambda: stack.runtime.store.get(job.job_id).state == "recording", 30)
    time.sleep(1.5)  # record a little
    request_stop(stack.runtime, job.job_id, "stop")
    job = _wait_terminal(stack, job.job_id)
    assert job.state == "completed" and job.stop_reason == "stop"
    assert _epoch(_emulator_recording(stack, job.sid)["stoppedAt"]) < job.stop_at - 60


def test_cancel_before_start_sends_nothing(stack):
    spec = _spec("later", start_at=TOMORROW, duration=60)
    job, _ = submit_and_start(stack.runtime, spec)
    assert job.state == "queued"
    request_stop(stack.runtime, job.job_id, "cancel")
    job = stack.runtime.store.get(job.job_id)
    assert job.state == "cancelled"
    assert job.resource_id is None and job.sid is None
    assert stack.dev.recordings() == []


def test_status_json_shape(stack):
    _join_all(stack, "shape")
    job, _ = submit_and_start(stack.runtime, _spec("shape", duration=3))
    job = _wait_terminal(stack, job.job_id)
    out = json.loads(json.dumps(job.status_json()))
    assert set(out) >= STATUS_KEYS
    assert out["files"][0].keys() == {"fileName", "key"}
    assert Path(out["files"][0]["key"]).parts[:2] == ("e2e", "run1")
