"""deploy/plot_metrics.py: its quantiles agree with PromQL and it draws from a real exposition."""

from __future__ import annotations

import math
from pathlib import Path
from types import ModuleType

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream_tagger.metrics import Metrics
from tests.unit.deploy_support import load_script


@pytest.fixture(scope="module")
def plot_metrics() -> ModuleType:
    return load_script("plot_metrics.py")


def test_quantile_interpolates_like_promql(plot_metrics: ModuleType) -> None:
    # Same buckets as the EndToEndLatencyP99High promtool case, where Prometheus answers 0.2485.
    buckets = [(0.05, 0.0), (0.1, 0.0), (0.25, 100.0), (math.inf, 100.0)]
    assert plot_metrics.histogram_quantile(0.99, buckets) == pytest.approx(0.2485)
    assert plot_metrics.histogram_quantile(0.5, [(1.0, 10.0), (math.inf, 20.0)]) == 1.0
    assert math.isnan(plot_metrics.histogram_quantile(0.5, [(1.0, 0.0), (math.inf, 0.0)]))


def test_rates_and_picture_from_two_expositions(plot_metrics: ModuleType, tmp_path: Path) -> None:
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    first = plot_metrics.parse(generate_latest(registry).decode(), at=100.0)
    metrics.events_processed.labels("tagged").inc(30)
    metrics.events_processed.labels("review").inc(10)
    for value in (0.004, 0.006, 0.02):
        metrics.end_to_end_latency.labels("tagged").observe(value)
    metrics.confidence.labels("mlops").observe(0.93)
    second = plot_metrics.parse(generate_latest(registry).decode(), at=102.0)

    rates = plot_metrics.counter_rates([first, second], "stream_tagger_events_processed_total", "outcome")
    assert rates == {"tagged": [(2.0, 15.0)], "review": [(2.0, 5.0)], "dead_letter": [(2.0, 0.0)]}
    deltas = plot_metrics.bucket_deltas(first, second, "stream_tagger_end_to_end_latency_seconds_bucket")
    assert dict(deltas)[0.005] == 1.0 and dict(deltas)[math.inf] == 3.0

    out = tmp_path / "metrics.png"
    plot_metrics.plot([first, second], out, "test")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
