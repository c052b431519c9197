"""Per-class confidence thresholds for auto-tagging, chosen on out-of-fold predictions.

Targets: the auto-tagged posts together reach ``target_precision``, and every class has at least
``min_coverage`` of its posts auto-tagged. Rule:

1. Calibration: per predicted class, the probability that the prediction is right, as a logistic
   function of the log-odds of its confidence (Platt scaling on the out-of-fold predictions). The raw
   confidences of the classes do not mean the same: an mlops prediction at 0.95 is wrong more often
   than a computer-vision one at 0.95, so one raw threshold cannot serve all four.
2. One cut on the calibrated probability, as low as the precision of all auto-tagged posts allows;
   a class's threshold is the confidence where its calibrated probability crosses the cut.
3. Floors: a class whose threshold would auto-tag (correctly) less than ``min_coverage`` of its posts
   gets the threshold that does, and the cut rises for the others until the precision holds again.
   Where no cut keeps the precision with these floors, they are lowered in steps of 0.05: a wrong tag
   costs more than a review.

Why not the earlier rule (each class alone reaches the target precision): for the small mlops class
(8% of posts) one confident error among its few dozen out-of-fold predictions pushed its threshold to
0.999 and sent half of the mlops posts to review; the precision that matters is that of the auto-tagged
posts as a whole (5 x 5-fold CV).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Never auto-tag below this confidence, whatever the CV says: with four classes it is barely a majority.
MIN_THRESHOLD = 0.5
#: How much a floor is lowered at a time when it cannot be kept at the target precision.
FLOOR_STEP = 0.05
#: Ridge on the two calibration weights: keeps them finite when a class has no error at all.
_RIDGE = 1e-2


def _log_odds(conf: np.ndarray) -> np.ndarray:
    conf = np.clip(conf, 1e-9, 1 - 1e-9)
    return np.log(conf / (1 - conf))


def platt(x: np.ndarray, correct: np.ndarray, steps: int = 50) -> tuple[float, float]:
    """``(a, b)`` of ``P(correct) = 1 / (1 + exp(-(a + b x)))`` by Newton's method (two weights: a few
    steps converge), slope kept >= 0 so that the calibrated probability never falls as confidence rises."""
    features = np.stack([np.ones_like(x), x], axis=1)
    w = np.zeros(2)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(features @ w)))
        grad = features.T @ (p - correct) + _RIDGE * w
        hess = (features * (p * (1 - p))[:, None]).T @ features + _RIDGE * np.eye(2)
        w -= np.linalg.solve(hess, grad)
    return float(w[0]), max(float(w[1]), 0.0)


def calibrated(probs: np.ndarray, y_true: np.ndarray, n_labels: int) -> np.ndarray:
    """Each post's calibrated probability that its top-1 class is right (step 1 of the rule)."""
    top, conf = probs.argmax(axis=1), probs.max(axis=1)
    out = np.zeros(len(conf))
    for c in range(n_labels):
        mine = top == c
        if mine.any():
            a, b = platt(_log_odds(conf[mine]), (y_true[mine] == c).astype(np.float64))
            out[mine] = 1 / (1 + np.exp(-(a + b * _log_odds(conf[mine]))))
    return out


def _floor(conf: np.ndarray, correct: np.ndarray, needed: float) -> float:
    """Highest threshold whose correct auto-tags number at least ``needed`` (``conf``: one class's
    predictions); 1.0 when nothing is needed, the lowest confidence when even all of them fall short."""
    if needed <= 0 or not len(conf):
        return 1.0
    order = np.argsort(-conf, kind="stable")
    reached = np.flatnonzero(np.cumsum(correct[order]) >= needed)
    return float(conf[order][reached[0]] if len(reached) else conf.min())


def choose_thresholds(
    probs: np.ndarray,
    y_true: np.ndarray,
    labels: Sequence[str],
    target_precision: float,
    min_coverage: float = 0.0,
) -> dict[str, float]:
    top, conf = probs.argmax(axis=1), probs.max(axis=1)
    cal = calibrated(probs, y_true, len(labels))
    right = top == y_true
    for coverage in np.arange(min_coverage, -FLOOR_STEP / 2, -FLOOR_STEP):
        floor = [
            _floor(conf[top == c], right[top == c], coverage * np.sum(y_true == c))
            for c in range(len(labels))
        ]
        best = None
        for cut in np.unique(cal)[::-1]:
            admitted = cal >= cut
            th = np.array(
                [min(floor[c], conf[admitted & (top == c)].min(initial=1.0)) for c in range(len(labels))]
            )
            th = np.maximum(th, MIN_THRESHOLD)
            mask = conf >= th[top]
            if mask.any() and right[mask].mean() >= target_precision:
                best = th  # the lowest cut that keeps the precision: the most coverage
        if best is not None:
            return {label: float(best[c]) for c, label in enumerate(labels)}
    return dict.fromkeys(labels, 1.0)


def auto_tag_mask(probs: np.ndarray, labels: Sequence[str], thresholds: dict[str, float]) -> np.ndarray:
    """Which posts the UI would tag without a human: top-1 confidence clears its class's threshold."""
    top = probs.argmax(axis=1)
    per_class = np.array([thresholds[label] for label in labels], dtype=np.float64)
    return probs.max(axis=1) >= per_class[top] - 1e-9


def auto_tag_precision(figures: dict) -> float | None:
    """The precision of ``masked_figures`` (overall or one class's), None when no post was auto-tagged:
    the figures hold 1.0 there (their consumers weigh precision by ``n_auto``), which must not read as
    perfect."""
    return figures["precision"] if figures["n_auto"] else None


def precision_text(figures: dict) -> str:
    """``auto_tag_precision`` to 3 decimals, or "undefined"."""
    precision = auto_tag_precision(figures)
    return "undefined" if precision is None else f"{precision:.3f}"
