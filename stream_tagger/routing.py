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


def route_batch(
    probs: np.ndarray,
    labels: Sequence[str],
    thresholds: np.ndarray,
    author_tags: Sequence[Sequence[str]],
    top_k: int,
) -> list[Outcome]:
    """Route every row of ``probs`` (shape [n, len(labels)]); the result is aligned with the rows."""
    orders = np.argsort(-probs, axis=1, kind="stable").tolist()
    cleared = (probs >= thresholds).tolist()
    rounded = np.round(probs.astype(np.float64), 4).tolist()
    normalised = [normalise_tag(label) for label in labels]
    outcomes: list[Outcome] = []
    for order, clear, prob, given in zip(orders, cleared, rounded, author_tags, strict=True):
        if any(clear):
            taken = {normalise_tag(tag) for tag in given}
            suggested = [
                TagScore(labels[j], prob[j]) for j in order if clear[j] and normalised[j] not in taken
            ]
            outcomes.append(Outcome("tagged", suggested[:top_k]))
        else:
            outcomes.append(Outcome("review", [TagScore(labels[j], prob[j]) for j in order[:top_k]]))
    return outcomes
