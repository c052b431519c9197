"""The promotion gate: may a new model replace the serving one? Judged on the same labelled data.

Three figures decide, because they are what users feel: weighted F1 (how often the top tag is right,
across the class mix), auto-tag precision (how often a tag shown without review is right) and auto-tag
coverage (the share of posts tagged without review). A new model worse on weighted F1 or auto-tag
precision is refused, and so is one whose coverage is more than ``COVERAGE_TOLERANCE`` (0.05) below the
serving model's: a better coverage cannot buy back precision, and a precision kept by showing fewer
tags is no gain either. A candidate's precision over no auto-tagged post is undefined, and refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stream_tagger.model.evaluate import evaluate_model
from stream_tagger.model.thresholds import auto_tag_precision

#: How far the new model's auto-tag coverage may fall below the serving model's (absolute share of
#: posts): beyond it, more than one post in twenty that was tagged at once goes to review instead.
COVERAGE_TOLERANCE = 0.05

PRECISION = ("auto_tag", "precision")
#: (name, path in the evaluate report, how far below the baseline passes) of the figures that decide;
#: shown first in the comparison.
GATE: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("weighted F1", ("weighted", "f1"), 0.0),
    ("auto-tag precision", PRECISION, 0.0),
    (
        f"auto-tag coverage (at most {COVERAGE_TOLERANCE:.2f} below)",
        ("auto_tag", "coverage"),
        COVERAGE_TOLERANCE,
    ),
)
#: Figures shown for context only.
CONTEXT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("accuracy", ("accuracy",)),
    ("macro F1", ("macro", "f1")),
    ("weighted precision", ("weighted", "precision")),
    ("weighted recall", ("weighted", "recall")),
)


def figure(report: dict, path: tuple[str, ...]) -> float:
    if path == PRECISION:  # a model that shows no tag has no precision to compare: NaN
        precision = auto_tag_precision(report["auto_tag"])
        return math.nan if precision is None else precision
    value: object = report
    for key in path:
        value = value[key]  # type: ignore[index]
    return float(value)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Row:
    name: str
    new: float
    baseline: float
    decides: bool
    tolerance: float = 0.0  # how far below the baseline still passes

    @property
    def worse(self) -> bool:
        # A figure the candidate lacks (NaN: undefined) is worse, never a pass; one the serving model
        # lacks leaves nothing to beat. Rounded: a drop of exactly the tolerance passes (0.20 - 0.15 is
        # 0.05000000000000002 in floats).
        return self.decides and (math.isnan(self.new) or round(self.baseline - self.new, 9) > self.tolerance)


@dataclass(frozen=True)
class Comparison:
    new_version: str
    baseline_version: str
    rows: list[Row]

    @property
    def failures(self) -> list[Row]:
        return [row for row in self.rows if row.worse]

    @property
    def passed(self) -> bool:
        return not self.failures


def compare_reports(new: dict, baseline: dict) -> Comparison:
    """Side by side figures of two ``evaluate_model`` reports on the same data."""
    rows = []
    for name, path, below in GATE:
        if path == PRECISION:  # say why a precision is missing: the table shows only "nan"
            by = [
                who
                for who, r in (("the new model", new), ("the baseline", baseline))
                if auto_tag_precision(r["auto_tag"]) is None
            ]
            if by:
                name += f" (undefined: no post auto-tagged by {' or '.join(by)})"
        rows.append(Row(name, figure(new, path), figure(baseline, path), True, below))
    rows += [Row(name, figure(new, path), figure(baseline, path), False) for name, path in CONTEXT]
    labels = new["confusion_matrix"]["labels"]
    rows += [
        Row(
            f"F1 {label}",
            figure(new, ("per_class", label, "f1")),
            figure(baseline, ("per_class", label, "f1")),
            False,
        )
        for label in labels
        if label in baseline["per_class"]
    ]
    return Comparison(new["model"]["version"], baseline["model"]["version"], rows)


def compare_models(new_dir: Path, baseline_dir: Path, csv_paths: Sequence[Path]) -> Comparison:
    """Both models judged as a worker serves them. No parity check: it would unpickle each folder's
    ``pipeline.joblib``, running whatever code a candidate's pickle holds, for a figure the gate does
    not use (training recorded the candidate's parity in its metadata)."""
    new = evaluate_model(new_dir, csv_paths, parity=False)
    return compare_reports(new, evaluate_model(baseline_dir, csv_paths, parity=False))
