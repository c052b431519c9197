"""Shadow comparison by tag name, with disagreement records for the topic."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from stream_tagger.events import RawContent, ShadowDisagreement
from stream_tagger.metrics import Metrics
from stream_tagger.online.shadow import ShadowObserver, compare
from stream_tagger.worker.pipeline import ScoredBatch

LIVE = ("computer-vision", "mlops", "natural-language-processing", "other")
SHADOW = ("other", "natural-language-processing", "mlops", "computer-vision")  # another label order


def test_compares_top1_by_name_and_records_each_disagreement() -> None:
    live = np.array([[0.9, 0.05, 0.03, 0.02], [0.1, 0.7, 0.1, 0.1], [0.2, 0.2, 0.5, 0.1]], dtype=np.float32)
    # Same answers as live for "a" and "c" (in shadow label order), "b" goes to other.
    shadow = np.array([[0.0, 0.0, 0.1, 0.9], [0.6, 0.2, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1]], dtype=np.float32)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    report = compare(["a", "b", "c"], LIVE, live, "v1", SHADOW, shadow, "v2", now=now)
    assert report.agree == 2
    assert report.disagree == 1
    assert report.pairs == {("mlops", "other"): 1}
    record = report.records[0]
    assert (record.id, record.live_tag, record.shadow_tag) == ("b", "mlops", "other")
    assert record.live_confidence == pytest.approx(0.7)
    assert record.shadow_confidence == pytest.approx(0.6)
    assert msgspec.json.decode(msgspec.json.encode(record), type=ShadowDisagreement) == record


def test_empty_batch_and_mismatched_inputs() -> None:
    empty = np.zeros((0, 4), dtype=np.float32)
    assert compare([], LIVE, empty, "v1", SHADOW, empty, "v2").agree == 0
    with pytest.raises(ValueError, match="same events"):
        compare(["a"], LIVE, empty, "v1", SHADOW, empty, "v2")


class FakeShadow:
    version = "v2"
    labels = SHADOW
    thresholds: dict[str, float] = {}  # noqa: RUF012

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs

    def predict(self, texts: list[str]) -> FakeShadow:
        assert len(texts) == len(self.probs)
        return self


def test_observer_counts_publishes_disagreements_and_skips_itself() -> None:
    metrics = Metrics(CollectorRegistry())
    now = datetime.now(UTC)
    events = [RawContent(id=i, title="t", created_at=now) for i in "abcd"]
    live = np.eye(4, dtype=np.float32)  # live top-1: cv, mlops, nlp, other
    shadow = np.eye(4, dtype=np.float32)[[3, 3, 1, 0]]  # shadow: cv, cv, nlp, other -> b disagrees
    observer = ShadowObserver(FakeShadow(shadow), "shadow-topic", metrics)
    batch = ScoredBatch(events, ["t"] * 4, FakeShadow(live), [], LIVE, "v1")  # type: ignore[arg-type]
    records = list(observer.observe(batch))
    assert [(r.topic, r.key) for r in records] == [("shadow-topic", b"b")]
    assert msgspec.json.decode(records[0].value, type=ShadowDisagreement).shadow_tag == "computer-vision"
    value = metrics.registry.get_sample_value
    assert value("stream_tagger_shadow_comparisons_total", {"result": "agree"}) == 3
    assert value("stream_tagger_shadow_comparisons_total", {"result": "disagree"}) == 1
    assert (
        value(
            "stream_tagger_shadow_disagreements_total", {"live_tag": "mlops", "shadow_tag": "computer-vision"}
        )
        == 1
    )
    assert value("stream_tagger_inference_seconds_count", {"model_version": "v2", "role": "shadow"}) == 1
    promoted = ScoredBatch(events, ["t"] * 4, FakeShadow(live), [], LIVE, "v2")  # type: ignore[arg-type]
    assert list(observer.observe(promoted)) == []
    observer.use(None)
    assert list(observer.observe(batch)) == []
    assert value("stream_tagger_shadow_comparisons_total", {"result": "agree"}) == 3


class CrashingShadow(FakeShadow):
    def predict(self, texts: list[str]) -> FakeShadow:
        raise RuntimeError("shadow session died")


@pytest.mark.parametrize(
    "shadow", [CrashingShadow(np.eye(4)), FakeShadow(np.full((4, 4), np.nan))], ids=["raises", "nan"]
)
def test_a_failing_shadow_turns_itself_off_with_a_metric_and_a_log_line(
    shadow: FakeShadow, caplog: pytest.LogCaptureFixture
) -> None:
    metrics = Metrics(CollectorRegistry())
    disabled: list[bool] = []
    observer = ShadowObserver(shadow, "shadow-topic", metrics, on_disabled=lambda: disabled.append(True))
    events = [RawContent(id=i, title="t", created_at=datetime.now(UTC)) for i in "abcd"]
    batch = ScoredBatch(events, ["t"] * 4, FakeShadow(np.eye(4)), [], LIVE, "v1")  # type: ignore[arg-type]
    assert list(observer.observe(batch)) == []
    assert observer.shadow is None and disabled == [True]
    failures = {"model_version": "v2"}
    assert metrics.registry.get_sample_value("stream_tagger_shadow_failures_total", failures) == 1
    assert "shadowing is off" in caplog.text
    assert list(observer.observe(batch)) == []  # stays off: no second failure counted
    assert metrics.registry.get_sample_value("stream_tagger_shadow_failures_total", failures) == 1


class NextShadow(FakeShadow):
    version = "v3"


def test_a_replaced_shadow_version_takes_its_inference_series_along() -> None:
    metrics = Metrics(CollectorRegistry())
    events = [RawContent(id=i, title="t", created_at=datetime.now(UTC)) for i in "ab"]
    batch = ScoredBatch(events, ["t"] * 2, FakeShadow(np.eye(4)[:2]), [], LIVE, "v1")  # type: ignore[arg-type]
    observer = ShadowObserver(FakeShadow(np.eye(4)[:2]), "shadow-topic", metrics)
    list(observer.observe(batch))
    count = "stream_tagger_inference_seconds_count"
    observer.use(FakeShadow(np.eye(4)[:2]))  # the same version again (a pointer rewritten): kept
    assert metrics.registry.get_sample_value(count, {"model_version": "v2", "role": "shadow"}) == 1
    observer.use(NextShadow(np.eye(4)[:2]))
    list(observer.observe(batch))
    assert metrics.registry.get_sample_value(count, {"model_version": "v2", "role": "shadow"}) is None
    assert metrics.registry.get_sample_value(count, {"model_version": "v3", "role": "shadow"}) == 1
    observer.use(None)
    assert metrics.registry.get_sample_value(count, {"model_version": "v3", "role": "shadow"}) is None
