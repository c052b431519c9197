"""Drift scores: PSI arithmetic, the rolling window, and the reference read from model metadata."""

from __future__ import annotations

import math
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from stream_tagger.metrics import Metrics
from stream_tagger.online.drift import DriftMonitor, DriftObserver, Histogram, Reference, psi
from stream_tagger.worker.pipeline import ScoredBatch

LABELS = ("computer-vision", "mlops", "natural-language-processing", "other")


def reference() -> Reference:
    return Reference.from_metadata(
        LABELS,
        {
            "oov_share": {"bins": [0.0, 0.25, 0.5, 0.75, 1.0], "freq": [0.7, 0.2, 0.08, 0.02]},
            "confidence": {"bins": [0.0, 0.5, 0.75, 1.0], "freq": [0.1, 0.3, 0.6]},
            "predicted_class": {
                "computer-vision": 0.3,
                "mlops": 0.1,
                "natural-language-processing": 0.3,
                "other": 0.3,
            },
        },
    )


def test_psi_matches_the_formula_and_is_zero_for_equal_distributions() -> None:
    assert psi([1, 1], [1, 1]) == 0.0
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (0.2 - 0.5) * math.log(0.2 / 0.5)
    assert psi([5, 5], [8, 2]) == pytest.approx(expected)


def test_psi_stays_finite_when_a_bin_is_empty_on_one_side() -> None:
    assert 0 < psi([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]) < 10


def test_psi_rejects_mismatched_or_empty_distributions() -> None:
    with pytest.raises(ValueError, match="equal length"):
        psi([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="non-empty"):
        psi([0, 0], [1, 1])


def test_histogram_puts_out_of_range_values_in_the_outer_bins() -> None:
    h = Histogram(np.array([0.0, 0.5, 1.0]), np.array([1.0, 1.0]))
    assert h.counts(np.array([-1.0, 0.2, 0.7, 3.0])).tolist() == [2, 2]


def test_reference_names_what_is_missing_or_malformed() -> None:
    with pytest.raises(ValueError, match="predicted_class, confidence"):
        Reference.from_metadata(LABELS, {"oov_share": {"bins": [0, 1], "freq": [1]}})
    with pytest.raises(ValueError, match="'oov_share'"):
        Histogram.from_metadata("oov_share", {"bins": [0, 1], "freq": [0.5, 0.5]})


def small_reference() -> dict:
    """Two bins per signal and a uniform class mix: metadata["reference"] as training writes it."""
    return {
        "oov_share": {"bins": [0.0, 0.5, 1.0], "freq": [0.9, 0.1]},
        "confidence": {"bins": [0.0, 0.5, 1.0], "freq": [0.1, 0.9]},
        "predicted_class": dict.fromkeys(LABELS, 0.25),
    }


def observe(monitor: DriftMonitor, oov_share: np.ndarray, probs: np.ndarray) -> dict[str, float] | None:
    """What the worker does per batch and per scrape, in one step."""
    monitor.add(oov_share, probs)
    return monitor.scores()


def _batch(
    rng: np.random.Generator, n: int, oov: tuple[float, float], top: list[int], conf: tuple[float, float]
) -> tuple[np.ndarray, np.ndarray]:
    probs = np.full((n, 4), 0.0, dtype=np.float32)
    confidence = rng.uniform(*conf, size=n)
    cls = rng.choice(top, size=n)
    probs[:] = ((1 - confidence) / 3)[:, None]
    probs[np.arange(n), cls] = confidence
    return rng.uniform(*oov, size=n).astype(np.float32), probs


def test_scores_stay_none_until_enough_events_then_flag_a_shifted_stream_only() -> None:
    rng = np.random.default_rng(0)
    calm = DriftMonitor(reference(), window=1000, min_events=300)
    assert observe(calm, *_batch(rng, 100, (0, 0.2), [0, 2, 3], (0.75, 1.0))) is None
    # Training-like: low OOV, the reference's class mix, confident.
    oov = np.concatenate(
        [
            rng.uniform(0, 0.25, 700),
            rng.uniform(0.25, 0.5, 200),
            rng.uniform(0.5, 0.75, 80),
            rng.uniform(0.75, 1.0, 20),
        ]
    )
    cls = rng.choice(4, size=1000, p=[0.3, 0.1, 0.3, 0.3])
    conf = np.concatenate(
        [rng.uniform(0.3, 0.5, 100), rng.uniform(0.5, 0.75, 300), rng.uniform(0.75, 1, 600)]
    )
    probs = np.full((1000, 4), 0.0, dtype=np.float32)
    probs[:] = ((1 - conf) / 3)[:, None]
    probs[np.arange(1000), cls] = conf
    scores = observe(calm, oov, probs)
    assert scores is not None and max(scores.values()) < 0.05

    shifted = DriftMonitor(reference(), window=1000, min_events=300)
    scores = observe(shifted, *_batch(rng, 500, (0.8, 1.0), [3], (0.3, 0.5)))
    assert scores is not None
    assert all(scores[s] > 0.2 for s in ("oov_share", "predicted_class", "confidence"))


def test_window_forgets_old_events() -> None:
    rng = np.random.default_rng(1)
    monitor = DriftMonitor(reference(), window=400, min_events=100)
    observe(monitor, *_batch(rng, 400, (0.8, 1.0), [3], (0.3, 0.5)))
    # 2.5 windows of in-reference OOV in uneven batches wrap the ring buffer several times.
    for n in (150, 250, 333, 267):
        oov = rng.choice([0.1, 0.3, 0.6, 0.9], size=n, p=[0.7, 0.2, 0.08, 0.02])
        scores = observe(monitor, oov, _batch(rng, n, (0, 0.1), [0, 2, 3], (0.8, 1.0))[1])
    assert scores is not None and scores["oov_share"] < 0.1


def test_observer_exports_scores_for_the_model_it_uses_and_skips_models_without_reference() -> None:
    metrics = Metrics(CollectorRegistry())
    observer = DriftObserver(metrics, window=100, min_events=50)
    ref = small_reference()
    model = SimpleNamespace(version="v1", labels=LABELS, metadata={"reference": ref})
    observer.use(model)  # type: ignore[arg-type]
    rng = np.random.default_rng(2)
    oov, probs = _batch(rng, 60, (0.9, 1.0), [0, 1, 2, 3], (0.9, 1.0))
    batch = ScoredBatch([], [], SimpleNamespace(probs=probs, oov_share=oov), [], LABELS, "v1")  # type: ignore[arg-type]
    value = metrics.registry.get_sample_value
    assert value("stream_tagger_drift_score", {"signal": "oov_share"}) is None  # under min_events
    observer.observe(batch)
    assert value("stream_tagger_drift_score", {"signal": "oov_share"}) > 0.2
    assert value("stream_tagger_drift_score", {"signal": "predicted_class"}) < 0.2
    observer.use(SimpleNamespace(version="v0", labels=LABELS, metadata={}))  # type: ignore[arg-type]
    assert list(observer.observe(batch)) == []
    assert value("stream_tagger_drift_score", {"signal": "oov_share"}) is None  # no stale scores


def test_observer_skips_batches_of_another_model_version() -> None:
    # After a hot reload the hot path may still finish a batch the old model scored.
    metrics = Metrics(CollectorRegistry())
    observer = DriftObserver(metrics, window=100, min_events=50)
    observer.use(SimpleNamespace(version="v2", labels=LABELS, metadata={"reference": small_reference()}))  # type: ignore[arg-type]
    oov, probs = _batch(np.random.default_rng(4), 60, (0.9, 1.0), [0, 1, 2, 3], (0.9, 1.0))
    old = ScoredBatch([], [], SimpleNamespace(probs=probs, oov_share=oov), [], LABELS, "v1")  # type: ignore[arg-type]
    observer.observe(old)
    assert observer.scores() is None  # nothing entered the window
    observer.observe(replace(old, model_version="v2"))
    assert observer.scores() is not None


def test_observer_scores_are_computed_at_scrape_time_from_the_latest_window() -> None:
    metrics = Metrics(CollectorRegistry())
    observer = DriftObserver(metrics, window=50, min_events=50)
    ref = small_reference()
    observer.use(SimpleNamespace(version="v1", labels=LABELS, metadata={"reference": ref}))  # type: ignore[arg-type]
    rng = np.random.default_rng(3)
    value = metrics.registry.get_sample_value
    scraped = []
    for oov_range in ((0.9, 1.0), (0.0, 0.1)):  # all unseen, then all familiar (the reference: 90%)
        oov, probs = _batch(rng, 50, oov_range, [0, 1, 2, 3], (0.9, 1.0))
        batch = ScoredBatch([], [], SimpleNamespace(probs=probs, oov_share=oov), [], LABELS, "v1")  # type: ignore[arg-type]
        observer.observe(batch)
        scraped.append(value("stream_tagger_drift_score", {"signal": "oov_share"}))
    assert scraped[1] < scraped[0]  # the second scrape scored the second window


@pytest.mark.parametrize(
    "broken",
    [
        {"predicted_class": {"some-other-label": 1.0}},  # names none of the model's labels
        {"oov_share": {"bins": [0.0, 0.5, 1.0], "freq": [0.0, 0.0]}},
        {"confidence": {"bins": [0.0, 0.5, 1.0], "freq": [1.0, float("nan")]}},
    ],
)
def test_a_reference_psi_cannot_use_turns_drift_off_and_scrapes_still_work(broken: dict) -> None:
    metrics = Metrics(CollectorRegistry())
    observer = DriftObserver(metrics, window=50, min_events=10)
    ref = {**small_reference(), **broken}
    observer.use(SimpleNamespace(version="v1", labels=LABELS, metadata={"reference": ref}))  # type: ignore[arg-type]
    oov, probs = _batch(np.random.default_rng(4), 20, (0.0, 1.0), [0, 1, 2, 3], (0.5, 1.0))
    observer.observe(ScoredBatch([], [], SimpleNamespace(probs=probs, oov_share=oov), [], LABELS, "v1"))  # type: ignore[arg-type]
    assert observer.scores() is None
    assert b"stream_tagger_drift_score{" not in generate_latest(metrics.registry)


def test_a_failing_scrape_time_source_exports_no_samples_instead_of_failing_the_scrape() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.drift_score.use(lambda: 1 / 0)  # type: ignore[arg-type,return-value]
    text = generate_latest(metrics.registry)
    assert b"stream_tagger_drift_score{" not in text
    assert b"# HELP stream_tagger_drift_score" in text  # the scrape itself went through
