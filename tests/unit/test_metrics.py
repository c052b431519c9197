"""The metric contract of METRICS.md, and the batched histogram update the hot path relies on."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from stream_tagger.metrics import END_TO_END_BUCKETS, Metrics, observe_many

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
    "stream_tagger_shadow_comparisons_total": "counter",
    "stream_tagger_shadow_disagreements_total": "counter",
    "stream_tagger_duplicates_total": "counter",
}


def test_every_contract_metric_is_exposed_with_its_type() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.set_model_info("v1", "live", ["a", "b"], {"a": 0.5, "b": 0.25})
    metrics.duplicates.inc()
    text = generate_latest(metrics.registry).decode()
    for name, kind in CONTRACT.items():
        assert f"# TYPE {name} {kind}" in text, name


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
