"""Tier 1: when a job merges (the spec's ``merge``, CLOUDREC_MERGE_DEFAULT, ``--merge``), the
due ``merge:<id>`` entry its end makes, the merge step's bookkeeping on a real Redis (an outcome
or an error recorded, the job's state untouched, the callback made due), and the callback that
waits for the merge."""

from __future__ import annotations

import time
from typing import Any

import pytest

from config.settings import StorageProfile
from tests.support.stack import make_settings
from worker import recording
from worker.callbacks import run_callbacks
from worker.cli.recordings import build_spec
from worker.errors import JobSpecError
from worker.merge import callback_wait, merge_step
from worker.metrics import MERGES, read_counters
from worker.runtime import Runtime
from worker.states import JobState

S = JobState


@pytest.fixture
def rt_default_merge(redis_url: str, emulator, tmp_path) -> Any:
    profile = StorageProfile(local_dir=str(tmp_path / "empty"))
    settings = make_settings(
        redis_url, emulator.base_url, merge_default=True, storage={"default": profile}
    )
    runtime = Runtime.build(settings)
    yield runtime
    runtime.close()


def _ended(rt: Runtime, target: JobState, **spec: Any) -> str:
    job, _ = recording.submit(rt, {"cname": "m", "duration": 30, **spec})
    for source, step in ((S.QUEUED, S.ACQUIRING), (S.ACQUIRING, S.STARTING)):
        rt.store.transition(job.job_id, {source}, step)
    rt.store.transition(job.job_id, {S.STARTING}, S.RECORDING, sid="sid1")
    last = S.STOPPING if target in (S.COMPLETED, S.FAILED) else S.RECORDING
    if last == S.STOPPING:
        rt.store.transition(job.job_id, {S.RECORDING}, S.STOPPING, stop_sent_at=time.time())
    rt.store.transition(job.job_id, {last}, target)
    return job.job_id


def test_merge_is_opt_in_per_job_or_by_default(rt, rt_default_merge):
    plain, _ = recording.submit(rt, {"cname": "m"})
    asked, _ = recording.submit(rt, {"cname": "m", "merge": True})
    defaulted, _ = recording.submit(rt_default_merge, {"cname": "m"})
    declined, _ = recording.submit(rt_default_merge, {"cname": "m", "merge": False})
    assert [plain.merge, asked.merge, defaulted.merge, declined.merge] == [
        False,
        True,
        True,
        False,
    ]
    with pytest.raises(JobSpecError, match="merge"):
        recording.submit(rt, {"cname": "m", "merge": "please"})
    assert build_spec("m", merge=True)["merge"] is True
    assert "merge" not in build_spec("m")


def test_a_job_that_ends_with_a_recording_is_due_for_its_merge(rt):
    done = _ended(rt, S.COMPLETED, merge=True)
    idle = _ended(rt, S.IDLE_EXIT, merge=True)
    failed = _ended(rt, S.FAILED, merge=True)
    unasked = _ended(rt, S.COMPLETED)
    assert rt.store.due_at("merge", done) is not None
    assert rt.store.due_at("merge", idle) is not None
    assert rt.store.due_at("merge", failed) is None
    assert rt.store.due_at("merge", unasked) is None
    assert rt.store.get(unasked).status_json()["merged"] is None


def test_a_failed_merge_is_recorded_and_changes_nothing_else(rt_default_merge):
    rt = rt_default_merge
    job_id = _ended(rt, S.COMPLETED, callback={"task": "app.done"})
    assert callback_wait(rt.store.get(job_id), rt.settings, time.time()) is not None
    sent: list[Any] = []
    # The callback waits for the merge: nothing is sent, its due entry is pushed out to the
    # end of the wait (the merge brings it back sooner).
    assert run_callbacks(rt, job_id, lambda name, args: sent.append(args)) is None
    assert sent == []
    assert rt.store.due_at("callback", job_id) > time.time() + rt.settings.merge_callback_wait - 60

    assert merge_step(rt, job_id) is None
    assert read_counters(rt.redis).counters[MERGES] == {("error",): 1.0}
    job = rt.store.get(job_id)
    assert job.state == S.COMPLETED
    assert "no file of recording sid1" in job.merged["error"], job.merged
    assert rt.store.due_at("merge", job_id) is None
    assert rt.store.due_at("callback", job_id) <= time.time()  # due now, no longer waiting
    assert run_callbacks(rt, job_id, lambda name, args: sent.append(args)) is None
    [(_, summary)] = sent
    assert summary["merged"] == job.merged and summary["state"] == "completed"
    assert merge_step(rt, job_id) is None  # again: nothing to do, the outcome stays
    assert rt.store.get(job_id).merged == job.merged


def test_a_merge_that_ends_while_the_callback_pushes_itself_out_does_not_lose_it(
    rt_default_merge, monkeypatch
):
    # The race CI met: the callback reads the job (no merge outcome yet), the merge then records
    # its outcome and makes the callback due now, and the callback's push-out to the end of the
    # wait lands after that and would hide the callback for CLOUDREC_MERGE_CALLBACK_WAIT.
    rt = rt_default_merge
    job_id = _ended(rt, S.COMPLETED, callback={"task": "app.done"})
    rt.store.schedule("callback", job_id, time.time())
    push_out = rt.store.extend_due

    def merge_lands_first(action: str, jid: str, until: float) -> bool:
        if action == "callback" and rt.store.get(jid).merged is None:
            assert merge_step(rt, jid) is None
        return push_out(action, jid, until)

    monkeypatch.setattr(rt.store, "extend_due", merge_lands_first)
    sent: list[Any] = []
    assert run_callbacks(rt, job_id, lambda name, args: sent.append(args)) is None
    [(_, summary)] = sent
    assert "error" in summary["merged"] and summary["state"] == "completed"
    assert rt.store.due_at("callback", job_id) is None


def test_the_callback_stops_waiting_for_a_merge_after_the_setting(rt_default_merge):
    rt = rt_default_merge
    job = rt.store.get(_ended(rt, S.COMPLETED))
    ended = job.history[-1].at
    wait = rt.settings.merge_callback_wait
    assert callback_wait(job, rt.settings, ended + 1) is not None
    assert callback_wait(job, rt.settings, ended + wait + 1) is None
