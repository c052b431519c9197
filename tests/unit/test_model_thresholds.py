"""Threshold choice: calibrated per class, one cut as low as the precision of all auto-tags allows,
floors of coverage per class; the per-class auto-tag figures."""

from __future__ import annotations

import numpy as np

from stream_tagger.model.model_card import _auto_tag_rows
from stream_tagger.model.quality_figures import auto_tag_figures
from stream_tagger.model.thresholds import (
    MIN_THRESHOLD,
    auto_tag_mask,
    auto_tag_precision,
    calibrated,
    choose_thresholds,
    platt,
    precision_text,
)

LABELS = ("a", "b")


def _probs(conf_a: list[float]) -> np.ndarray:
    c = np.array(conf_a)
    return np.stack([c, 1 - c], axis=1)


def test_threshold_stops_before_the_first_costly_error() -> None:
    # predicted "a" with confidence 0.99..0.6; the one at 0.7 is wrong.
    probs = _probs([0.99, 0.95, 0.9, 0.8, 0.7, 0.6])
    y = np.array([0, 0, 0, 0, 1, 0])
    thr = choose_thresholds(probs, y, LABELS, target_precision=0.97)
    assert thr["a"] == 0.8
    # At 0.8 precision target, the error is affordable: 5 of 6 right = 0.83.
    assert choose_thresholds(probs, y, LABELS, target_precision=0.8)["a"] == 0.6


def test_threshold_never_below_the_floor() -> None:
    probs = np.array([[0.9, 0.05, 0.05], [0.45, 0.3, 0.25]])  # three classes: top-1 can be under 0.5
    y = np.array([0, 0])
    assert choose_thresholds(probs, y, ("a", "b", "c"), target_precision=0.97)["a"] == MIN_THRESHOLD


def test_ties_admit_the_whole_tie_run() -> None:
    probs = _probs([0.9, 0.8, 0.8])
    y = np.array([0, 0, 1])  # at 0.8 both tied posts come in: 2/3 precision
    assert choose_thresholds(probs, y, LABELS, target_precision=0.97)["a"] == 0.9


def test_unreachable_or_absent_class_gets_threshold_one() -> None:
    probs = _probs([0.9, 0.8])
    y = np.array([1, 1])
    thr = choose_thresholds(probs, y, LABELS, target_precision=0.97)
    assert thr == {"a": 1.0, "b": 1.0}


def test_auto_tag_mask_uses_the_threshold_of_the_top_class() -> None:
    probs = _probs([0.9, 0.7, 0.2, 0.35])  # top: a, a, b(0.8), b(0.65)
    mask = auto_tag_mask(probs, LABELS, {"a": 0.8, "b": 0.7})
    assert mask.tolist() == [True, False, True, False]


def _two_classes(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A big, reliable class "a" (400 posts) and a small one "b" (60) whose predictions are wrong more
    often at the same confidence: the shape of computer-vision against mlops."""
    rng = np.random.default_rng(seed)
    conf_a = rng.uniform(0.5, 1.0, 400)
    right_a = rng.uniform(size=400) < conf_a**0.1  # a is right more often than its confidence says
    conf_b = rng.uniform(0.5, 1.0, 60)
    right_b = rng.uniform(size=60) < conf_b**2
    probs = np.vstack([_probs(list(conf_a)), _probs(list(1 - conf_b))])
    y = np.concatenate([np.where(right_a, 0, 1), np.where(right_b, 1, 0)])
    return probs, y


def test_all_auto_tags_together_reach_the_target_and_every_class_its_floor() -> None:
    probs, y = _two_classes()
    thr = choose_thresholds(probs, y, LABELS, target_precision=0.95, min_coverage=0.6)
    fig = auto_tag_figures(probs, y, LABELS, thr)
    assert fig["precision"] >= 0.95
    assert min(pc["coverage"] for pc in fig["per_class"].values()) >= 0.6
    # Each class alone at 0.95 (the earlier rule) covers less of the small class.
    alone = {
        label: choose_thresholds(probs[probs.argmax(1) == c], y[probs.argmax(1) == c], LABELS, 0.95)[label]
        for c, label in enumerate(LABELS)
    }
    assert (
        fig["per_class"]["b"]["coverage"]
        > auto_tag_figures(probs, y, LABELS, alone)["per_class"]["b"]["coverage"]
    )


def test_floors_give_way_to_the_precision() -> None:
    probs, y = _two_classes()
    thr = choose_thresholds(probs, y, LABELS, target_precision=0.97, min_coverage=1.0)
    fig = auto_tag_figures(probs, y, LABELS, thr)
    assert fig["precision"] >= 0.97 and fig["per_class"]["b"]["coverage"] < 1.0


def test_calibration_is_monotone_and_follows_the_error_rate() -> None:
    probs, y = _two_classes(1)
    cal = calibrated(probs, y, len(LABELS))
    conf, top = probs.max(axis=1), probs.argmax(axis=1)
    for c in range(len(LABELS)):
        order = np.argsort(conf[top == c])
        assert np.all(np.diff(cal[top == c][order]) >= -1e-12)
        assert abs(cal[top == c].mean() - np.mean(y[top == c] == c)) < 0.02  # logistic fits match the mean
    a, b = platt(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0, 1.0]))  # no error at all
    assert np.isfinite(a) and 0 <= b < 1e3


def test_auto_tag_figures_per_class() -> None:
    probs = _probs([0.9, 0.9, 0.6, 0.2, 0.1])  # top: a, a, a(0.6), b(0.8), b(0.9)
    y = np.array([0, 1, 0, 1, 1])
    fig = auto_tag_figures(probs, y, LABELS, {"a": 0.8, "b": 0.85})
    assert fig["n_auto"] == 3 and fig["precision"] == 2 / 3
    assert fig["per_class"]["a"] == {"precision": 0.5, "coverage": 0.5, "n_auto": 2, "n": 2}
    assert fig["per_class"]["b"] == {"precision": 1.0, "coverage": 2 / 3, "n_auto": 1, "n": 3}


def test_precision_over_no_auto_tagged_post_is_undefined_wherever_it_is_shown() -> None:
    assert auto_tag_precision({"precision": 1.0, "n_auto": 0}) is None
    assert precision_text({"precision": 0.98765, "n_auto": 3}) == "0.988"
    served = {
        "precision": 1.0,
        "coverage": 0.0,
        "n_auto": 0,
        "per_class": {"mlops": {"precision": 1.0, "coverage": 0.0, "n_auto": 0}},
    }
    rows = _auto_tag_rows(["mlops"], {"mlops": 0.9}, served, None).splitlines()
    assert rows == [
        "| mlops | 0.900 | undefined | 0.000 | - | - |",
        "| all posts |  | undefined | 0.000 | - | - |",
    ]
