"""The promotion gate: may a new model replace the serving one? Judged on the same labelled data.

Two figures decide, because they are what users feel: weighted F1 (how often the top tag is right,
across the class mix) and auto-tag precision (how often a tag shown without review is right). A new
model worse on either is refused; a better coverage cannot buy back precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from stream_tagger.model.evaluate import evaluate_model

#: (name, path in the evaluate report) of the figures that decide; shown first in the comparison.
GATE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("weighted F1", ("weighted", "f1")),
    ("auto-tag precision", ("auto_tag", "precision")),
)
#: Figures shown for context only.
CONTEXT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("auto-tag coverage", ("auto_tag", "coverage")),
    ("accuracy", ("accuracy",)),
    ("macro F1", ("macro", "f1")),
    ("weighted precision", ("weighted", "precision")),
    ("weighted recall", ("weighted", "recall")),
)


def figure(report: dict, path: tuple[str, ...]) -> float:
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

    @property
    def worse(self) -> bool:
        return self.decides and not self.new >= self.baseline  # a NaN figure is worse, never a pass


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
    rows = [Row(name, figure(new, path), figure(baseline, path), True) for name, path in GATE]
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
    return compare_reports(evaluate_model(new_dir, csv_paths), evaluate_model(baseline_dir, csv_paths))
