"""Confidence histogram and rules-baseline agreement, computed per batch."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from prometheus_client import CollectorRegistry

from stream_tagger.metrics import Metrics
from stream_tagger.online.observers import ConfidenceObserver, RulesBaselineObserver
from stream_tagger.worker.pipeline import ScoredBatch

LABELS = ("computer-vision", "mlops", "natural-language-processing", "other")


@dataclass
class Prediction:
    probs: np.ndarray


def batch(texts: list[str], rows: list[list[float]]) -> ScoredBatch:
    return ScoredBatch(
        events=[],
        texts=texts,
        prediction=Prediction(np.array(rows, np.float32)),
        outcomes=[],
        labels=LABELS,
        model_version="v",
    )


class FixedRules:
    """Stands in for KeywordBaseline: the rule's answer is the text itself ("-" for no rule)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def predict(self, texts: list[str]) -> list[str | None]:
        self.asked.extend(texts)
        return [None if t.startswith("-") else t.split("#")[0] for t in texts]


def sample(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_confidence_is_observed_under_the_top1_tag() -> None:
    metrics = Metrics(CollectorRegistry())
    ConfidenceObserver(metrics).observe(
        batch(["a", "b", "c"], [[0.9, 0.1, 0, 0], [0.2, 0.7, 0.1, 0], [0.96, 0.04, 0, 0]])
    )
    r = metrics.registry
    assert sample(r, "stream_tagger_confidence_count", {"tag": "computer-vision"}) == 2
    assert sample(r, "stream_tagger_confidence_bucket", {"tag": "computer-vision", "le": "0.9"}) == 1
    assert sample(r, "stream_tagger_confidence_count", {"tag": "mlops"}) == 1
    assert sample(r, "stream_tagger_confidence_count", {"tag": "other"}) == 0


def test_rules_baseline_counts_agree_disagree_and_no_rule() -> None:
    metrics = Metrics(CollectorRegistry())
    rows = [[0.9, 0.1, 0, 0], [0.9, 0.1, 0, 0], [0.1, 0.9, 0, 0]]
    RulesBaselineObserver(metrics, stride=1, baseline=FixedRules()).observe(  # type: ignore[arg-type]
        batch(["computer-vision", "mlops", "-"], rows)
    )
    r = metrics.registry
    for result in ("agree", "disagree", "no_rule"):
        assert sample(r, "stream_tagger_rules_baseline_total", {"result": result}) == 1


def test_rules_baseline_checks_every_stride_th_event_across_batches() -> None:
    rules = FixedRules()
    observer = RulesBaselineObserver(Metrics(CollectorRegistry()), stride=4, baseline=rules)  # type: ignore[arg-type]
    for first in (0, 6, 12):
        texts = [f"other#{i}" for i in range(first, first + 6)]
        observer.observe(batch(texts, [[0, 0, 0, 1]] * 6))
    assert rules.asked == ["other#0", "other#4", "other#8", "other#12", "other#16"]
