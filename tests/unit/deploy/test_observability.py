"""deploy/observability: the alert rules pass `promtool check rules` and their unit tests
(`promtool test rules`, Debian's prometheus package), each alert has a firing and a
silent test and a runbook, and the dashboard and rules use only metric names that
/metrics really exposes (read from the prometheus_client registry the pipeline
registers its metrics in, not from a list kept by hand)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import pipeline.runner  # noqa: F401  (registers the reader's gauges, as `pipeline run` does)
from pipeline import metrics

ROOT = Path(__file__).resolve().parents[3]
OBS = ROOT / "deploy" / "observability"
RULES = OBS / "alerts.rules.yml"
RULE_TESTS = OBS / "alerts.test.yml"
DASHBOARD = OBS / "dashboard.json"
OPERATIONS = ROOT / "docs" / "operations.md"
METRIC = re.compile(r"\bpipeline_[a-z0-9_]+\b")
SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: scripts/setup.sh installs Debian's prometheus"
    return subprocess.run(
        [binary, *args], cwd=OBS, capture_output=True, text=True, timeout=120, check=False
    )


def alerts() -> list[dict[str, Any]]:
    document = yaml.safe_load(RULES.read_text())
    return [rule for group in document["groups"] for rule in group["rules"] if "alert" in rule]


@dataclass
class FakeStats:
    events_read: int = 1
    events_acked: int = 1


@pytest.fixture
def exposed() -> Iterator[set[str]]:
    """Every sample name the registry can expose, with the scrape-time collectors fed."""
    saved = metrics.READER_COUNTERS.source
    metrics.export_reader_counters(FakeStats)
    try:
        names: set[str] = set()
        for family in REGISTRY.collect():
            names |= {family.name + suffix for suffix in SUFFIXES.get(family.type, ("",))}
            names |= {sample.name for sample in family.samples}
        yield names
    finally:
        metrics.READER_COUNTERS.source = saved


def test_promtool_check_rules_passes() -> None:
    result = promtool("check", "rules", RULES.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in result.stdout


def test_promtool_unit_tests_pass() -> None:
    result = promtool("test", "rules", RULE_TESTS.name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_firing_and_a_silent_unit_test() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text())["tests"]
    fired: set[str] = set()
    silent: set[str] = set()
    for case in tests:
        for check in case["alert_rule_test"]:
            (fired if check["exp_alerts"] else silent).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert len(names) == 6
    assert fired == names
    assert silent == names


def test_every_alert_has_a_runbook_in_operations_md() -> None:
    text = OPERATIONS.read_text()
    for rule in alerts():
        anchor = f"alert-{rule['alert'].lower()}"
        assert rule["annotations"]["runbook"] == f"docs/operations.md#{anchor}"
        assert f"#### Alert {rule['alert']}\n" in text, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}


def test_the_dashboard_and_rules_use_only_metrics_that_metrics_exposes(
    exposed: set[str],
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    used: dict[str, str] = {}
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            for name in METRIC.findall(target["expr"]):
                used[name] = panel["title"]
    for rule in alerts():
        for name in METRIC.findall(rule["expr"]):
            used[name] = rule["alert"]
    unknown = {name: where for name, where in used.items() if name not in exposed}
    assert not unknown, f"not exposed on /metrics: {unknown}"
    # What the issue asks the dashboard to show is there.
    for wanted in (
        "pipeline_replication_lag_bytes",
        "pipeline_consumer_lag_records",
        "pipeline_reader_events_read_total",
        "pipeline_commit_to_workflow_start_seconds_bucket",
        "pipeline_workflow_starts_total",
        "pipeline_events_dead_lettered_total",
        "pipeline_reader_active",
    ):
        assert wanted in used, wanted


def test_the_dashboard_is_grafana_json_with_unique_panels() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["title"]
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]


def test_the_kustomize_component_ships_both_files_and_k8s_offers_it() -> None:
    component = yaml.safe_load((OBS / "kustomization.yaml").read_text())
    assert component["kind"] == "Component"
    files = {f for generator in component["configMapGenerator"] for f in generator["files"]}
    assert files == {DASHBOARD.name, RULES.name}
    k8s = (ROOT / "deploy" / "k8s" / "kustomization.yaml").read_text()
    assert "#   - ../observability" in k8s  # optional: commented in, one line to enable
