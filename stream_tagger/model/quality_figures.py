"""Classification figures shared by training (cross-validation) and ``evaluate`` (ONNX on a CSV)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from stream_tagger.model.thresholds import auto_tag_mask


def classification_figures(y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]) -> dict:
    """Per-class precision/recall/F1/support, macro and weighted averages, confusion matrix.

    ``y_pred`` may hold -1 (no prediction, e.g. the keyword baseline abstaining): it counts as wrong."""
    idx = list(range(len(labels)))
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=idx, zero_division=0)
    out: dict = {
        "per_class": {
            label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
            for i, label in enumerate(labels)
        },
        "accuracy": float(np.mean(y_true == y_pred)) if len(y_true) else 0.0,
        "n": len(y_true),
    }
    for avg in ("macro", "weighted"):
        ap, ar, af, _ = precision_recall_fscore_support(
            y_true, y_pred, labels=idx, average=avg, zero_division=0
        )
        out[avg] = {"precision": float(ap), "recall": float(ar), "f1": float(af)}
    out["confusion_matrix"] = {
        "labels": list(labels),
        "matrix": confusion_matrix(y_true, y_pred, labels=idx).tolist(),  # rows: true, columns: predicted
    }
    return out


def auto_tag_figures(
    probs: np.ndarray, y_true: np.ndarray, labels: Sequence[str], thresholds: dict[str, float]
) -> dict:
    """The UI's operating point: precision of the posts tagged without review, and their share; per
    class, the precision of its auto-tags and the share of its posts (true tag) auto-tagged."""
    return {
        **masked_figures(probs, y_true, labels, auto_tag_mask(probs, labels, thresholds)),
        "thresholds": dict(thresholds),
    }


def masked_figures(probs: np.ndarray, y_true: np.ndarray, labels: Sequence[str], mask: np.ndarray) -> dict:
    """``auto_tag_figures`` of the posts ``mask`` admits, whatever thresholds admitted them."""
    top = probs.argmax(axis=1)
    n = int(mask.sum())
    correct = int((top[mask] == y_true[mask]).sum())
    per_class = {}
    for c, label in enumerate(labels):
        tagged = mask & (top == c)
        mine = y_true == c
        per_class[label] = {
            "precision": float(np.mean(y_true[tagged] == c)) if tagged.any() else 1.0,
            "coverage": float(np.mean(mask[mine])) if mine.any() else 0.0,
            "n_auto": int(tagged.sum()),
            "n": int(mine.sum()),
        }
    return {
        "precision": correct / n if n else 1.0,
        "coverage": n / len(y_true) if len(y_true) else 0.0,
        "n_auto": n,
        "per_class": per_class,
    }


def histogram(values: np.ndarray, bins: Sequence[float]) -> dict:
    """A frequency histogram (shares, summing to 1) in the shape the drift monitor reads."""
    counts, _ = np.histogram(np.clip(values, bins[0], bins[-1]), bins=np.asarray(bins))
    total = max(int(counts.sum()), 1)
    return {"bins": [float(b) for b in bins], "freq": [float(c) / total for c in counts]}
