"""The Grafana dashboard and its provisioning: generated from code, querying only what the worker exports."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry

from stream_tagger.metrics import FeedbackMetrics, Metrics
from tests.unit.deploy_support import load_script
from tests.unit.promql_names import PROMETHEUS_SERIES, exported_series, problems

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
COMMITTED = GRAFANA / "dashboards" / "stream-tagger.json"


@pytest.fixture(scope="module")
def builder() -> ModuleType:
    return load_script("grafana/dashboard.py")


@pytest.fixture(scope="module")
def panels() -> list[dict]:
    return [p for p in json.loads(COMMITTED.read_text())["panels"] if p["type"] != "row"]


def exprs(panels: list[dict]) -> list[tuple[str, str]]:
    return [(panel["title"], target["expr"]) for panel in panels for target in panel["targets"]]


def test_committed_json_is_what_the_builder_generates(builder: ModuleType) -> None:
    assert COMMITTED.read_text() == builder.render(), (
        "the committed dashboard JSON is stale: run .venv/bin/python deploy/grafana/dashboard.py"
    )


def test_every_query_reads_only_exported_series_and_labels(panels: list[dict]) -> None:
    known = exported_series() | PROMETHEUS_SERIES
    bad = {f"{title}: {expr}": errs for title, expr in exprs(panels) if (errs := problems(expr, known))}
    assert bad == {}


def test_the_name_check_would_catch_a_typo() -> None:
    known = exported_series()
    assert problems("sum(rate(stream_tagger_event_processed_total[5m]))", known)
    assert problems('sum by (tag) (stream_tagger_events_processed_total{outcome="review"})', known)
    assert problems("rate(stream_tagger_confidence_bucket[5m])", known) == []


def test_every_exported_metric_is_on_the_dashboard(panels: list[dict]) -> None:
    on_dashboard = " ".join(expr for _, expr in exprs(panels))
    families = {
        name.removesuffix("_bucket") for name in exported_series() if not name.endswith(("_sum", "_count"))
    }
    assert {f for f in families if f not in on_dashboard} == set()


def test_the_required_panels_are_there(panels: list[dict]) -> None:
    titles = {panel["title"] for panel in panels}
    assert {
        "Throughput by outcome",
        "End-to-end latency",
        "Inference latency per micro-batch",
        "Consumer lag",
        "Review share",
        "Dead letters by reason",
        "Model version",
        "Drift (PSI)",
        "Online precision and recall",
        "Agreement",
    } <= titles
    assert sum(title.startswith("Confidence: ") for title in titles) == 4
    latency = next(p for p in panels if p["title"] == "End-to-end latency")
    assert [t["legendFormat"] for t in latency["targets"]] == ["p50", "p95", "p99"]


def test_panels_have_unique_ids_ref_ids_and_do_not_overlap() -> None:
    every = json.loads(COMMITTED.read_text())["panels"]
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in every:
        refs = [t["refId"] for t in panel.get("targets", [])]
        assert all(refs) and len(refs) == len(set(refs)), panel["title"]
        pos = panel["gridPos"]
        assert pos["x"] + pos["w"] <= 24, panel["title"]
        cells = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells


def variables() -> dict[str, dict]:
    return {v["name"]: v for v in json.loads(COMMITTED.read_text())["templating"]["list"]}


def datasource_refs(node: object) -> list[dict]:
    if isinstance(node, list):
        return [ref for item in node for ref in datasource_refs(item)]
    if not isinstance(node, dict):
        return []
    found = [node["datasource"]] if isinstance(node.get("datasource"), dict) else []
    return found + [ref for value in node.values() for ref in datasource_refs(value)]


def test_every_data_source_is_the_one_the_reader_picks_no_uid_written_in() -> None:
    source = variables()["datasource"]
    assert (source["type"], source["query"]) == ("datasource", "prometheus")
    refs = datasource_refs(json.loads(COMMITTED.read_text()))
    assert len(refs) > 50  # every panel and query names one
    assert {(ref["type"], ref["uid"]) for ref in refs} == {("prometheus", "${datasource}")}


def test_every_query_reads_only_the_selected_jobs(panels: list[dict]) -> None:
    for title, expr in exprs(panels):
        selectors = re.findall(r"\b(?:stream_tagger|process|python)_\w+(\{[^}]*\})?|\bup(\{[^}]*\})?", expr)
        assert selectors, title
        assert all('job=~"$job"' in "".join(parts) for parts in selectors), f"{title}: {expr}"


def test_the_job_variable_lists_the_jobs_of_both_kinds_of_process() -> None:
    job = variables()["job"]
    assert (job["type"], job["multi"], job["includeAll"]) == ("query", True, True)
    assert job["datasource"]["uid"] == "${datasource}"
    series = re.fullmatch(r"label_values\((\w+), job\)", job["query"])
    assert series is not None, job["query"]
    for metrics in (Metrics, FeedbackMetrics):  # a worker, a feedback worker: both export it at start
        registry = CollectorRegistry()
        metrics(registry)
        assert any(s.name == series.group(1) for family in registry.collect() for s in family.samples)


def test_layout_picture_renders_from_the_committed_json(tmp_path: Path) -> None:
    out = tmp_path / "layout.png"
    load_script("grafana/render_layout.py").render(json.loads(COMMITTED.read_text()), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
