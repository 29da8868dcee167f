"""A command line people script against: ``--version``, ``--json`` on every command that
reports, exit codes that tell a job's end apart, one line (never a traceback) for a bad spec file
or a Redis that does not answer, and listings of any size, paged, that stay fast.

Every command runs as a subprocess, as a script would run it; job records are stored directly.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.ports import free_port
from tests.support.processes import cloudrec_env, run_cli
from worker.states import JobState
from worker.store import JobRecord, JobStore

S = JobState


@pytest.fixture
def env(redis_url: str) -> dict[str, str]:
    return cloudrec_env(redis_url, "http://127.0.0.1:9")  # nothing here calls the API


@pytest.fixture
def store(redis_client: redis.Redis) -> JobStore:
    return JobStore(redis_client)


def _record(job_id: str, state: JobState = S.QUEUED, **fields: object) -> JobRecord:
    now = time.time()
    values: dict[str, object] = {
        "job_id": job_id,
        "state": state,
        "cname": "script",
        "uid": "1",
        "spec": {"cname": "script"},
        "created_at": now,
        "stop_at": now + 60,
    }
    values.update(fields)
    return JobRecord.model_validate(values)


def _one_line_error(result: subprocess.CompletedProcess[str], code: int, *fragments: str) -> str:
    """The command failed with ``code`` and said why in one line, with no traceback."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def test_version_needs_nothing_running() -> None:
    dead = cloudrec_env(f"redis://127.0.0.1:{free_port()}/0", "http://127.0.0.1:9")
    for flag in ("--version", "-V"):
        result = run_cli([flag], dead)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip().startswith("cloudrec 0.")


# -- exit codes -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "code"),
    [
        (S.COMPLETED, 0),
        (S.EMPTY, 10),
        (S.IDLE_EXIT, 11),
        (S.FAILED, 12),
        (S.CANCELLED, 13),
        (S.RECORDING, 14),
        (S.QUEUED, 14),
    ],
)
def test_status_exit_code_tells_the_state(
    env: dict[str, str], store: JobStore, state: JobState, code: int
) -> None:
    store.create(_record(f"job-{state}", state))
    for argv in (["status", f"job-{state}"], ["status", f"job-{state}", "--json"]):
        result = run_cli(argv, env)
        assert result.returncode == code, result.stderr
    assert json.loads(result.stdout)["state"] == str(state)


def test_an_unknown_job_or_schedule_is_not_found(env: dict[str, str]) -> None:
    for argv in (["status", "nope"], ["stop", "nope"], ["cancel", "nope", "--json"]):
        _one_line_error(run_cli(argv, env), 3, "no job with id 'nope'")
    for verb in ("remove", "pause", "resume"):
        _one_line_error(run_cli(["schedule", verb, "nope"], env), 3, "no schedule named 'nope'")


def test_usage_errors_exit_2(env: dict[str, str]) -> None:
    assert run_cli(["jobs", "--limit", "-1"], env).returncode == 2
    assert run_cli(["status"], env).returncode == 2
    assert run_cli(["frobnicate"], env).returncode == 2


# -- --json everywhere ----------------------------------------------------------------------------
def test_cancel_json_reports_the_job(env: dict[str, str], store: JobStore) -> None:
    store.create(_record("to-cancel", start_at=time.time() + 3600))
    result = run_cli(["cancel", "to-cancel", "--json"], env)
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["job_id"] == "to-cancel" and out["state"] == "cancelled"
    assert out["requested"] == "cancel"
    assert [h["state"] for h in out["history"]] == ["cancelled"]


def test_health_json(env: dict[str, str]) -> None:
    result = run_cli(["health", "--json"], env)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"ok": True, "problems": []}
    dead = dict(env, CLOUDREC_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    result = run_cli(["health", "--json"], dead)
    assert result.returncode == 1  # a healthcheck: 0 or 1 only
    report = json.loads(result.stdout)
    assert report["ok"] is False and "Redis does not answer" in report["problems"][0]


def test_schedule_commands_report_json(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"cname": "weekly", "duration": 60}))
    added = run_cli(
        ["schedule", "add", "weekly", "--every", "3600", "--spec", str(spec), "--json"], env
    )
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["name"] == "weekly"
    paused = json.loads(run_cli(["schedule", "pause", "weekly", "--json"], env).stdout)
    assert paused["name"] == "weekly" and paused["enabled"] is False
    resumed = json.loads(run_cli(["schedule", "resume", "weekly", "--json"], env).stdout)
    assert resumed["enabled"] is True and resumed["next_run_at"]
    listed = json.loads(run_cli(["schedule", "list", "--json"], env).stdout)
    assert [s["name"] for s in listed] == ["weekly"]
    removed = run_cli(["schedule", "remove", "weekly", "--json"], env)
    assert json.loads(removed.stdout) == {"name": "weekly", "removed": True}
    assert json.loads(run_cli(["schedule", "list", "--json"], env).stdout) == []


# -- bad spec files, Redis that does not answer: one line, never a traceback ----------------------
SPEC_FILES = {
    "invalid.json": (b'{"cname": "x",', "not valid JSON"),
    "array.json": (b'[{"cname": "x"}]', "must be a JSON object (a job spec), got a JSON array"),
    "string.json": (b'"x"', "got a JSON string"),
    "binary.json": (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    "deep.json": (b"[" * 100_000, "nested too deeply"),
}


@pytest.mark.parametrize("name", sorted(SPEC_FILES))
def test_a_bad_spec_file_is_one_line_naming_the_cause(
    env: dict[str, str], tmp_path: Path, name: str
) -> None:
    content, cause = SPEC_FILES[name]
    path = tmp_path / name
    path.write_bytes(content)
    for argv in (
        ["record", "c", "--spec", str(path)],
        ["schedule", "add", "s", "--every", "60", "--spec", str(path)],
    ):
        _one_line_error(run_cli(argv, env), 2, f"--spec {path}", cause)


def test_a_spec_outside_the_time_bounds_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "far.json"
    path.write_text(json.dumps({"cname": "c", "start_at": "9999-12-31T00:00:00Z"}))
    _one_line_error(run_cli(["record", "c", "--spec", str(path)], env), 1, "start_at: must be")


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A port that takes connections and never answers (a hung Redis, a black-holed route)."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"


REDIS_COMMANDS = [
    ["status", "j"],
    ["jobs", "--json"],
    ["stop", "j"],
    ["cancel", "j", "--json"],
    ["schedule", "list"],
    ["schedule", "pause", "s", "--json"],
]


def test_redis_refusing_connections_is_one_line(env: dict[str, str], tmp_path: Path) -> None:
    spec = tmp_path / "ok.json"
    spec.write_text(json.dumps({"cname": "c", "duration": 10}))
    dead = dict(env, CLOUDREC_REDIS_URL=f"redis://:pw-s3cret-123@127.0.0.1:{free_port()}/0")
    for argv in [["record", "c", "--spec", str(spec), "--wait"], *REDIS_COMMANDS]:
        line = _one_line_error(run_cli(argv, dead), 4, "Redis does not answer")
        assert "pw-s3cret-123" not in line


def test_redis_that_never_answers_is_one_line_in_seconds(
    env: dict[str, str], silent_redis: str
) -> None:
    hung = dict(env, CLOUDREC_REDIS_URL=silent_redis)
    for argv in (["jobs"], ["record", "c", "--duration", "10"]):
        began = time.monotonic()
        _one_line_error(run_cli(argv, hung, timeout=30), 4, "Redis does not answer", "Timeout")
        assert time.monotonic() - began < 15


# -- stored times no clock reaches ----------------------------------------------------------------
YEAR_10000 = 253_402_300_800.0  # 10000-01-01T00:00:00Z: beyond Python's datetime


def test_a_time_beyond_year_9999_never_crashes_a_listing(
    env: dict[str, str], store: JobStore
) -> None:
    store.create(
        _record(
            "far-future",
            S.RECORDING,
            created_at=YEAR_10000 - 10,
            start_at=YEAR_10000 - 5,
            stop_at=YEAR_10000 + 86400 * 400,
            history=[{"state": "acquiring", "at": YEAR_10000}],
        )
    )
    store.create(_record("ancient", S.QUEUED, created_at=-1e15, stop_at=1e300))
    status = run_cli(["status", "far-future", "--json"], env)
    assert status.returncode == 14 and "Traceback" not in status.stderr, status.stderr
    out = json.loads(status.stdout)
    assert out["stop_at"] == "+10001-02-04T00:00:00.000Z"
    assert out["history"][0]["at"] == "+10000-01-01T00:00:00.000Z"
    for argv in (["status", "far-future"], ["status", "ancient"], ["jobs"], ["jobs", "--json"]):
        result = run_cli(argv, env)
        assert result.returncode in (0, 14), (argv, result.stderr)
        assert "Traceback" not in result.stderr
    listed = json.loads(run_cli(["jobs", "--json"], env).stdout)
    assert {j["job_id"] for j in listed} == {"far-future", "ancient"}
    assert "+10000-01-01T00:00:00.000Z" in run_cli(["status", "far-future"], env).stdout


# -- listings of any size -------------------------------------------------------------------------
JOBS = 10_500


def _store_many(client: redis.Redis, count: int) -> None:
    """``count`` jobs, newest last, every 7th cancelled, stored as submits store them."""
    store = JobStore(client)
    now = time.time()
    for i in range(count):
        state = S.CANCELLED if i % 7 == 0 else S.RECORDING
        store.create(_record(f"bulk-{i:05d}", state, created_at=now - count + i))
    # The ended ones in the job index, the active ones in their state's set.
    assert client.zcard("cloudrec:jobs") + client.scard("cloudrec:state:recording") == count


def test_jobs_lists_ten_thousand_jobs_paged_and_fast(
    env: dict[str, str], redis_client: redis.Redis
) -> None:
    _store_many(redis_client, JOBS)
    newest_first = [f"bulk-{i:05d}" for i in reversed(range(JOBS))]

    began = time.monotonic()
    everything = run_cli(["jobs", "--limit", "0", "--json"], env, timeout=120)
    elapsed_json = time.monotonic() - began
    assert everything.returncode == 0, everything.stderr
    assert [j["job_id"] for j in json.loads(everything.stdout)] == newest_first

    began = time.monotonic()
    text = run_cli(["jobs", "--limit", "0"], env, timeout=120)
    elapsed_text = time.monotonic() - began
    assert len(text.stdout.splitlines()) == JOBS

    page = json.loads(
        run_cli(["jobs", "--limit", "100", "--offset", "10000", "--json"], env).stdout
    )
    assert [j["job_id"] for j in page] == newest_first[10000:10100]
    cancelled = [i for i in newest_first if int(i[5:]) % 7 == 0]
    some = json.loads(
        run_cli(
            ["jobs", "--state", "cancelled", "--limit", "20", "--offset", "1000", "--json"], env
        ).stdout
    )
    assert [j["job_id"] for j in some] == cancelled[1000:1020]
    active = run_cli(["jobs", "--state", "active", "--limit", "0"], env, timeout=120).stdout
    assert len(active.splitlines()) == JOBS - len(cancelled)
    print(
        f"\ncloudrec jobs over {JOBS} stored jobs: --limit 0 --json {elapsed_json:.2f} s, "
        f"--limit 0 (text) {elapsed_text:.2f} s"
    )
    # Pipelined reads: at 0.1 ms a round trip per job, this would still be seconds more; what
    # is bounded here is the whole command, interpreter start-up included, on a loaded machine.
    assert elapsed_json < 20 and elapsed_text < 20
