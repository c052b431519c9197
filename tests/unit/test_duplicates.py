"""Duplicate flagging: normalisation, first-seen id, replays, the LRU bound."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream_tagger.events import RawContent, compose_text
from stream_tagger.metrics import Metrics
from stream_tagger.online.duplicates import DuplicateIndex, DuplicateObserver, fingerprints, normalise
from stream_tagger.tools.sources import BUNDLED_DATASET, valid_posts
from stream_tagger.worker.pipeline import ScoredBatch
from stream_tagger.worker.route import Outcome


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
        # quotes, dash, CJK, emoji, numbers, a combining accent
        ("“Naïve_Bayes” — 基于 BERT 🚀🚀", "x² ½ Ⅻ e\u0301 ①"),
        ("lone \ud800 surrogate", "tab\u3000ideographic space\u200bzero width"),
        ("x٣—y", "٣٣ a"),  # a digit NFKC keeps non-ASCII, next to a dash: numbers are word characters
    ],
)
def test_fingerprints_are_the_hash_of_the_unicode_normalisation(title: str, description: str) -> None:
    text = normalise(title, description)
    expected = hash(text.encode()) if text else None
    composed = compose_text(title, description)
    # The batch path, alone and among other posts.
    assert fingerprints([composed]) == [expected]
    assert fingerprints(["a", composed, "", composed]) == [hash(b"a"), expected, None, expected]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(st.characters(blacklist_categories=())), max_size=6))
def test_fingerprints_are_the_definition_on_any_text(texts: list[str]) -> None:
    """Every code point, lone surrogates and NUL included, ASCII and not mixed in one batch."""
    expected = [hash(text.encode()) if (text := normalise(t, "")) else None for t in texts]
    assert fingerprints(texts) == expected


def test_a_nul_in_a_post_is_a_non_word_character_like_any_other() -> None:
    texts = ["a\0c", "A B", "a b!", "a c"]
    assert fingerprints(texts) == [hash(normalise(t, "").encode()) for t in texts]
    keys = fingerprints(texts)
    assert keys[0] == keys[3] != keys[1] == keys[2]
    assert fingerprints([]) == []


def test_a_str_subclass_is_read_and_anything_else_refused() -> None:
    class Text(str):
        pass

    assert fingerprints([Text("A b"), Text("naïve ②")]) == [hash(b"a b"), hash("naïve 2".encode())]

    class Odd(str):  # methods that would hand the kernel other bytes than the text's own
        def encode(self, *_args: object, **_kwargs: object) -> bytes:
            return b"x" * 50_000_000

        def casefold(self) -> str:
            return "zzz"

    assert fingerprints([Odd("Naïve"), Odd("Odd")]) == [hash("naïve".encode()), hash(b"odd")]
    with pytest.raises(TypeError, match="post 1 is a bytes, not a str"):
        fingerprints(["a", b"b"])  # type: ignore[list-item]


def check(index: DuplicateIndex, content_id: str, title: str, description: str) -> str | None:
    [key] = fingerprints([compose_text(title, description)])
    [found] = index.check([content_id], [key])
    return found


def test_repost_is_flagged_with_the_first_id_and_a_replay_is_not() -> None:
    index = DuplicateIndex()
    assert check(index, "1", "YOLO vs RCNN", "Real-world videos.") is None
    assert check(index, "2", "yolo  vs rcnn!", "real world videos") == "1"
    assert check(index, "3", "yolo vs rcnn", "real world videos") == "1"
    assert check(index, "1", "YOLO vs RCNN", "Real-world videos.") is None
    assert check(index, "4", "Something else", "") is None


def test_posts_without_words_are_never_duplicates() -> None:
    index = DuplicateIndex()
    assert check(index, "1", "", "") is None
    assert check(index, "2", "!!!", " ") is None
    assert len(index) == 0


def test_index_is_bounded_and_forgets_least_recently_seen() -> None:
    index = DuplicateIndex(max_entries=2)
    check(index, "a", "first", "")
    check(index, "b", "second", "")
    assert check(index, "a2", "first", "") == "a"  # refreshes "first"
    check(index, "c", "third", "")  # evicts "second"
    assert len(index) == 2
    assert check(index, "b2", "second", "") is None
    assert check(index, "a3", "first", "") is None  # evicted by "second" coming back


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


def test_fingerprints_match_the_unicode_normalisation_on_the_dataset() -> None:
    posts = valid_posts(BUNDLED_DATASET)
    expected = [hash(normalise(post.title, post.description).encode()) for post in posts]
    assert fingerprints([post.text for post in posts]) == expected
    assert len(set(expected)) > 700  # distinct posts get distinct keys


def test_a_batch_is_checked_post_by_post_in_order() -> None:
    index = DuplicateIndex(max_entries=2)
    # b reposts a; c has no words; x's key is new; a again is a replay, which makes key 1 the most
    # recently seen; d's new key then evicts the least recently seen, 2 (first in would be 1).
    found = index.check(["a", "b", "c", "x", "a", "d"], [1, 1, None, 2, 1, 3])
    assert found == [None, "a", None, None, None, None]
    assert index.check(["e", "f"], [1, 2]) == ["a", None]  # 1 kept, 2 forgotten
