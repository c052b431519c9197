"""Labelled posts from CSV files, validated before any training starts.

A bad file must fail with its name and line, before a model folder is even created: a half-trained
model from a truncated export is worse than no model.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from stream_tagger.events import compose_text
from stream_tagger.settings import APPROVED_TAGS

REQUIRED_COLUMNS = ("id", "created_on", "title", "description", "tag")
#: Stratified 5-fold cross-validation (threshold choice, metrics) needs this many posts of every class.
MIN_PER_CLASS = 5


class DatasetError(ValueError):
    """A CSV that cannot be trained or evaluated on; the message names the file and line."""


def compose_texts(titles: Sequence[str], descriptions: Sequence[str]) -> list[str]:
    """Title and description as one text each, exactly as the worker composes them (``compose_text``)."""
    return [compose_text(t, d) for t, d in zip(titles, descriptions, strict=True)]


@dataclass(frozen=True)
class Dataset:
    ids: tuple[str, ...]
    titles: tuple[str, ...]
    descriptions: tuple[str, ...]
    tags: tuple[str, ...]
    sha256: str  # of the files' bytes in the order given: names the training data in the metadata
    sources: tuple[dict[str, object], ...]  # per file: path, sha256, rows

    @property
    def texts(self) -> list[str]:
        """Exactly what the worker feeds the model (``RawContent.text``)."""
        return compose_texts(self.titles, self.descriptions)

    def __len__(self) -> int:
        return len(self.ids)

    def class_counts(self) -> dict[str, int]:
        counts = Counter(self.tags)
        return {tag: counts.get(tag, 0) for tag in APPROVED_TAGS}


def row_problem(row: Mapping[str, str]) -> str | None:
    """Why a row of a training CSV cannot be learnt from, or None. The feedback export skips such a row
    by this same check, so that it never writes a file the trainer refuses."""
    if not row["id"].strip():
        return "empty id"
    if not (row["title"].strip() or row["description"].strip()):
        return "empty title and description"
    if row["tag"] not in APPROVED_TAGS:
        return f"unknown tag {row['tag']!r} (approved: {', '.join(APPROVED_TAGS)})"
    return None


def _read_one(path: Path) -> tuple[list[dict[str, str]], str]:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DatasetError(f"{path}:{line}: not UTF-8") from exc
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
    try:
        header = reader.fieldnames or []
        missing = [c for c in REQUIRED_COLUMNS if c not in header]
        if missing:
            raise DatasetError(
                f"{path}:1: missing column(s) {', '.join(missing)} (header: {','.join(header)})"
            )
        rows: list[dict[str, str]] = []
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or any(row[c] is None for c in REQUIRED_COLUMNS):
                raise DatasetError(f"{where}: expected {len(header)} fields, got a different number")
            problem = row_problem(row)
            if problem:
                raise DatasetError(f"{where}: {problem}")
            rows.append(row)
    except csv.Error as exc:
        raise DatasetError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from exc
    if not rows:
        raise DatasetError(f"{path}: no data rows")
    return rows, hashlib.sha256(data).hexdigest()


def load_dataset(paths: Sequence[Path], min_per_class: int = MIN_PER_CLASS) -> Dataset:
    """Read and validate CSVs; a post id seen again in a later file replaces the earlier row.

    Later files win so that feedback exports (corrections) can be appended after the base dataset."""
    if not paths:
        raise DatasetError("no CSV given")
    by_id: dict[str, dict[str, str]] = {}
    digest = hashlib.sha256()
    sources = []
    for path in paths:
        rows, sha = _read_one(Path(path))
        digest.update(sha.encode())
        sources.append({"path": str(path), "sha256": sha, "rows": len(rows)})
        for row in rows:
            by_id.pop(row["id"], None)  # re-insert so the order follows the latest occurrence
            by_id[row["id"]] = row
    rows = list(by_id.values())
    counts = Counter(r["tag"] for r in rows)
    short = [f"{tag} ({counts.get(tag, 0)})" for tag in APPROVED_TAGS if counts.get(tag, 0) < min_per_class]
    if short:
        names = ", ".join(str(p) for p in paths)
        raise DatasetError(f"{names}: too few examples (< {min_per_class}) for {', '.join(short)}")
    return Dataset(
        ids=tuple(r["id"] for r in rows),
        titles=tuple(r["title"] for r in rows),
        descriptions=tuple(r["description"] for r in rows),
        tags=tuple(r["tag"] for r in rows),
        sha256=digest.hexdigest(),
        sources=tuple(sources),
    )
