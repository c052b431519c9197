"""Every Prometheus metric the service exports, built against an injectable registry.

Names, labels and buckets are a contract with the alert rules and the dashboard (METRICS.md): change
them here and there together. No metric lives at import time, so each test builds a fresh registry.

The hot path handles tens of thousands of events a second, so it updates metrics once per batch:
``observe_many`` folds a whole array into a histogram in one call instead of one locked ``observe``
per event.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
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
CONFIDENCE_BUCKETS = (0.25, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.97, 0.99, 1.0)
BATCH_SIZE_BUCKETS = (1, 8, 32, 64, 128, 256, 512, 1024, 2048)
REVIEW_RESOLUTION_BUCKETS = (1, 10, 60, 300, 900, 3600, 4 * 3600, 24 * 3600)
PREFIX = "stream_tagger_"

OUTCOMES = ("tagged", "review", "dead_letter")


class Metrics:
    """The service's metrics; one instance per process (or per test), owning nothing but its registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

        def counter(name: str, doc: str, labels: Sequence[str] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: Sequence[str] = ()) -> Gauge:
            return Gauge(PREFIX + name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, buckets: Sequence[float], labels: Sequence[str] = ()) -> Histogram:
            return Histogram(PREFIX + name, doc, labels, buckets=buckets, registry=registry)

        self.events_consumed = counter("events_consumed", "Raw messages read from Kafka.", ["topic"])
        self.events_processed = counter(
            "events_processed",
            "Inputs by their one outcome, counted once the broker acked the output.",
            ["outcome"],
        )
        self.dead_letters = counter(
            "dead_letters", "Inputs sent to the dead-letter topic, by reason.", ["reason"]
        )
        self.inference_seconds = histogram(
            "inference_seconds", "ONNX time per micro-batch.", INFERENCE_BUCKETS, ["model_version", "role"]
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
        self.online_precision = gauge("online_precision", "Rolling precision from feedback.", ["tag"])
        self.online_recall = gauge("online_recall", "Rolling recall from feedback.", ["tag"])
        self.feedback = counter("feedback", "Corrections received, by who sent them.", ["source"])
        self.author_tag_agreement = counter(
            "author_tag_agreement", "Model top-1 against the author's own tags (a proxy label).", ["result"]
        )
        self.review_resolution_seconds = histogram(
            "review_resolution_seconds",
            "Review request to the reviewer's feedback.",
            REVIEW_RESOLUTION_BUCKETS,
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
