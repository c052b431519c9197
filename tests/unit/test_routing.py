"""Routing rules: thresholds, top-k, author tags, review."""

from __future__ import annotations

import numpy as np
import pytest

from stream_tagger.events import TagScore
from stream_tagger.worker.route import Outcome, label_thresholds, normalise_tag, route_batch, threshold_vector

LABELS = ("computer-vision", "mlops", "natural-language-processing", "other")
THRESHOLDS = np.array([0.5, 0.4, 0.5, 0.6], dtype=np.float32)


def route(rows: list[list[float]], authors: list[list[str]] | None = None, top_k: int = 2) -> list[Outcome]:
    probs = np.array(rows, dtype=np.float32)
    return route_batch(probs, LABELS, THRESHOLDS, authors or [[] for _ in rows], top_k)


def test_confident_prediction_is_tagged() -> None:
    [outcome] = route([[0.8, 0.1, 0.05, 0.05]])
    assert outcome == Outcome("tagged", [TagScore("computer-vision", 0.8)])


def test_every_tag_over_its_own_threshold_is_suggested_most_confident_first() -> None:
    [outcome] = route([[0.5, 0.45, 0.03, 0.02]])
    assert [s.tag for s in outcome.scores] == ["computer-vision", "mlops"]


def test_top_k_caps_the_suggestions() -> None:
    [outcome] = route([[0.5, 0.45, 0.03, 0.02]], top_k=1)
    assert [s.tag for s in outcome.scores] == ["computer-vision"]


def test_under_threshold_goes_to_review_with_top_k_candidates() -> None:
    [outcome] = route([[0.3, 0.35, 0.2, 0.15]])
    assert outcome.status == "review"
    assert outcome.scores == [TagScore("mlops", 0.35), TagScore("computer-vision", 0.3)]


def test_per_label_thresholds_apply() -> None:
    # 0.55 clears computer-vision (0.5) but the same value would not clear other (0.6).
    tagged, review = route([[0.55, 0.1, 0.1, 0.25], [0.1, 0.1, 0.25, 0.55]])
    assert tagged.status == "tagged"
    assert review.status == "review"


def test_author_tags_are_never_suggested_again() -> None:
    [outcome] = route([[0.5, 0.45, 0.03, 0.02]], authors=[["Computer Vision"]])
    assert [s.tag for s in outcome.scores] == ["mlops"]


def test_only_author_tags_cleared_means_tagged_with_nothing_new() -> None:
    [outcome] = route([[0.9, 0.05, 0.03, 0.02]], authors=[["computer_vision"]])
    assert outcome == Outcome("tagged", [])


def test_confidences_are_rounded_for_stable_output() -> None:
    [outcome] = route([[0.912345678, 0.05, 0.03, 0.007654322]])
    assert outcome.scores[0].confidence == 0.9123


def test_each_row_gets_one_outcome_in_order() -> None:
    outcomes = route([[0.9, 0.05, 0.03, 0.02], [0.3, 0.3, 0.2, 0.2], [0.05, 0.05, 0.05, 0.85]])
    assert [o.status for o in outcomes] == ["tagged", "review", "tagged"]
    assert outcomes[2].scores[0].tag == "other"


def test_threshold_vector_uses_model_thresholds_or_override() -> None:
    per_label = dict(zip(LABELS, [0.1, 0.2, 0.3, 0.4], strict=True))
    assert threshold_vector(LABELS, per_label).tolist() == pytest.approx([0.1, 0.2, 0.3, 0.4])
    assert threshold_vector(LABELS, per_label, override=0.7).tolist() == pytest.approx([0.7] * 4)
    with pytest.raises(ValueError, match="other"):
        threshold_vector(LABELS, {k: v for k, v in per_label.items() if k != "other"})


def test_label_thresholds_name_what_model_info_shows() -> None:
    """Only the served labels, with the override in place of every stored value when it is set."""
    stored = {**dict(zip(LABELS, [0.1, 0.2, 0.3, 0.4], strict=True)), "retired-tag": 0.9}
    assert label_thresholds(LABELS, stored) == dict(zip(LABELS, [0.1, 0.2, 0.3, 0.4], strict=True))
    assert label_thresholds(LABELS, stored, override=0.7) == dict.fromkeys(LABELS, 0.7)


def test_normalise_tag() -> None:
    assert normalise_tag(" Natural Language_Processing ") == "natural-language-processing"


def reference_route(
    probs: np.ndarray, labels: tuple[str, ...], thresholds: np.ndarray, authors: list[list[str]], top_k: int
) -> list[Outcome]:
    """The rules of the module docstring, one row at a time, as plainly as they can be written."""
    outcomes = []
    for row, given in zip(probs.tolist(), authors, strict=True):
        order = sorted(range(len(labels)), key=lambda j: -np.float32(row[j]))  # stable, like argsort
        taken = {normalise_tag(tag) for tag in given}
        cleared = [j for j in order if np.float32(row[j]) >= thresholds[j]]
        if cleared:
            picked = [j for j in cleared if normalise_tag(labels[j]) not in taken][:top_k]
            outcomes.append(Outcome("tagged", [TagScore(labels[j], round(float(row[j]), 4)) for j in picked]))
        else:
            picked = order[:top_k]
            outcomes.append(Outcome("review", [TagScore(labels[j], round(float(row[j]), 4)) for j in picked]))
    return outcomes


@pytest.mark.parametrize("top_k", [1, 2, 4, 5])
def test_vectorised_routing_agrees_with_the_rules_row_by_row(top_k: int) -> None:
    rng = np.random.default_rng(top_k)
    probs = rng.dirichlet(np.full(len(LABELS), 0.4), size=3_000).astype(np.float32)
    probs[::50] = 0.25  # ties: the stable order keeps label order
    spellings = ["Computer Vision", "mlops", "natural_language_processing", "OTHER", "gans", ""]
    authors = [list(rng.choice(spellings, size=rng.integers(0, 3))) for _ in range(len(probs))]
    assert route_batch(probs, LABELS, THRESHOLDS, authors, top_k) == reference_route(
        probs, LABELS, THRESHOLDS, authors, top_k
    )


def test_an_empty_batch_routes_to_nothing() -> None:
    assert route_batch(np.zeros((0, len(LABELS)), np.float32), LABELS, THRESHOLDS, [], 2) == []


def test_author_tags_must_come_one_list_per_row() -> None:
    with pytest.raises(ValueError, match="2 rows of probabilities but 1 lists"):
        route([[0.9, 0.05, 0.03, 0.02], [0.2, 0.7, 0.05, 0.05]], authors=[["mlops"]])
