"""Scheduled recordings: real ``cloudrec beat`` processes (celery-redbeat), a real worker process,
the emulator; schedules changed with the CLI while beat runs."""

from __future__ import annotations

import json
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import redis

from config import Settings
from tests.support.processes import (
    Proc,
    processes,
    run_cli,
    start_beat_process,
    start_worker_process,
)
from tests.support.specs import process_spec
from tests.support.waiting import wait_for
from worker.celery_app import celery_config, configure
from worker.devapi import DevApiClient
from worker.errors import JobSpecError
from worker.schedules import (
    FIRED_AT_HEADER,
    ScheduleBook,
    ScheduleError,
    Trigger,
    job_id_for,
    redbeat_name,
)
from worker.store import JobRecord, JobStore
from worker.vault import TokenVault

pytestmark = pytest.mark.e2e

SLOT_ID = re.compile(r"^(?P<name>[\w.-]+):(?P<slot>\d{8}T\d{6}Z)$")


def _spec_file(tmp_path: Path, cname: str, **overrides: object) -> Path:
    path = tmp_path / f"{cname}.json"
    path.write_text(json.dumps(process_spec(cname, **overrides)))
    return path


def _jobs_of(store: JobStore, name: str) -> list[JobRecord]:
    jobs = [store.find(i) for i in store.ids(limit=1000) if i.startswith(f"{name}:")]
    return sorted((j for j in jobs if j is not None), key=lambda j: j.job_id)


def _cli_ok(argv: list[str], env: dict[str, str]) -> str:
    result = run_cli(argv, env)
    assert result.returncode == 0, f"cloudrec {' '.join(argv)}: {result.stderr}"
    return result.stdout


def _book(redis_url: str) -> ScheduleBook:
    settings = Settings(redis_url=redis_url)
    app = configure(settings)
    client = redis.Redis.from_url(redis_url)
    return ScheduleBook(client, app, settings, TokenVault(client, settings))


def _lock_key() -> str:
    return "cloudrec:redbeat::lock"


# -- slots and validation (no beat) ----------------------------------------------------------------
def _ts(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("fired", "slot"),
    [
        ("2025-06-02T10:00:00.400", "2025-06-02T10:00:00"),  # Monday, on time
        ("2025-06-02T10:00:40", "2025-06-02T10:00:00"),  # run 40 s late: same slot
        ("2025-06-07T12:00:00", "2025-06-06T10:00:00"),  # Saturday: Friday's slot
    ],
)
def test_a_cron_firing_belongs_to_the_latest_slot_before_it(fired: str, slot: str) -> None:
    trigger = Trigger.parse("0 10 * * 1-5", None)
    assert trigger.slot_at(_ts(fired)) == _ts(slot)


def test_an_interval_firing_belongs_to_its_period() -> None:
    trigger = Trigger.parse(None, 5)
    assert trigger.slot_at(1000.0) == 1000.0
    assert trigger.slot_at(1004.99) == 1000.0
    assert trigger.slot_at(1005.01) == 1005.0


@pytest.mark.parametrize(
    ("cron", "every", "message"),
    [
        (None, None, "exactly one of --cron"),
        ("* * * * *", 5.0, "exactly one of --cron"),
        ("0 25 * * *", None, "--cron"),
        ("0 10 * *", None, "5 fields"),
        (None, 0.5, "--every: must be at least 1"),
    ],
)
def test_bad_triggers_are_refused(cron: str | None, every: float | None, message: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(message)):
        Trigger.parse(cron, every)


def test_a_bad_template_is_refused_naming_the_field_and_nothing_is_stored(
    redis_url: str, redis_client: redis.Redis
) -> None:
    book = _book(redis_url)
    bad = process_spec("c1", recordingConfig={"maxIdleTime": 1})
    with pytest.raises(JobSpecError, match=r"recordingConfig\.maxIdleTime"):
        book.add("nightly", Trigger.parse(None, 60), bad)
    with pytest.raises(JobSpecError, match="job_id"):
        book.add("nightly", Trigger.parse(None, 60), process_spec("c1", job_id="fixed"))
    with pytest.raises(ScheduleError, match="schedule name"):
        book.add("no spaces", Trigger.parse(None, 60), process_spec("c1"))
    assert redis_client.keys("*") == []


def test_the_template_and_its_token_stay_out_of_beat_entries(
    redis_url: str, redis_client: redis.Redis
) -> None:
    book = _book(redis_url)
    token = "rtc-token-0123456789-secret"
    book.add("withtoken", Trigger.parse(None, 60), process_spec("c1", uid="42", token=token))
    entry = redis_client.hget(f"cloudrec:redbeat:{redbeat_name('withtoken')}", "definition")
    assert entry is not None
    assert json.loads(entry)["args"] == ["withtoken"]
    for key in redis_client.keys("*"):
        if redis_client.type(key) == b"hash":
            assert token.encode() not in b"".join(redis_client.hvals(key)), key
    # The firing gets the token back from the vault, into the spec it submits in-process.
    seen: list[dict[str, object]] = []
    store = JobStore(redis_client)

    def submit(spec: dict[str, object]) -> tuple[JobRecord, bool]:
        seen.append(spec)
        raise JobSpecError("stop here")

    book.fire("withtoken", time.time(), submit)
    assert seen and seen[0]["token"] == token
    assert store.ids() == []


def test_a_drifted_interval_firing_in_a_taken_slot_gets_the_next_slot(redis_url: str) -> None:
    book = _book(redis_url)
    book.add("drift", Trigger.parse(None, 10), process_spec("c1"))
    record = book.get("drift")
    first = book.claim_slot(record, 1000.2)
    again = book.claim_slot(record, 1000.2)  # the same firing delivered again
    other_beat = book.claim_slot(record, 1001.0)  # a second beat firing the same slot
    drifted = book.claim_slot(record, 1009.9)  # the next firing, 9.7 s later, same period
    assert (first, again, other_beat, drifted) == (1000.0, 1000.0, 1000.0, 1010.0)


def test_beat_lock_timeout_lets_a_standby_beat_take_over_within_30_s() -> None:
    config = celery_config(Settings())
    # The standby polls the lock every beat_max_loop_interval; the lock outlives the dead beat's
    # last tick (<= beat_max_loop_interval ago) by at most redbeat_lock_timeout.
    worst = config["redbeat_lock_timeout"] + 2 * config["beat_max_loop_interval"]
    assert worst < 30, (
        f"a standby beat may need {worst} s to take over: set redbeat_lock_timeout to 25 in "
        f"worker/celery_app.py"
    )


# -- firing through a real worker ----------------------------------------------------------------
def test_a_firing_delivered_twice_or_late_records_once(
    env: dict[str, str],
    log_dir: Path,
    redis_url: str,
    redis_client: redis.Redis,
    emulator,
    tmp_path,
) -> None:
    from tasks.schedules import fire_schedule

    dev = DevApiClient(emulator.base_url)
    dev.join("twice", "1", video={"color": "#FF0000"}, audio={"tone": 440})
    _cli_ok(
        [
            "schedule",
            "add",
            "twice",
            "--every",
            "3600",
            "--spec",
            str(_spec_file(tmp_path, "twice")),
        ],
        env,
    )
    store = JobStore(redis_client)
    with processes() as procs:
        procs.append(start_worker_process(env, log_dir))
        procs.append(start_beat_process(env, log_dir))  # the deadline dispatcher
        # Stamped once the worker is up: a slow start must not eat the recording's window.
        fired_at = time.time()
        # The same firing three times: delivered twice, and once more 20 s late.
        for _ in range(2):
            fire_schedule.apply_async(("twice",), headers={FIRED_AT_HEADER: fired_at})
        job_id = job_id_for("twice", Trigger.parse(None, 3600).slot_at(fired_at))
        wait_for(lambda: store.find(job_id), 30, 0.2, "the firing's job")
        fire_schedule.apply_async(("twice",), headers={FIRED_AT_HEADER: fired_at})
        job = wait_for(lambda: _terminal(store, job_id), 60, 0.3, f"job {job_id} to end")
        # Give the extra deliveries time to have done whatever they would do.
        wait_for(lambda: _log_count(procs[0], "schedule twice fired") >= 3, 30, 0.2, "3 firings")
    assert job.state == "completed", job.error
    assert [j.job_id for j in _jobs_of(store, "twice")] == [job_id]
    assert len([r for r in dev.recordings() if r["cname"] == "twice"]) == 1


def _terminal(store: JobStore, job_id: str) -> JobRecord | None:
    job = store.find(job_id)
    return job if job is not None and job.terminal else None


def _log_count(proc: Proc, text: str) -> int:
    return proc.output().count(text)


# -- beat ------------------------------------------------------------------------------------
def test_schedules_change_while_beat_runs_and_each_firing_records(
    env: dict[str, str], log_dir: Path, redis_client: redis.Redis, emulator, tmp_path
) -> None:
    dev = DevApiClient(emulator.base_url)
    dev.join("tick", "1", video={"color": "#00FF00"}, audio={"tone": 660})
    store = JobStore(redis_client)
    spec = _spec_file(tmp_path, "tick")
    with processes() as procs:
        procs.append(start_worker_process(env, log_dir))
        procs.append(start_beat_process(env, log_dir))
        wait_for(lambda: redis_client.exists(_lock_key()), 30, 0.2, "beat to take its lock")
        # Added while beat runs.
        _cli_ok(
            ["schedule", "add", "tick", "--every", "3", "--spec", str(spec), "--duration", "2"], env
        )
        done = wait_for(
            lambda: _finished(store, "tick", at_least=2), 60, 0.5, "two firings to record"
        )
        _cli_ok(["schedule", "pause", "tick"], env)
        count_at_pause = _settle(store, "tick")
        assert _quiet(store, "tick", count_at_pause, seconds=7), "a paused schedule fired"
        _cli_ok(["schedule", "resume", "tick"], env)
        wait_for(
            lambda: len(_jobs_of(store, "tick")) > count_at_pause, 20, 0.3, "a firing after resume"
        )
        _cli_ok(["schedule", "remove", "tick"], env)
        count_at_remove = _settle(store, "tick")
        assert _quiet(store, "tick", count_at_remove, seconds=7), "a removed schedule fired"
        listing = json.loads(_cli_ok(["schedule", "list", "--json"], env))
    assert listing == []
    assert "without a beat timestamp" not in procs[0].output()  # beat stamped every firing
    assert "schedule tick fired: job tick:" in procs[0].output()
    for job in done:
        assert job.state == "completed", job.error
        assert SLOT_ID.match(job.job_id), job.job_id
        assert job.spec["labels"] == {"schedule": "tick"}
        assert job.files and job.files[0].key.startswith("ops/")
        assert job.stop_at - job.created_at == pytest.approx(2, abs=1.5)
    ids = [j.job_id for j in _jobs_of(store, "tick")]
    assert len(ids) == len(set(ids))


def _finished(store: JobStore, name: str, at_least: int) -> list[JobRecord] | None:
    ended = [j for j in _jobs_of(store, name) if j.terminal]
    return ended if len(ended) >= at_least else None


def _settle(store: JobStore, name: str) -> int:
    """The job count once a firing that was already on its way has landed (<= 3 s)."""
    deadline = time.monotonic() + 3
    count = len(_jobs_of(store, name))
    while time.monotonic() < deadline:
        time.sleep(0.5)
        count = len(_jobs_of(store, name))
    return count


def _quiet(store: JobStore, name: str, count: int, seconds: float) -> bool:
    """True if no job of ``name`` appears for ``seconds`` (more than two periods here)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if len(_jobs_of(store, name)) != count:
            return False
        time.sleep(0.5)
    return True


def test_a_second_beat_stands_by_and_takes_over_when_the_first_dies(
    env: dict[str, str], log_dir: Path, redis_client: redis.Redis, tmp_path
) -> None:
    store = JobStore(redis_client)
    spec = _spec_file(tmp_path, "standby")  # nobody publishes: each firing ends "empty"
    _cli_ok(
        ["schedule", "add", "standby", "--every", "3", "--spec", str(spec), "--duration", "2"], env
    )
    lock_timeout = celery_config(Settings())["redbeat_lock_timeout"]
    with processes() as procs:
        procs.append(start_worker_process(env, log_dir))
        first = start_beat_process(env, log_dir, "beat-1")
        procs.append(first)
        wait_for(lambda: redis_client.get(_lock_key()), 30, 0.2, "the first beat's lock")
        first_token = redis_client.get(_lock_key())
        second = start_beat_process(env, log_dir, "beat-2")
        procs.append(second)
        wait_for(lambda: "beat: Starting" in second.output(), 30, 0.2, "the second beat to start")
        # Both beats up for 9 s: three periods.
        window_start = time.time()
        wait_for(lambda: time.time() - window_start >= 9 or None, 20, 0.5, "9 s of two beats")
        fired = [j for j in _jobs_of(store, "standby") if window_start <= j.created_at]
        assert 2 <= len(fired) <= 4, [j.job_id for j in fired]
        assert "Sending due task" not in second.output(), "the standby beat fired tasks"
        assert redis_client.get(_lock_key()) == first_token

        first.kill()  # SIGKILL: the lock is not released, it has to expire
        killed_at = time.monotonic()
        wait_for(
            lambda: redis_client.get(_lock_key()) not in (None, first_token),
            lock_timeout + 15,
            0.2,
            "the second beat to take the lock",
        )
        takeover = time.monotonic() - killed_at
        count = len(_jobs_of(store, "standby"))
        wait_for(
            lambda: len(_jobs_of(store, "standby")) > count, 15, 0.3, "a firing by the second beat"
        )
    assert "Sending due task schedule:standby" in second.output()
    print(f"standby beat took over {takeover:.1f} s after the first was killed")
    assert takeover <= lock_timeout + 2
    slots = [j.job_id for j in _jobs_of(store, "standby")]
    assert len(slots) == len(set(slots))
