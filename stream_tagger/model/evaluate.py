"""Evaluate a served model (the ONNX artefact, through :class:`Predictor`) on labelled CSVs.

``evaluate_model`` returns one plain dict (JSON-ready) that both ``stream-tagger evaluate --json`` and
model comparison build on. Key paths: ``weighted.f1``, ``weighted.precision``, ``macro.*``,
``per_class.<tag>.{precision,recall,f1,support}``, ``confusion_matrix``, ``auto_tag.{precision,
coverage}``, ``slices.<name>``, ``baseline`` (keyword rules, same figures), ``parity.{checked, available,
label_agreement, max_prob_diff}`` (``available`` false and ``checked`` true: the folder has no
``pipeline.joblib``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

import joblib
import numpy as np

from stream_tagger.model.dataset import load_dataset
from stream_tagger.model.keyword_baseline import KeywordBaseline
from stream_tagger.model.predictor import Predictor
from stream_tagger.model.quality_figures import auto_tag_figures, classification_figures
from stream_tagger.model.versions import PIPELINE_FILE, ModelLoadError, resolve

#: A post this short gives the model little to go on; worth watching separately.
SHORT_WORDS = 8


def _slices(
    texts: list[str],
    descriptions: Sequence[str],
    y: np.ndarray,
    rules: list[str | None],
    labels: Sequence[str],
) -> dict[str, np.ndarray]:
    rule_idx = np.array([labels.index(r) if r is not None else -1 for r in rules])
    return {
        "short_text": np.array([len(t.split()) < SHORT_WORDS for t in texts], dtype=bool),
        "empty_description": np.array([not d.strip() for d in descriptions], dtype=bool),
        # The text names another class's keywords (the rules would tag it wrongly): the hard cases.
        "other_class_keywords": (rule_idx >= 0) & (rule_idx != y),
        "no_keywords": rule_idx < 0,
    }


# Where the pickled scikit-learn steps of older model versions were defined (docs/decisions/008).
_MOVED_MODULES = {
    "stream_tagger.model.features": "stream_tagger.model.featurise",
    "stream_tagger.model.featurizer": "stream_tagger.model.sklearn_transformers",
}


_NO_PIPELINE = {"available": False, "checked": True, "label_agreement": None, "max_prob_diff": None}
_NOT_CHECKED = {**_NO_PIPELINE, "checked": False}


def _parity(version_dir: Path, predictor: Predictor, texts: list[str], onnx_probs: np.ndarray) -> dict:
    """scikit-learn pipeline saved at training time vs the ONNX path, on these texts."""
    path = version_dir / PIPELINE_FILE
    if not path.is_file():
        return dict(_NO_PIPELINE)
    for old, new in _MOVED_MODULES.items():  # a version pickled before the package's layout by role
        sys.modules.setdefault(old, importlib.import_module(new))
    # A damaged or truncated pickle fails with whatever the byte it stops at leads to (EOFError,
    # UnpicklingError, KeyError, ...): each means this file cannot be used.
    try:
        pipeline = joblib.load(path)
    except Exception as exc:
        detail = " ".join(str(exc).split())
        reason = f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__
        raise ModelLoadError(f"{path}: cannot load the scikit-learn pipeline ({reason})") from exc
    sk = pipeline.predict_proba(texts)
    return {
        "available": True,
        "checked": True,
        "label_agreement": float(np.mean(sk.argmax(axis=1) == onnx_probs.argmax(axis=1))),
        "max_prob_diff": float(np.max(np.abs(sk - onnx_probs))) if len(texts) else 0.0,
    }


def evaluate_model(
    model_dir: Path,
    csv_paths: Sequence[Path],
    thresholds: dict[str, float] | None = None,
    *,
    parity: bool = True,
) -> dict:
    """All figures of one model on the labelled CSVs (``thresholds`` overrides the stored ones).

    ``parity`` compares the ONNX path with the scikit-learn pipeline saved beside it, which means
    unpickling ``pipeline.joblib``: code in that file runs. Without it only ONNX, numpy arrays and JSON
    are read, as a worker reads them (``parity`` is then reported as not checked)."""
    version_dir = resolve(Path(model_dir))
    predictor = Predictor(version_dir)
    data = load_dataset(list(csv_paths), min_per_class=0)
    labels = predictor.labels
    unknown = sorted(set(data.tags) - set(labels))
    if unknown:
        raise ValueError(f"{version_dir}: the data has tags the model does not know: {unknown}")
    texts = data.texts
    y = np.array([labels.index(t) for t in data.tags])
    probs = predictor.predict(texts).probs
    pred = probs.argmax(axis=1)
    thr = thresholds or predictor.thresholds
    rules = KeywordBaseline().predict(texts)
    rule_pred = np.array([labels.index(r) if r is not None else -1 for r in rules])
    fired = rule_pred >= 0
    report = {
        "model": {"version": predictor.version, "dir": str(version_dir)},
        "data": {"files": [str(p) for p in csv_paths], "rows": len(data), "sha256": data.sha256},
        **classification_figures(y, pred, labels),
        "auto_tag": auto_tag_figures(probs, y, labels, thr),
        "slices": {},
        "baseline": {
            **classification_figures(y, rule_pred, labels),
            "coverage": float(fired.mean()),
            "precision_when_fired": float(np.mean(rule_pred[fired] == y[fired])) if fired.any() else 0.0,
        },
        "parity": _parity(version_dir, predictor, texts, probs) if parity else dict(_NOT_CHECKED),
    }
    for name, mask in _slices(texts, data.descriptions, y, rules, labels).items():
        report["slices"][name] = {
            "n": int(mask.sum()),
            "accuracy": float(np.mean(pred[mask] == y[mask])) if mask.any() else None,
            "weighted_f1": classification_figures(y[mask], pred[mask], labels)["weighted"]["f1"]
            if mask.any()
            else None,
            "baseline_accuracy": float(np.mean(rule_pred[mask] == y[mask])) if mask.any() else None,
        }
    return report
