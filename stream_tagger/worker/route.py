"""Prediction -> outcome: which tags a post gets, or why a human must look at it. Pure functions.

Rules (the product's promise, so they live in one place):
- a tag is suggested only when its probability clears that tag's threshold; nothing under the
  threshold is ever published as a tag;
- a tag the author already gave is never suggested again (compared after normalising case, spaces
  and underscores, so "Computer Vision" matches ``computer-vision``);
- at most ``top_k`` suggestions, most confident first;
- when no tag clears its threshold the post goes to review with the ``top_k`` most likely candidates.

Confidences are rounded to 4 decimals: the same text scored in a different batch can differ in the
last float bits, and the published value should not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from itertools import pairwise
from typing import Literal

import msgspec
import numpy as np

from stream_tagger.events import TagScore


class Outcome(msgspec.Struct):
    """One post's routing decision. Mutable on purpose: batch observers may annotate it before encoding.

    ``scores`` are the suggested tags when ``status`` is ``tagged`` and the review candidates when it
    is ``review``.
    """

    status: Literal["tagged", "review"]
    scores: list[TagScore]
    duplicate_of: str | None = None


def normalise_tag(tag: str) -> str:
    return tag.strip().casefold().replace(" ", "-").replace("_", "-")


def label_thresholds(
    labels: Sequence[str], thresholds: Mapping[str, float], override: float | None = None
) -> dict[str, float]:
    """The threshold each label is served with: ``override`` (one value for every label) wins when set."""
    if override is not None:
        return dict.fromkeys(labels, override)
    missing = [label for label in labels if label not in thresholds]
    if missing:
        raise ValueError(f"no threshold for labels {missing}")
    return {label: thresholds[label] for label in labels}


def threshold_vector(
    labels: Sequence[str], thresholds: Mapping[str, float], override: float | None = None
) -> np.ndarray:
    """``label_thresholds`` in label order, as ``route_batch`` compares them with a batch's rows."""
    served = label_thresholds(labels, thresholds, override)
    return np.array([served[label] for label in labels], dtype=np.float32)


_STATUS: tuple[Literal["review"], Literal["tagged"]] = ("review", "tagged")  # by "any tag cleared"


@dataclass(frozen=True, slots=True)
class Routes:
    """A batch's routing decisions as columns, row i for row i of the probabilities: row i publishes
    the labels ``orders[i][published[i]]`` (indices into ``labels``, most confident first) with the
    ``confidences[i][published[i]]``. The pipeline's dedup window keeps these columns for a whole
    batch with a few numpy writes rather than one packed object per post."""

    labels: Sequence[str]
    tagged: np.ndarray  # [n] bool: some label cleared its threshold
    orders: np.ndarray  # [n, len(labels)] label indices, most probable first
    confidences: np.ndarray  # [n, len(labels)] float64, in that order, rounded to 4 decimals
    published: np.ndarray  # [n, len(labels)] bool, in that order

    def outcomes(self) -> list[Outcome]:
        """One ``Outcome`` per row, built by ``map`` over flat lists: the Python left is one
        ``TagScore`` per published score and one ``Outcome`` per row (a per-row loop with the same
        rules took ~13% of the hot-path thread's GIL time at saturation)."""
        names = map(list(self.labels).__getitem__, self.orders[self.published].tolist())
        scores = list(map(TagScore, names, self.confidences[self.published].tolist()))
        ends = np.cumsum(self.published.sum(axis=1)).tolist()
        per_row = [scores[start:end] for start, end in pairwise([0, *ends])]
        return list(map(Outcome, map(_STATUS.__getitem__, self.tagged.tolist()), per_row))


def concat_routes(pieces: Sequence[Routes]) -> Routes:
    """The routes of consecutive runs of rows as one (the pipeline routes around a row that raises)."""
    if len(pieces) == 1:
        return pieces[0]
    columns = ("tagged", "orders", "confidences", "published")
    return Routes(pieces[0].labels, *(np.concatenate([getattr(p, c) for p in pieces]) for c in columns))


def route_batch(
    probs: np.ndarray,
    labels: Sequence[str],
    thresholds: np.ndarray,
    author_tags: Sequence[Sequence[str]],
    top_k: int,
) -> list[Outcome]:
    """Route every row of ``probs`` (shape [n, len(labels)]); the result is aligned with the rows."""
    return route_columns(probs, labels, thresholds, author_tags, top_k).outcomes()


def route_columns(
    probs: np.ndarray,
    labels: Sequence[str],
    thresholds: np.ndarray,
    author_tags: Sequence[Sequence[str]],
    top_k: int,
) -> Routes:
    """``route_batch`` as columns, decided in numpy for the whole batch at once."""
    n, width = probs.shape
    if len(author_tags) != n:
        raise ValueError(f"{n} rows of probabilities but {len(author_tags)} lists of author tags")
    orders = np.argsort(-probs, axis=1, kind="stable")
    cleared = np.take_along_axis(probs >= thresholds, orders, axis=1)  # each row in its own order
    tagged = cleared.any(axis=1)
    offerable = cleared & ~_author_given(orders, labels, author_tags)
    published = np.where(
        tagged[:, None],
        offerable & (np.cumsum(offerable, axis=1) <= top_k),  # the top_k most confident offerable
        np.arange(width) < top_k,  # review: the top_k candidates
    )
    confidences = np.round(np.take_along_axis(probs, orders, axis=1).astype(np.float64), 4)
    return Routes(labels, tagged, orders, confidences, published)


def _author_given(
    orders: np.ndarray, labels: Sequence[str], author_tags: Sequence[Sequence[str]]
) -> np.ndarray:
    """[n, len(labels)] in ``orders``' layout: True where the author already gave that label."""
    given = np.zeros(orders.shape, dtype=bool)
    normalised = [normalise_tag(label) for label in labels]
    for row, tags in enumerate(author_tags):
        if tags:
            taken = {normalise_tag(tag) for tag in tags}
            given[row] = [normalised[j] in taken for j in orders[row].tolist()]
    return given
