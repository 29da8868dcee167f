"""The "sid unknown" case is visible to operators: the exporter publishes its counter (and the
NCS receiver's), and the alert rules shipped in docs/alerts.yml (the same as in
docs/operations.md) fire on it."""

from __future__ import annotations

import re
from pathlib import Path

import redis
import yaml
from prometheus_client import generate_latest

from worker.exporter import build_registry
from worker.metrics import Metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"


def _rules() -> list[dict[str, str]]:
    return yaml.safe_load((DOCS / "alerts.yml").read_text())["groups"][0]["rules"]


def test_the_rules_file_is_the_one_the_operations_guide_shows() -> None:
    guide = (DOCS / "operations.md").read_text()
    block = re.search(r"```yaml\n(groups:.*?)```", guide, re.S)
    assert block is not None
    assert yaml.safe_load(block.group(1))["groups"][0]["rules"] == _rules()


def test_an_alert_fires_on_every_sid_unknown_job(redis_client: redis.Redis) -> None:
    (rule,) = [r for r in _rules() if "cloudrec_sid_unknown_total" in r["expr"]]
    assert rule["alert"] == "CloudrecSidUnknown"
    assert re.fullmatch(r"increase\(cloudrec_sid_unknown_total\[\w+\]\) > 0", rule["expr"].strip())
    assert "for" not in rule  # at once: a recording may be running that nobody can stop
    registry = build_registry(redis_client)
    assert "cloudrec_sid_unknown_total 0.0" in generate_latest(registry).decode()
    Metrics(redis_client).sid_unknown()
    text = generate_latest(registry).decode()
    assert "cloudrec_sid_unknown_total 1.0" in text
    assert "cloudrec_ncs_unclaimed_recordings 0.0" in text


def test_ncs_series_are_exported(redis_client: redis.Redis) -> None:
    metrics = Metrics(redis_client)
    metrics.ncs_event(31, "stored")
    metrics.ncs_event(31, "duplicate")
    metrics.ncs_rejected("bad_signature")
    text = generate_latest(build_registry(redis_client)).decode()
    assert (
        'cloudrec_ncs_events_total{app="default",event_type="31",outcome="duplicate"} 1.0' in text
    )
    assert 'cloudrec_ncs_rejected_total{reason="bad_signature"} 1.0' in text
    names = {name for r in _rules() for name in re.findall(r"cloudrec_\w+", r["expr"])}
    assert {"cloudrec_ncs_rejected_total", "cloudrec_ncs_events_total"} <= names
