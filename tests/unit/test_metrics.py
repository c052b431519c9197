"""The metric contract (docs/operations.md#metrics), and the batched histogram update of the hot path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from stream_tagger.metrics import (
    CONFIDENCE_BUCKETS,
    END_TO_END_BUCKETS,
    FeedbackMetrics,
    Metrics,
    observe_many,
)

MODELS = Path(__file__).resolve().parents[2] / "models"

CONTRACT = {
    "stream_tagger_events_consumed_total": "counter",
    "stream_tagger_events_processed_total": "counter",
    "stream_tagger_dead_letters_total": "counter",
    "stream_tagger_inference_seconds": "histogram",
    "stream_tagger_end_to_end_latency_seconds": "histogram",
    "stream_tagger_batch_size": "histogram",
    "stream_tagger_confidence": "histogram",
    "stream_tagger_consumer_lag": "gauge",
    "stream_tagger_last_processed_timestamp_seconds": "gauge",
    "stream_tagger_model_info": "gauge",
    "stream_tagger_rules_baseline_total": "counter",
    "stream_tagger_drift_score": "gauge",
    "stream_tagger_online_precision": "gauge",
    "stream_tagger_online_recall": "gauge",
    "stream_tagger_feedback_total": "counter",
    "stream_tagger_author_tag_agreement_total": "counter",
    "stream_tagger_review_resolution_seconds": "histogram",
    "stream_tagger_feedback_forgotten_total": "counter",
    "stream_tagger_shadow_comparisons_total": "counter",
    "stream_tagger_shadow_disagreements_total": "counter",
    "stream_tagger_duplicates_total": "counter",
    "stream_tagger_kafka_rebalances_total": "counter",
    "stream_tagger_kafka_assigned_partitions": "gauge",
    "stream_tagger_kafka_commit_seconds": "histogram",
    "stream_tagger_kafka_produce_errors_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_open_fds": "gauge",
    "python_info": "gauge",
}
#: What the feedback loop updates; a feedback worker exports these and the process metrics only.
FEEDBACK = {
    "stream_tagger_dead_letters",
    "stream_tagger_online_precision",
    "stream_tagger_online_recall",
    "stream_tagger_feedback",
    "stream_tagger_review_resolution_seconds",
    "stream_tagger_feedback_forgotten",
}


def test_every_contract_metric_is_exposed_with_its_type() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.set_model_info("v1", "live", ["a", "b"], {"a": 0.5, "b": 0.25})
    metrics.duplicates.inc()
    text = generate_latest(metrics.registry).decode()
    for name, kind in CONTRACT.items():
        assert f"# TYPE {name} {kind}" in text, name


def families(registry: CollectorRegistry) -> set[str]:
    return {family.name for family in registry.collect()}


def test_a_feedback_worker_exports_only_what_it_updates() -> None:
    registry = CollectorRegistry()
    FeedbackMetrics(registry)
    ours = {name for name in families(registry) if name.startswith("stream_tagger_")}
    assert ours == FEEDBACK
    assert {"process_resident_memory_bytes", "process_open_fds", "python_info"} <= families(registry)


def test_a_worker_exports_the_feedback_metrics_too() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    assert families(registry) >= FEEDBACK


def served_thresholds() -> set[float]:
    metadata = [json.loads(path.read_text()) for path in MODELS.glob("*/metadata.json")]
    return {threshold for meta in metadata for threshold in meta["thresholds"].values()}


@pytest.mark.parametrize("threshold", sorted(served_thresholds()))
def test_each_stored_threshold_falls_in_a_narrow_confidence_bucket(threshold: float) -> None:
    """At most 0.05 wide and narrower than the headroom above it, so the share of posts over a
    threshold can be read off the histogram, 0.999 included."""
    bounds = (0.0, *CONFIDENCE_BUCKETS)
    upper = next(b for b in CONFIDENCE_BUCKETS if b >= threshold)
    lower = bounds[bounds.index(upper) - 1]
    assert upper - lower < min(0.05 + 1e-9, 1.0 - lower), (threshold, lower, upper)


def test_retiring_a_model_version_removes_its_series_only() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.inference_seconds.labels("v1", "live").observe(0.01)
    metrics.inference_seconds.labels("v2", "shadow").observe(0.01)
    metrics.retire_model("v1", "live")
    metrics.retire_model("v9", "live")  # never served: nothing to do
    value = metrics.registry.get_sample_value
    assert value("stream_tagger_inference_seconds_count", {"model_version": "v1", "role": "live"}) is None
    assert value("stream_tagger_inference_seconds_count", {"model_version": "v2", "role": "shadow"}) == 1


def test_outcome_and_reason_series_exist_before_the_first_event() -> None:
    registry = CollectorRegistry()
    Metrics(registry)
    assert registry.get_sample_value("stream_tagger_events_processed_total", {"outcome": "dead_letter"}) == 0
    assert registry.get_sample_value("stream_tagger_dead_letters_total", {"reason": "too_large"}) == 0


def test_model_info_names_version_labels_and_thresholds() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.set_model_info("v1", "live", ["a", "b"], {"a": 0.5, "b": 0.25})
    labels = {"version": "v1", "role": "live", "labels": "a,b", "threshold": "a=0.500,b=0.250"}
    assert metrics.registry.get_sample_value("stream_tagger_model_info", labels) == 1


def test_two_instances_do_not_collide() -> None:
    Metrics(CollectorRegistry())
    Metrics(CollectorRegistry())


@pytest.mark.parametrize(
    "values", [[], [0.0005, 0.001, 0.0011, 0.02, 7.0, 99.0], list(np.linspace(0, 3, 101))]
)
def test_observe_many_equals_observe_per_value(values: list[float]) -> None:
    one, many = CollectorRegistry(), CollectorRegistry()
    by_one = Histogram("h_seconds", "d", ["k"], buckets=END_TO_END_BUCKETS, registry=one)
    by_many = Histogram("h_seconds", "d", ["k"], buckets=END_TO_END_BUCKETS, registry=many)
    child = by_one.labels("x")
    for v in values:
        child.observe(v)
    observe_many(by_many.labels("x"), np.asarray(values, dtype=np.float64))
    for bound in [*map(str, END_TO_END_BUCKETS), "+Inf"]:
        le = {"k": "x", "le": str(float(bound)) if bound != "+Inf" else bound}
        assert one.get_sample_value("h_seconds_bucket", le) == many.get_sample_value(
            "h_seconds_bucket", le
        ), bound
    assert one.get_sample_value("h_seconds_sum", {"k": "x"}) == pytest.approx(
        many.get_sample_value("h_seconds_sum", {"k": "x"}) or 0.0
    )
