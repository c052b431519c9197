"""Every Prometheus metric the service exports, built against an injectable registry.

Names, labels and buckets are a contract with the alert rules and the dashboard
(docs/operations.md#metrics): change them here and there together. No metric lives at import time, so
each test builds a fresh registry.

Each kind of process exports only what it updates: the feedback worker ``FeedbackMetrics`` (its own
loop, and the process's resource use), a worker ``Metrics``, which is that and the rest.

The hot path handles tens of thousands of events a second, so it updates metrics once per batch:
``observe_many`` folds a whole array into a histogram in one call instead of one locked ``observe``
per event.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from stream_tagger.events import DEAD_LETTER_REASONS

log = logging.getLogger(__name__)

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
# Served thresholds run from ~0.7 to 0.999: each falls in a bucket at most 0.05 wide and narrower than
# what is left above it, so the share of posts that clears it can be read from the histogram.
CONFIDENCE_BUCKETS = (
    0.25,
    0.5,
    0.6,
    0.65,
    0.7,
    0.75,
    0.8,
    0.85,
    0.9,
    0.95,
    0.97,
    0.98,
    0.99,
    0.995,
    0.999,
    1.0,
)
BATCH_SIZE_BUCKETS = (1, 8, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)
REVIEW_RESOLUTION_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
PREFIX = "stream_tagger_"

OUTCOMES = ("tagged", "review", "dead_letter")
#: The hot path's rebalance callbacks: partitions given to it, taken back, or lost without a revoke.
REBALANCE_EVENTS = ("assigned", "revoked", "lost")


def _counter(registry: CollectorRegistry, name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
    return Counter(PREFIX + name, doc, labels, registry=registry)


def _gauge(registry: CollectorRegistry, name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
    return Gauge(PREFIX + name, doc, labels, registry=registry)


def _histogram(
    registry: CollectorRegistry, name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()
) -> Histogram:
    return Histogram(PREFIX + name, doc, labels, buckets=buckets, registry=registry)


#: Why the feedback join let something go unjudged: a parked correction replaced by later ones from its
#: source (``parked_superseded``), or swept by the retention (``parked_expired``, ``prediction_expired``,
#: ``pending_expired`` for a post no reviewer decided).
FEEDBACK_FORGOTTEN_REASONS = ("parked_superseded", "parked_expired", "prediction_expired", "pending_expired")


class FeedbackMetrics:
    """What the feedback loop updates, and the process's resource use (``process_*``: resident memory,
    CPU, open files; ``python_info``): all that a feedback worker exports."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        self.dead_letters = _counter(
            registry, "dead_letters", "Inputs sent to the dead-letter topic, by reason.", ["reason"]
        )
        self.online_precision = _gauge(
            registry, "online_precision", "Rolling precision from feedback.", ["tag"]
        )
        self.online_recall = _gauge(registry, "online_recall", "Rolling recall from feedback.", ["tag"])
        self.feedback = _counter(registry, "feedback", "Corrections received, by who sent them.", ["source"])
        self.review_resolution_seconds = _histogram(
            registry,
            "review_resolution_seconds",
            "Pending event to the arrival of the reviewer's feedback.",
            REVIEW_RESOLUTION_BUCKETS,
        )
        self.feedback_forgotten = _counter(
            registry,
            "feedback_forgotten",
            "Corrections or predictions the feedback join let go of unjudged, by reason.",
            ["reason"],
        )
        # Pre-create the label sets an alert divides by, so a rate is 0 rather than absent.
        for reason in DEAD_LETTER_REASONS:
            self.dead_letters.labels(reason)
        for reason in FEEDBACK_FORGOTTEN_REASONS:
            self.feedback_forgotten.labels(reason)


class Metrics(FeedbackMetrics):
    """A worker's metrics; one instance per process (or per test), owning nothing but its registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        super().__init__(registry)

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return _counter(registry, name, doc, labels)

        def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
            return _gauge(registry, name, doc, labels)

        def histogram(name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> Histogram:
            return _histogram(registry, name, doc, buckets, labels)

        self.events_consumed = counter("events_consumed", "Raw messages read from Kafka.", ["topic"])
        self.events_processed = counter(
            "events_processed",
            "Inputs by their one outcome, counted once the broker acked the output.",
            ["outcome"],
        )
        self.inference_seconds = histogram(
            "inference_seconds",
            "ONNX time per micro-batch (per part of one finished in parts).",
            INFERENCE_BUCKETS,
            ["model_version", "role"],
        )
        self.end_to_end_latency = histogram(
            "end_to_end_latency_seconds",
            "Raw message's Kafka timestamp to the broker's ack of its output.",
            END_TO_END_BUCKETS,
            ["outcome"],
        )
        self.batch_size = histogram("batch_size", "Events per micro-batch.", BATCH_SIZE_BUCKETS)
        self.confidence = histogram(
            "confidence", "Top-1 confidence, labelled with the top-1 tag.", CONFIDENCE_BUCKETS, ["tag"]
        )
        self.consumer_lag = gauge(
            "consumer_lag", "End offset minus committed offset, in messages.", ["topic", "partition"]
        )
        self.last_processed_timestamp = gauge(
            "last_processed_timestamp_seconds", "Unix time of the last batch the broker acked."
        )
        self.model_info = gauge(
            "model_info",
            "Which model serves (value is always 1).",
            ["version", "role", "labels", "threshold"],
        )
        self.rules_baseline = counter(
            "rules_baseline", "Keyword baseline compared with the model's top-1.", ["result"]
        )
        self.drift_score = ScrapeTimeGauge(
            PREFIX + "drift_score",
            "PSI of a recent window against the training reference.",
            "signal",
            registry,
        )
        self.author_tag_agreement = counter(
            "author_tag_agreement", "Model top-1 against the author's own tags (a proxy label).", ["result"]
        )
        self.shadow_comparisons = counter(
            "shadow_comparisons", "Shadow model's top-1 against the live one.", ["result"]
        )
        self.shadow_disagreements = counter(
            "shadow_disagreements", "Shadow and live top-1 that differ.", ["live_tag", "shadow_tag"]
        )
        self.shadow_failures = counter(
            "shadow_failures",
            "Shadow models turned off because they raised or answered no probabilities.",
            ["model_version"],
        )
        self.observer_errors = counter(
            "observer_errors", "Batches published without a batch observer that raised.", ["observer"]
        )
        self.duplicates = counter("duplicates", "Posts flagged as duplicates of an earlier one.")
        self.kafka_rebalances = counter(
            "kafka_rebalances",
            "Rebalance callbacks of the hot path's consumer: partitions assigned, revoked or lost.",
            ["event"],
        )
        self.kafka_assigned_partitions = gauge(
            "kafka_assigned_partitions", "Raw-topic partitions the hot path holds."
        )
        self.kafka_commit_seconds = histogram(
            "kafka_commit_seconds",
            "Offset commits the hot path waits for: sync (on revoke and at stop) or transaction "
            "(each batch, exactly_once).",
            COMMIT_BUCKETS,
            ["kind"],
        )
        self.kafka_produce_errors = counter(
            "kafka_produce_errors",
            "Outputs the broker did not ack, and producer errors, by librdkafka error code.",
            ["code"],
        )
        for outcome in OUTCOMES:
            self.events_processed.labels(outcome)
        for event in REBALANCE_EVENTS:
            self.kafka_rebalances.labels(event)

    def set_model_info(
        self, version: str, role: str, labels: Iterable[str], thresholds: dict[str, float]
    ) -> None:
        threshold = ",".join(f"{label}={thresholds[label]:.3f}" for label in labels)
        self.model_info.labels(version, role, ",".join(labels), threshold).set(1)

    def retire_model(self, version: str, role: str) -> None:
        """Drop the inference series of a model version no longer served in ``role`` (hot reload): a
        retired version's histogram would otherwise be exported, frozen, until the process restarts."""
        with contextlib.suppress(KeyError):
            self.inference_seconds.remove(version, role)


class ScrapeTimeGauge(Collector):
    """A gauge with one label whose values are computed when /metrics is scraped, by ``use``'s source.

    For values that cost more to compute than to keep up to date: the drift scores (PSI over a
    2,000-event window, ~220 µs) were recomputed for every micro-batch although Prometheus reads them
    every 10 s; computed at scrape time they cost nothing per batch and are never stale. A source
    returning None exports no series (not enough data yet), as an unset labelled gauge would.
    """

    # Declared like prometheus-client's own metric objects (name, type, label names), which is what
    # tools that check queries against the exported series read (tests/unit/promql_names.py).
    _type = "gauge"

    def __init__(self, name: str, documentation: str, label: str, registry: CollectorRegistry) -> None:
        self._name = name
        self._documentation = documentation
        self._labelnames = (label,)
        self._source: Callable[[], Mapping[str, float] | None] = lambda: None
        registry.register(self)

    def use(self, source: Callable[[], Mapping[str, float] | None]) -> None:
        self._source = source

    def describe(self) -> list[GaugeMetricFamily]:
        return [GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)]

    def collect(self) -> list[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._documentation, labels=self._labelnames)
        try:
            values = self._source() or {}
        except Exception:  # one broken gauge must not fail the whole scrape (and every alert with it)
            log.exception("%s: computing the values failed; exported without samples", self._name)
            values = {}
        for label_value, value in values.items():
            family.add_metric([label_value], value)
        return [family]


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
