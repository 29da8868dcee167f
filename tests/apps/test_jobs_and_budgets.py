"""A job names its app: validation, the record, the status, the client's credentials and App ID,
and each App ID's own budget in the shared limiter (a real Redis, the emulator in a thread
serving two App IDs with their own credentials)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis

from contract.models import AcquireClientRequest
from emulator import EmulatorServer
from emulator.config import EmulatorApp
from tests.support.emulator import STEP_EMULATOR, Api, serving, start_request
from tests.support.specs import small_spec
from tests.support.stack import make_settings
from worker import jobcodec, keys
from worker.devapi import DevApiClient
from worker.errors import JobSpecError, RateLimitWait
from worker.limiter import Priority
from worker.reconcile import reconcile
from worker.recording import acquire_step, build_start_request, start_step, stop_step, submit
from worker.runtime import Runtime

SCHOOL = EmulatorApp("school-app-id", "school-customer", "school-customer-secret", qps=0)
SCHOOL_PROFILE = {
    "app_id": SCHOOL.app_id,
    "customer_id": SCHOOL.customer_id,
    "customer_secret": SCHOOL.customer_secret,
    "api_rate_limit": 2,
}


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[EmulatorServer]:
    config = replace(STEP_EMULATOR, storage_dir=tmp_path / "storage", apps=(SCHOOL,))
    with serving(config) as server:
        yield server


@pytest.fixture
def rt(redis_url: str, emulator: EmulatorServer) -> Iterator[Runtime]:
    runtime = Runtime.build(
        make_settings(redis_url, emulator.base_url, apps={"school": SCHOOL_PROFILE})
    )
    yield runtime
    runtime.close()


def patiently(step: Callable[[Runtime, str], object], rt: Runtime, job_id: str) -> None:
    """Run a step, waiting out its app's budget (2 calls/s for the school) as a retry would."""
    while True:
        try:
            step(rt, job_id)
            return
        except RateLimitWait as exc:
            time.sleep(exc.retry_after)


def test_a_job_records_with_its_apps_credentials_and_app_id(
    rt: Runtime, emulator: EmulatorServer
) -> None:
    school, _ = submit(rt, small_spec("apps-school", app="School"))
    plain, _ = submit(rt, small_spec("apps-default"))
    assert school.app == "school" and plain.app == "default"
    for job in (school, plain):
        for step in (acquire_step, start_step, stop_step):
            patiently(step, rt, job.job_id)
    # Each was acquired, started and stopped under its own app's path, with its own
    # customer's Basic auth (the emulator refuses any other pair for the school's App ID).
    dev = DevApiClient(emulator.base_url)
    seen = {(r["cname"], r["appId"], r["live"]) for r in dev.recordings()}
    dev.close()
    assert seen == {("apps-school", SCHOOL.app_id, False), ("apps-default", "demo-app", False)}
    assert {rt.store.get(j.job_id).state for j in (school, plain)} == {"empty"}


def test_the_app_is_in_the_status_and_omitted_from_the_record_when_default(
    rt: Runtime, redis_client: redis.Redis
) -> None:
    school, _ = submit(rt, small_spec("apps-status", app="school"))
    plain, _ = submit(rt, small_spec("apps-status-default"))
    assert school.status_json()["app"] == "school"
    assert rt.store.get(plain.job_id).status_json()["app"] == "default"
    # Bytes per job: the default costs nothing, another app one small field.
    stored = [jobcodec.parse(redis_client.get(keys.job_key(j.job_id))) for j in (plain, school)]
    assert "a" not in stored[0] and stored[1]["a"] == b"school"  # "a": the app's code
    spec = jobcodec.decode(redis_client.get(keys.job_key(school.job_id)), school.job_id)["spec"]
    assert "app" not in spec


def test_an_unknown_app_is_refused_naming_the_field_before_any_call(
    rt: Runtime, emulator: EmulatorServer, redis_client: redis.Redis
) -> None:
    with pytest.raises(JobSpecError) as caught:
        submit(rt, small_spec("apps-unknown", app="nosuch"))
    message = str(caught.value)
    assert message.startswith("app: must name a configured app (default, school")
    assert "'nosuch'" in message
    with pytest.raises(JobSpecError, match="app: must be a string"):
        submit(rt, small_spec("apps-unknown", app=3))
    assert redis_client.dbsize() == 0  # nothing stored
    dev = DevApiClient(emulator.base_url)
    assert dev.recordings() == []
    dev.close()


def test_each_app_id_has_its_own_budget(rt: Runtime, redis_client: redis.Redis) -> None:
    school, default = rt.limiters["school"], rt.limiters["default"]
    assert school.capacity == 2 and default.capacity == 1000
    for _ in range(2):
        assert school.try_acquire(Priority.STOP) == 0.0
    assert school.try_acquire(Priority.STOP) > 0  # the school's budget is spent...
    with pytest.raises(RateLimitWait) as waited:
        rt.client_for("school").query("resource", "sid")
    assert waited.value.app == "school"
    for _ in range(50):  # ...and the default app's is untouched
        assert default.try_acquire(Priority.QUERY) == 0.0
    # The default App ID keeps the budget key it always had (old and new workers share it).
    assert redis_client.zcard(keys.LIMITER_KEY) == 50
    assert redis_client.zcard(keys.LIMITER_KEY + ":school-app-id") == 2


def test_the_reconciler_stops_orphans_of_each_app_and_leaves_other_projects_alone(
    redis_url: str, emulator: EmulatorServer
) -> None:
    profile = {**SCHOOL_PROFILE, "api_rate_limit": 100}
    rt = Runtime.build(
        make_settings(redis_url, emulator.base_url, orphan_grace=2, apps={"school": profile})
    )
    dev = DevApiClient(emulator.base_url)
    try:
        job, _ = submit(rt, small_spec("orphan-school", app="school"))  # for a valid start body
        request = build_start_request(rt, rt.store.get(job.job_id))
        for app, cname in (("school", "orphan-school"), ("default", "orphan-default")):
            client = rt.client_for(app)
            resource = client.acquire(cname, "4242", AcquireClientRequest()).resourceId
            client.start(resource, cname, "4242", request)
        # A project this deployment does not know (its recordings are not ours to stop).
        foreign = Api(emulator, appid="foreign-app")
        foreign.start("orphan-foreign", "4242", start_request())
        assert reconcile(rt, now=time.time() + 3).orphans_stopped == 2
        live = {(r["cname"], r["appId"]) for r in dev.recordings() if r["live"]}
        assert live == {("orphan-foreign", "foreign-app")}
    finally:
        dev.close()
        rt.close()
