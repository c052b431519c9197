"""Threshold choice: lowest per-class threshold that keeps auto-tagged precision at the target."""

from __future__ import annotations

import numpy as np

from stream_tagger.model.thresholds import MIN_THRESHOLD, auto_tag_mask, choose_thresholds

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
