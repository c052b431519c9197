"""Per-class confidence thresholds for auto-tagging, chosen on out-of-fold predictions.

Rule: for each predicted class, the lowest threshold whose auto-tagged posts (top-1 = class and
confidence >= threshold) reach the target precision. Lowest = maximal coverage; per class because the
small ``mlops`` class is less certain than the big ones, and one global threshold would either let its
errors through or send the big classes to review for nothing. If every class reaches the target, so
does their union (a weighted mean of per-class precisions).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Never auto-tag below this confidence, whatever the CV says: with four classes it is barely a majority.
MIN_THRESHOLD = 0.5


def choose_thresholds(
    probs: np.ndarray, y_true: np.ndarray, labels: Sequence[str], target_precision: float
) -> dict[str, float]:
    top = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    out: dict[str, float] = {}
    for c, label in enumerate(labels):
        mine = top == c
        order = np.argsort(-conf[mine], kind="stable")
        c_conf = conf[mine][order]
        correct = (y_true[mine][order] == c).astype(np.float64)
        if not len(c_conf):
            out[label] = 1.0
            continue
        precision = np.cumsum(correct) / np.arange(1, len(correct) + 1)
        # Ties: a threshold admits every post at that confidence, so only the last of a tie run counts.
        last_of_tie = np.append(c_conf[1:] != c_conf[:-1], True)
        ok = np.flatnonzero((precision >= target_precision) & last_of_tie)
        threshold = float(c_conf[ok[-1]]) if len(ok) else 1.0
        out[label] = max(threshold, MIN_THRESHOLD)
    return out


def auto_tag_mask(probs: np.ndarray, labels: Sequence[str], thresholds: dict[str, float]) -> np.ndarray:
    """Which posts the UI would tag without a human: top-1 confidence clears its class's threshold."""
    top = probs.argmax(axis=1)
    per_class = np.array([thresholds[label] for label in labels], dtype=np.float64)
    return probs.max(axis=1) >= per_class[top] - 1e-9
