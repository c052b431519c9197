"""Every Prometheus metric the service exports, built against an injectable registry.

Names, labels and buckets are a contract with the alert rules and the dashboard (METRICS.md): change
them here and there together. No metric lives at import time, so each test builds a fresh registry.

The hot path handles tens of thousands of events a second, so it updates metrics once per batch:
``observe_many`` folds a whole array into a histogram in one call instead of one locked ``observe``
per event.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

INFERENCE_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)
END_TO_END_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5, 10)
CONFIDENCE_BUCKETS = (0.25, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 1.0)
BATCH_SIZE_BUCKETS = (1, 8, 32, 64, 128, 256, 512, 1024, 2048)

OUTCOMES = ("tagged", "review", "dead_letter")
DEAD_LETTER_REASONS = ("not_utf8", "not_json", "schema", "too_large", "unknown_schema_version")


class Metrics:
    """The service's metrics; one instance per process (or per test), owning nothing but its registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        p = "stream_tagger_"
        self.events_consumed = Counter(
            p + "events_consumed", "Raw messages read from Kafka.", ["topic"], registry=registry
        )
        self.events_processed = Counter(
            p + "events_processed",
            "Inputs by their one outcome, counted once the broker acked the output.",
            ["outcome"],
            registry=registry,
        )
        self.dead_letters = Counter(
            p + "dead_letters",
            "Inputs sent to the dead-letter topic, by reason.",
            ["reason"],
            registry=registry,
        )
        self.inference_seconds = Histogram(
            p + "inference_seconds",
            "ONNX time per micro-batch.",
            ["model_version", "role"],
            buckets=INFERENCE_BUCKETS,
            registry=registry,
        )
        self.end_to_end_latency = Histogram(
            p + "end_to_end_latency_seconds",
            "Raw message's Kafka timestamp to the broker's ack of its output.",
            ["outcome"],
            buckets=END_TO_END_BUCKETS,
            registry=registry,
        )
        self.batch_size = Histogram(
            p + "batch_size", "Events per micro-batch.", buckets=BATCH_SIZE_BUCKETS, registry=registry
        )
        self.confidence = Histogram(
            p + "confidence",
            "Top-1 confidence, labelled with the top-1 tag.",
            ["tag"],
            buckets=CONFIDENCE_BUCKETS,
            registry=registry,
        )
        self.consumer_lag = Gauge(
            p + "consumer_lag",
            "End offset minus committed offset, in messages.",
            ["topic", "partition"],
            registry=registry,
        )
        self.last_processed_timestamp = Gauge(
            p + "last_processed_timestamp_seconds",
            "Unix time of the last batch the broker acked.",
            registry=registry,
        )
        self.model_info = Gauge(
            p + "model_info",
            "Which model serves (value is always 1).",
            ["version", "role", "labels", "threshold"],
            registry=registry,
        )
        self.rules_baseline = Counter(
            p + "rules_baseline",
            "Keyword baseline compared with the model's top-1.",
            ["result"],
            registry=registry,
        )
        self.drift_score = Gauge(
            p + "drift_score",
            "PSI of a recent window against the training reference.",
            ["signal"],
            registry=registry,
        )
        self.online_precision = Gauge(
            p + "online_precision", "Rolling precision from feedback.", ["tag"], registry=registry
        )
        self.online_recall = Gauge(
            p + "online_recall", "Rolling recall from feedback.", ["tag"], registry=registry
        )
        self.feedback = Counter(
            p + "feedback", "Corrections received, by who sent them.", ["source"], registry=registry
        )
        self.author_tag_agreement = Counter(
            p + "author_tag_agreement",
            "Model top-1 against the author's own tags (a proxy label).",
            ["result"],
            registry=registry,
        )
        self.review_resolution_seconds = Histogram(
            p + "review_resolution_seconds",
            "Review request to the reviewer's feedback.",
            buckets=(1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600),
            registry=registry,
        )
        self.shadow_comparisons = Counter(
            p + "shadow_comparisons",
            "Shadow model's top-1 against the live one.",
            ["result"],
            registry=registry,
        )
        self.shadow_disagreements = Counter(
            p + "shadow_disagreements",
            "Shadow and live top-1 that differ.",
            ["live_tag", "shadow_tag"],
            registry=registry,
        )
        self.duplicates = Counter(
            p + "duplicates", "Posts flagged as duplicates of an earlier one.", registry=registry
        )
        # Pre-create the label sets an alert divides by, so a rate is 0 rather than absent.
        for outcome in OUTCOMES:
            self.events_processed.labels(outcome)
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)

    def set_model_info(
        self, version: str, role: str, labels: Iterable[str], thresholds: dict[str, float]
    ) -> None:
        threshold = ",".join(f"{label}={thresholds[label]:.3f}" for label in labels)
        self.model_info.labels(version, role, ",".join(labels), threshold).set(1)


def observe_many(histogram: Histogram, values: np.ndarray) -> None:
    """Add every value of ``values`` to one labelled histogram child in a single pass.

    Same result as calling ``observe`` per value (buckets are cumulative at exposition, so each value
    lands in the first bucket whose upper bound is >= it), at a fraction of the cost. Relies on the
    child's ``_upper_bounds``/``_buckets``/``_sum`` of the pinned prometheus-client; the unit tests
    compare it with ``observe`` so an upgrade that changes them fails loudly.
    """
    if values.size == 0:
        return
    bounds = histogram._upper_bounds
    counts = np.bincount(np.searchsorted(bounds, values, side="left"), minlength=len(bounds))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=False):
        if count:
            bucket.inc(count)
    histogram._sum.inc(float(values.sum()))
