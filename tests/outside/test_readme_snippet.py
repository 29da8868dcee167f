"""The README's "Submitting from another service" snippet, run verbatim (only the broker URL and
the channel substituted) by a separate interpreter whose venv has Celery and not cloudrec,
against a real ``cloudrec worker`` and ``cloudrec beat``. It gets its job id, and the job records
and completes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.processes import Cloudrec
from tests.support.venvs import REPO, run_outside
from tests.support.waiting import wait_for

pytestmark = pytest.mark.e2e

README_BROKER = "redis://127.0.0.1:6379/0"
README_CHANNEL = '"class42"'


def readme_snippet() -> str:
    """The first python block of the README's "Submitting from another service" section."""
    text = (REPO / "README.md").read_text()
    section = text.split("## Submitting from another service", 1)[1].split("\n## ", 1)[0]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match, "the README's section has no python snippet"
    return match.group(1)


def substituted(snippet: str, broker: str, channel: str) -> str:
    assert README_BROKER in snippet and README_CHANNEL in snippet, snippet
    return snippet.replace(README_BROKER, broker).replace(README_CHANNEL, f'"{channel}"')


def test_the_outside_venv_has_celery_and_not_cloudrec(outside_python: Path, tmp_path: Path) -> None:
    probe = (
        "import importlib.util as u\n"
        "print([m for m in ('worker', 'tasks', 'config', 'emulator', 'cloudrec_client')"
        " if u.find_spec(m)], bool(u.find_spec('celery')))"
    )
    result = run_outside(outside_python, probe, tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[] True"


def test_readme_snippet_submits_from_a_plain_celery_venv(
    cloudrec: Cloudrec, outside_python: Path, tmp_path: Path
) -> None:
    cloudrec.start_worker()
    cloudrec.start_beat()
    cloudrec.dev.join("outside-a", "7", video={"color": "#FF0000"}, audio={"tone": 440})
    code = substituted(readme_snippet(), cloudrec.redis_url, "outside-a")

    result = run_outside(outside_python, code, tmp_path)

    assert result.returncode == 0, f"the README snippet failed:\n{result.stderr[-3000:]}"
    lines = result.stdout.split("\n")
    job_id = lines[0].removeprefix("job ").strip()
    assert lines[0].startswith("job ") and job_id, result.stdout
    assert lines[1] in {"queued", "acquiring", "starting", "recording"}, result.stdout
    store = cloudrec.runtime.store
    assert store.get(job_id).cname == "outside-a"
    wait_for(lambda: store.get(job_id).state == "recording", 60, 0.2, "the job to record")

    # The README's duration is an hour: the caller stops it now, the same plain way.
    stop = (
        "from celery import Celery\n"
        f"app = Celery(broker={cloudrec.redis_url!r}, backend={cloudrec.redis_url!r})\n"
        f"s = app.send_task('recording.stop_now', args=[{job_id!r}], queue='cloudrec')"
        ".get(timeout=10)\n"
        "print(s['job_id'], s['state'])\n"
    )
    stopped = run_outside(outside_python, stop, tmp_path)
    assert stopped.returncode == 0, stopped.stderr[-3000:]
    assert stopped.stdout.split()[0] == job_id
    job = wait_for(lambda: (j := store.get(job_id)).terminal and j, 60, 0.2, "the job to end")
    assert job.state == "completed", job.status_json()
    assert job.stop_reason == "stop"
    assert any(f.fileName.endswith(".m3u8") for f in job.files), job.files


def test_a_plain_celery_caller_gets_the_errors_by_name(
    cloudrec: Cloudrec, outside_python: Path, tmp_path: Path
) -> None:
    cloudrec.start_worker()
    code = (
        "from celery import Celery\n"
        f"app = Celery(broker={cloudrec.redis_url!r}, backend={cloudrec.redis_url!r})\n"
        "for task, args in [('recording.submit', [{'cname': 'c', 'duration': 0}]),\n"
        "                   ('recording.cancel', ['no-such-job'])]:\n"
        "    try:\n"
        "        app.send_task(task, args=args, queue='cloudrec').get(timeout=10)\n"
        "    except Exception as exc:\n"
        "        print(type(exc).__name__, '|', exc)\n"
    )

    result = run_outside(outside_python, code, tmp_path)

    assert result.returncode == 0, result.stderr[-3000:]
    spec_error, not_found = result.stdout.strip().splitlines()
    assert spec_error.startswith("JobSpecError | duration: "), spec_error
    assert not_found == "JobNotFound | no-such-job"
