"""Online precision/recall over a rolling window, checked against counts done by hand."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream_tagger.events import RawContent
from stream_tagger.metrics import Metrics
from stream_tagger.online.precision_recall import (
    ALL,
    AuthorAgreementObserver,
    Judged,
    OnlineEvaluator,
    author_agreement,
)
from stream_tagger.worker.pipeline import ScoredBatch

TAGS = ("computer-vision", "mlops", "natural-language-processing", "other")
CV, MLOPS, NLP, OTHER = TAGS


def test_precision_and_recall_per_tag_and_micro_averaged() -> None:
    ev = OnlineEvaluator(TAGS)
    ev.add(Judged.of([CV], [CV]))  # tp cv
    ev.add(Judged.of([CV], [NLP]))  # fp cv, fn nlp
    ev.add(Judged.of([NLP, MLOPS], [NLP]))  # tp nlp, fp mlops
    ev.add(Judged.of([], [OTHER]))  # pending review: fn other
    assert ev.precision(CV) == pytest.approx(1 / 2)
    assert ev.recall(CV) == 1.0
    assert ev.recall(NLP) == pytest.approx(1 / 2)
    assert ev.precision(MLOPS) == 0.0
    assert ev.recall(MLOPS) is None  # no true mlops in the window
    assert ev.precision(OTHER) is None
    assert ev.precision(ALL) == pytest.approx(2 / 4)
    assert ev.recall(ALL) == pytest.approx(2 / 4)
    assert ev.snapshot()[ALL] == (ev.precision(), ev.recall())


def test_author_tags_are_taken_out_of_both_sides() -> None:
    judged = Judged.of([NLP], [NLP, MLOPS], author_tags=[MLOPS])
    assert judged.truth == {NLP}


def test_window_drops_the_oldest_items() -> None:
    ev = OnlineEvaluator(TAGS, window=2)
    ev.add(Judged.of([CV], [NLP]))
    ev.add(Judged.of([CV], [CV]))
    ev.add(Judged.of([NLP], [NLP]))
    assert len(ev) == 2
    assert ev.precision(ALL) == 1.0
    assert ev.recall(NLP) == 1.0


def test_author_agreement() -> None:
    assert author_agreement(CV, [CV, MLOPS]) is True
    assert author_agreement(CV, [NLP]) is False
    assert author_agreement(CV, []) is None


def test_author_agreement_observer_counts_only_posts_with_author_tags() -> None:
    metrics = Metrics(CollectorRegistry())
    now = datetime.now(UTC)
    events = [
        RawContent(id="1", title="t", author_tags=["Computer Vision"], created_at=now),
        RawContent(id="2", title="t", author_tags=["mlops"], created_at=now),
        RawContent(id="3", title="t", created_at=now),
    ]
    probs = np.eye(4, dtype=np.float32)[[0, 2, 1]]
    batch = ScoredBatch(events, [], SimpleNamespace(probs=probs), [], TAGS, "v1")  # type: ignore[arg-type]
    assert list(AuthorAgreementObserver(metrics).observe(batch)) == []
    value = metrics.registry.get_sample_value
    assert value("stream_tagger_author_tag_agreement_total", {"result": "agree"}) == 1
    assert value("stream_tagger_author_tag_agreement_total", {"result": "disagree"}) == 1
