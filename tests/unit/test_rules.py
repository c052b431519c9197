"""Keyword baseline: approved tags only, whole-word matching, None when nothing fires."""

from __future__ import annotations

from stream_tagger.model.keyword_baseline import KEYWORDS, KeywordBaseline
from stream_tagger.settings import APPROVED_TAGS


def test_clear_cases() -> None:
    rules = KeywordBaseline()
    assert rules.predict(
        [
            "YOLO object detection on video frames",
            "Fine-tuning BERT for sentiment analysis of text",
            "Deploying models to production with Docker and Kubernetes",
            "Reinforcement learning for board games",
        ]
    ) == ["computer-vision", "natural-language-processing", "mlops", "other"]


def test_no_keyword_gives_none_and_substrings_do_not_fire() -> None:
    rules = KeywordBaseline()
    assert rules.predict(["", "!!!", "An organ of the body", "Imagery? no: imagination"]) == [None] * 4


def test_most_hits_win_and_ties_go_to_the_more_specific_tag() -> None:
    rules = KeywordBaseline()
    assert rules.predict_one("image text text") == "natural-language-processing"
    assert rules.predict_one("image deployment") == "mlops"  # 1-1 tie: mlops is listed first


def test_only_approved_tags_and_case_insensitive() -> None:
    assert set(KEYWORDS) == set(APPROVED_TAGS)
    assert KeywordBaseline().predict_one("IMAGE SEGMENTATION") == "computer-vision"
