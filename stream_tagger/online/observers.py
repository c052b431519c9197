"""Model-quality metrics computed from each scored batch: pipeline observers with no outputs of their own.

Both run once per micro-batch with numpy, not once per event, to keep the hot path's per-event cost
at a few microseconds.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from stream_tagger.metrics import Metrics, observe_many
from stream_tagger.model.keyword_baseline import KeywordBaseline
from stream_tagger.worker.pipeline import OutputRecord, ScoredBatch


class ConfidenceObserver:
    """``stream_tagger_confidence``: top-1 confidence, labelled with the top-1 tag."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        probs = batch.prediction.probs
        top = batch.top1
        confidence = probs[np.arange(len(top)), top].astype(np.float64)
        for j, tag in enumerate(batch.labels):
            picked = confidence[top == j]
            if picked.size:
                observe_many(self.metrics.confidence.labels(tag), picked)
        return ()


class RulesBaselineObserver:
    """``stream_tagger_rules_baseline_total``: does a keyword rule agree with the model's top-1?

    A sudden drop in agreement with a fixed, dumb baseline says the model (or its input) changed.
    The rules cost ~7 µs per post, half of what the model does, so only every ``stride``-th scored
    event is checked: a rate is what the dashboard shows, and a sample measures it just as well.
    """

    def __init__(self, metrics: Metrics, stride: int, baseline: KeywordBaseline | None = None) -> None:
        self.metrics = metrics
        self.stride = max(1, stride)
        self.baseline = baseline or KeywordBaseline()
        self._offset = 0

    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        n = len(batch.texts)
        picked = range(self._offset, n, self.stride)
        self._offset = (self._offset - n) % self.stride
        if not picked:
            return ()
        rules = self.baseline.predict([batch.texts[i] for i in picked])
        top = batch.top1[list(picked)].tolist()
        counts = {"agree": 0, "disagree": 0, "no_rule": 0}
        for rule, j in zip(rules, top, strict=True):
            counts["no_rule" if rule is None else "agree" if rule == batch.labels[j] else "disagree"] += 1
        for result, count in counts.items():
            if count:
                self.metrics.rules_baseline.labels(result).inc(count)
        return ()
