"""The shipped Prometheus config and alert rules: valid for promtool, and every alert proven by a unit test.

`promtool test rules` is the only way to know an alert fires on the data it was written for (and not on
normal traffic), so each alert needs a firing case and a quiet case in deploy/prometheus/tests/.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.deploy_support import require_tool
from tests.unit.promql_names import PROMETHEUS_SERIES, exported_series, problems

REPO = Path(__file__).resolve().parents[2]
PROM_DIR = REPO / "deploy" / "prometheus"
CONFIG = PROM_DIR / "prometheus.yml"
ALERTS = PROM_DIR / "alerts.yml"
RULE_TESTS = sorted((PROM_DIR / "tests").glob("*.yml"))
REQUIRED_ANNOTATIONS = {"summary", "description", "runbook"}
#: One scrape job per kind of process, each with the alert that says it is down.
DOWN_ALERTS = {"StreamTaggerDown": "stream-tagger", "StreamTaggerFeedbackDown": "stream-tagger-feedback"}


@pytest.fixture(scope="module")
def promtool() -> str:
    return require_tool("promtool")


def run_promtool(promtool: str, *args: str) -> str:
    done = subprocess.run([promtool, *args], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, f"promtool {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def alert_rules() -> list[dict]:
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def test_promtool_check_config(promtool: str) -> None:
    out = run_promtool(promtool, "check", "config", str(CONFIG))
    assert "1 rule files found" in out


def test_promtool_check_rules(promtool: str) -> None:
    out = run_promtool(promtool, "check", "rules", str(ALERTS))
    assert f"{len(alert_rules())} rules found" in out


def test_promtool_rule_unit_tests_pass(promtool: str) -> None:
    assert RULE_TESTS, "no promtool rule tests under deploy/prometheus/tests/"
    out = run_promtool(promtool, "test", "rules", *map(str, RULE_TESTS))
    assert "SUCCESS" in out


def test_config_loads_the_alert_rules_and_scrapes_the_worker_and_the_feedback_worker() -> None:
    config = yaml.safe_load(CONFIG.read_text())
    assert [(CONFIG.parent / f).resolve() for f in config["rule_files"]] == [ALERTS.resolve()]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(DOWN_ALERTS.values())
    for job in jobs.values():
        assert job.get("metrics_path", "/metrics") == "/metrics"
    interval = int(config["global"]["scrape_interval"].removesuffix("s"))
    assert 5 <= interval <= 15


def test_every_scrape_job_has_its_own_down_alert() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    for alert, job in DOWN_ALERTS.items():
        assert rules[alert]["expr"].strip() == f'up{{job="{job}"}} == 0', alert


def test_the_required_alerts_exist_with_severity_and_runbook() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert set(rules) == {
        *DOWN_ALERTS,
        "ConsumerLagGrowing",
        "DeadLetterRateHigh",
        "EndToEndLatencyP99High",
        "ReviewShareSpike",
        "DriftDetected",
        "WorkerFailedOnMessages",
        "ShadowModelFailed",
        "ConsumerGroupRebalancing",
    }
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"critical", "warning"}, name
        assert set(rule["annotations"]) >= REQUIRED_ANNOTATIONS, name
        assert "for" in rule, f"{name} would fire on a single bad scrape"


def test_every_alert_has_a_firing_and_a_quiet_rule_test() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names - firing == set(), "alerts never shown to fire"
    assert names - quiet == set(), "alerts never shown to stay quiet"


def test_alert_expressions_read_only_exported_series_and_labels() -> None:
    known = exported_series() | PROMETHEUS_SERIES
    bad = {rule["alert"]: errs for rule in alert_rules() if (errs := problems(rule["expr"], known))}
    assert bad == {}
