"""The feedback join: corrections matched with predictions, parked when early, reviews resolved once."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from stream_tagger.events import Feedback, TaggedContent, TagScore
from stream_tagger.feedback import FeedbackJoin

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def tagged(content_id: str, tags: list[str], status: str = "tagged", author: list[str] | None = None,
           version: str = "v1") -> TaggedContent:
    return TaggedContent(id=content_id, status=status, tags=[TagScore(t, 0.9) for t in tags],  # type: ignore[arg-type]
                         author_tags=author or [], model_version=version, event_time=T0, processed_at=T0)


def fb(content_id: str, tags: list[str], source: str = "user", after: float = 60.0) -> Feedback:
    return Feedback(id=content_id, tags=tags, source=source, created_at=T0 + timedelta(seconds=after))  # type: ignore[arg-type]


def test_correction_is_judged_against_the_suggested_tags() -> None:
    join = FeedbackJoin({}, {})
    assert join.on_tagged(tagged("1", ["mlops"], author=["other"]), 0) == []
    verdict = join.on_feedback(fb("1", ["computer-vision", "other", "not-a-tag"]))
    assert verdict is not None
    assert verdict.judged.predicted == {"mlops"}
    assert verdict.judged.truth == {"computer-vision"}
    assert verdict.resolution is None and verdict.review_seconds is None


def test_early_feedback_is_parked_and_judged_when_the_prediction_arrives() -> None:
    join = FeedbackJoin({}, {})
    assert join.on_feedback(fb("1", ["mlops"])) is None
    assert join.on_feedback(fb("1", ["other"], source="author")) is None
    verdicts = join.on_tagged(tagged("1", ["mlops"]), 0)
    assert [v.judged.truth for v in verdicts] == [{"mlops"}, {"other"}]
    assert join.parked == {}


def test_first_prediction_wins_over_replays_and_echoes() -> None:
    join = FeedbackJoin({}, {})
    join.on_tagged(tagged("1", ["mlops"]), 0)
    join.on_tagged(tagged("1", ["other"], version="v2"), 0)
    verdict = join.on_feedback(fb("1", ["mlops"]))
    assert verdict is not None and verdict.judged.predicted == {"mlops"}


def test_reviewer_resolves_a_pending_item_once_with_the_time_it_took() -> None:
    join = FeedbackJoin({}, {})
    join.on_tagged(tagged("1", [], status="pending_review", author=["other"]), 0)
    first = join.on_feedback(fb("1", ["nlp-not-approved", "natural-language-processing", "other"],
                                source="reviewer", after=90))
    assert first is not None and first.review_seconds == 90.0
    assert first.resolution is not None
    assert first.resolution.status == "tagged"
    assert [t.tag for t in first.resolution.tags] == ["natural-language-processing"]
    assert first.resolution.author_tags == ["other"]
    again = join.on_feedback(fb("1", ["mlops"], source="reviewer", after=120))
    assert again is not None and again.resolution is None and again.review_seconds is None


def test_user_feedback_does_not_resolve_a_review() -> None:
    join = FeedbackJoin({}, {})
    join.on_tagged(tagged("1", [], status="pending_review"), 0)
    verdict = join.on_feedback(fb("1", ["mlops"]))
    assert verdict is not None and verdict.resolution is None


def test_tags_are_normalised_like_the_router_does() -> None:
    join = FeedbackJoin({}, {})
    join.on_tagged(tagged("1", [], status="pending_review", author=["Computer Vision"]), 0)
    verdict = join.on_feedback(fb("1", ["computer_vision", "Natural Language Processing"], source="reviewer"))
    assert verdict is not None and verdict.resolution is not None
    assert verdict.judged.truth == {"natural-language-processing"}
    assert [t.tag for t in verdict.resolution.tags] == ["natural-language-processing"]


class RestoredTable(dict):
    """What a Faust table holds after restoring from its changelog: values as JSON gives them back."""

    def __setitem__(self, key: str, value: object) -> None:
        super().__setitem__(key, json.loads(json.dumps(value)))


def test_join_works_on_values_restored_from_a_changelog() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable())
    assert join.on_feedback(fb("1", ["mlops"])) is None
    [verdict] = join.on_tagged(tagged("1", ["mlops"], status="tagged"), 2)
    assert verdict.judged.predicted == verdict.judged.truth == {"mlops"}
    repost = tagged("2", [], status="pending_review")
    repost.duplicate_of = "1"
    join.on_tagged(repost, 3)
    resolved = join.on_feedback(fb("2", ["other"], source="reviewer"))
    assert resolved is not None and resolved.partition == 3 and resolved.review_seconds == 60.0
    assert resolved.resolution is not None and resolved.resolution.duplicate_of == "1"
