"""Duplicate flagging: normalisation, first-seen id, replays, the LRU bound."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest
from prometheus_client import CollectorRegistry

from stream_tagger.duplicates import DuplicateIndex, DuplicateObserver, fingerprint, normalise
from stream_tagger.events import RawContent
from stream_tagger.metrics import Metrics
from stream_tagger.pipeline import ScoredBatch
from stream_tagger.routing import Outcome
from stream_tagger.sources import BUNDLED_DATASET, valid_posts


def test_normalise_ignores_case_width_punctuation_and_whitespace() -> None:
    assert normalise("Ｈello,   WORLD!", "it's\tnew…") == normalise("hello world", "it s new")
    assert normalise("Straße", "") == normalise("STRASSE", "")


@pytest.mark.parametrize(
    ("title", "description"),
    [
        ("YOLO vs R-CNN", "Real_world\tvideos...  "),
        ("  __ ", "!!"),
        ("Ｈello,   WORLD!", "it's\tnew…"),
        ("Straße", "Ǆ ﬁne-tuning"),
        ("".join(map(chr, range(128))), "x\x0b\x0cy\x1c\x1dz"),  # every ASCII character once
        ("ＹＯＬＯ ﬁne", "tuning"),  # NFKC + casefold make it ASCII
    ],
)
def test_fingerprint_fast_path_matches_the_unicode_normalisation(title: str, description: str) -> None:
    text = normalise(title, description)
    expected = hashlib.blake2b(text.encode(), digest_size=16).digest() if text else None
    assert fingerprint(title, description) == expected


def test_repost_is_flagged_with_the_first_id_and_a_replay_is_not() -> None:
    index = DuplicateIndex()
    assert index.check("1", "YOLO vs RCNN", "Real-world videos.") is None
    assert index.check("2", "yolo  vs rcnn!", "real world videos") == "1"
    assert index.check("3", "yolo vs rcnn", "real world videos") == "1"
    assert index.check("1", "YOLO vs RCNN", "Real-world videos.") is None
    assert index.check("4", "Something else", "") is None


def test_posts_without_words_are_never_duplicates() -> None:
    index = DuplicateIndex()
    assert index.check("1", "", "") is None
    assert index.check("2", "!!!", " ") is None
    assert len(index) == 0


def test_index_is_bounded_and_forgets_least_recently_seen() -> None:
    index = DuplicateIndex(max_entries=2)
    index.check("a", "first", "")
    index.check("b", "second", "")
    assert index.check("a2", "first", "") == "a"  # refreshes "first"
    index.check("c", "third", "")  # evicts "second"
    assert len(index) == 2
    assert index.check("b2", "second", "") is None
    assert index.check("a3", "first", "") is None  # evicted by "second" coming back


def test_observer_flags_the_outcome_and_counts() -> None:
    metrics = Metrics(CollectorRegistry())
    observer = DuplicateObserver(DuplicateIndex(), metrics)
    now = datetime.now(UTC)
    titles = {"1": "A post", "2": "a post!", "3": "b"}
    events = [RawContent(id=i, title=t, created_at=now) for i, t in titles.items()]
    outcomes = [Outcome("review", []) for _ in events]
    batch = ScoredBatch(events, [e.text for e in events], None, outcomes, ("other",), "v1")  # type: ignore[arg-type]
    assert list(observer.observe(batch)) == []
    assert [o.duplicate_of for o in outcomes] == [None, "1", None]
    assert metrics.registry.get_sample_value("stream_tagger_duplicates_total") == 1


def test_fingerprint_fast_path_matches_the_unicode_normalisation_on_the_dataset() -> None:
    for post in valid_posts(BUNDLED_DATASET):
        text = normalise(post.title, post.description).encode()
        assert fingerprint(post.title, post.description) == hashlib.blake2b(text, digest_size=16).digest()
