"""The pipeline on real confluent-kafka Message objects and a fake model: no broker involved."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec
import numpy as np
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_tagger.events import DeadLetter, ReviewRequest, TaggedContent, TagScore
from stream_tagger.online.feedback import decode_feedback
from stream_tagger.worker.decode import (
    DEAD_LETTER_MAX_BYTES,
    DEAD_LETTER_MAX_KEY_BYTES,
    Rejection,
    dead_letter,
    dead_letter_key,
)
from stream_tagger.worker.dedup import RecentOutcomes
from stream_tagger.worker.pipeline import OutputRecord, Pipeline, ScoredBatch, Topics
from stream_tagger.worker.route import Outcome, Routes, route_columns

LABELS = ("computer-vision", "mlops", "natural-language-processing", "other")
TOPICS = Topics(tagged="tagged", review="review", dead_letter="dlq")
# The fake model reads its answer from the title: "cv" is confident, "unsure" is not.
ANSWERS = {"cv": [0.9, 0.05, 0.03, 0.02], "nlp": [0.02, 0.03, 0.9, 0.05], "unsure": [0.3, 0.3, 0.2, 0.2]}
T0_MS = 1_700_000_000_000


@dataclass
class FakePrediction:
    probs: np.ndarray
    oov_share: np.ndarray


class FakePredictor:
    version = "fake-1"
    labels = LABELS
    thresholds = dict.fromkeys(LABELS, 0.5)

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def predict(self, texts: list[str]) -> FakePrediction:
        self.calls.append(texts)
        probs = np.array([ANSWERS[text.split(" ")[0]] for text in texts], dtype=np.float32)
        return FakePrediction(probs, np.zeros(len(texts), np.float32))


def raw(content_id: str, title: str, offset: int = 0, **extra: object) -> bytes:
    doc = {"id": content_id, "title": title, "created_at": "2020-02-20T06:43:18Z", **extra}
    return msgspec.json.encode(doc)


def message(value: bytes | None, offset: int = 0, key: bytes | None = None, partition: int = 0) -> Message:
    return Message(
        topic="raw",
        partition=partition,
        offset=offset,
        key=key,
        value=value,
        timestamp=(TIMESTAMP_CREATE_TIME, T0_MS + offset),
    )


def pipeline(predictor: FakePredictor | None = None, **kwargs: object) -> tuple[Pipeline, FakePredictor]:
    predictor = predictor or FakePredictor()
    options: dict = {"max_event_bytes": 10_000, "top_k": 2, "dedup_window": 100, **kwargs}
    return Pipeline(predictor, TOPICS, **options), predictor


def decoded(records: list[OutputRecord], topic: str, kind: type) -> list:
    return [msgspec.json.decode(r.value, type=kind) for r in records if r.topic == topic]


def test_each_input_gets_exactly_one_outcome() -> None:
    pipe, _ = pipeline()
    result = pipe.process(
        [
            message(raw("a", "cv"), 0),
            message(b"{oops", 1, key=b"k"),
            message(raw("b", "unsure"), 2),
            message(raw("c", "nlp"), 3),
        ]
    )
    per_topic = {
        topic: [r.key for r in result.records if r.topic == topic] for topic in ("tagged", "review", "dlq")
    }
    assert per_topic == {"tagged": [b"a", b"b", b"c"], "review": [b"b"], "dlq": [b"k"]}
    assert {k: len(v) for k, v in result.event_times.items()} == {"tagged": 2, "review": 1, "dead_letter": 1}
    assert result.dead_letter_reasons == {"not_json": 1}
    assert result.scored == 3


def test_tagged_event_carries_tags_author_tags_version_and_times() -> None:
    pipe, _ = pipeline()
    result = pipe.process([message(raw("a", "cv", author_tags=["mlops"]), 7)])
    [tagged] = decoded(result.records, "tagged", TaggedContent)
    assert tagged.status == "tagged"
    assert tagged.tags == [TagScore("computer-vision", 0.9)]
    assert tagged.author_tags == ["mlops"]
    assert tagged.model_version == "fake-1"
    assert tagged.event_time == datetime.fromtimestamp((T0_MS + 7) / 1000, UTC)
    assert tagged.processed_at >= tagged.event_time


def test_review_goes_to_review_topic_and_shows_pending_in_tagged() -> None:
    pipe, _ = pipeline()
    result = pipe.process([message(raw("b", "unsure", description="hmm"), 0)])
    [review] = decoded(result.records, "review", ReviewRequest)
    [pending] = decoded(result.records, "tagged", TaggedContent)
    assert review.candidates == [TagScore("computer-vision", 0.3), TagScore("mlops", 0.3)]
    assert (review.title, review.description) == ("unsure", "hmm")
    assert pending.status == "pending_review"
    assert pending.tags == []


def test_dead_letter_keeps_original_bytes_reason_and_origin() -> None:
    pipe, predictor = pipeline()
    bad = b"\xff\xfe"
    result = pipe.process([message(bad, 42, key=b"orig", partition=3)])
    [letter] = decoded(result.records, "dlq", DeadLetter)
    assert (letter.reason, letter.original, letter.original_key) == ("not_utf8", bad, b"orig")
    assert (letter.topic, letter.partition, letter.offset) == ("raw", 3, 42)
    assert predictor.calls == []


def test_same_id_twice_in_a_batch_is_scored_once_and_published_identically() -> None:
    pipe, predictor = pipeline()
    result = pipe.process([message(raw("a", "cv"), 0), message(raw("a", "cv"), 1)])
    assert predictor.calls == [["cv "]]
    first, second = decoded(result.records, "tagged", TaggedContent)
    assert first.tags == second.tags


def test_id_seen_again_inside_the_window_keeps_its_outcome_even_if_text_changed() -> None:
    pipe, predictor = pipeline()
    pipe.process([message(raw("a", "cv"), 0)])
    result = pipe.process([message(raw("a", "unsure"), 1)])
    [tagged] = decoded(result.records, "tagged", TaggedContent)
    assert tagged.status == "tagged"
    assert len(predictor.calls) == 1


def test_id_outside_the_window_is_scored_again() -> None:
    pipe, predictor = pipeline(dedup_window=1)
    pipe.process([message(raw("a", "cv"), 0)])
    pipe.process([message(raw("b", "cv"), 1)])
    result = pipe.process([message(raw("a", "unsure"), 2)])
    assert decoded(result.records, "review", ReviewRequest)
    assert len(predictor.calls) == 3


def test_output_is_deterministic_for_the_same_text_and_model() -> None:
    first, _ = pipeline(dedup_window=0)
    second, _ = pipeline(dedup_window=0)
    batch = [message(raw("a", "cv"), 0), message(raw("b", "unsure"), 1)]

    def strip_time(records: list[OutputRecord]) -> list[tuple[str, bytes | None, dict]]:
        out = []
        for r in records:
            doc = msgspec.json.decode(r.value)
            doc.pop("processed_at")
            out.append((r.topic, r.key, doc))
        return out

    # Scored together in one batch, or one by one in reverse order: same published outcome.
    together = strip_time(first.process(batch).records)
    apart = strip_time(second.process(batch[1:]).records) + strip_time(second.process(batch[:1]).records)
    assert sorted(together, key=repr) == sorted(apart, key=repr)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[ScoredBatch] = []

    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        self.seen.append(batch)
        return ()


class Annotator:
    """An observer like the duplicate flagger: annotates outcomes and publishes its own record."""

    def __init__(self) -> None:
        self.seen: list[ScoredBatch] = []

    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        self.seen.append(batch)
        batch.outcomes[0].duplicate_of = "original"
        return [OutputRecord("side", batch.events[0].id.encode(), b"{}")]


def test_observers_see_scored_events_annotate_outcomes_and_add_records() -> None:
    observer = Annotator()
    pipe, _ = pipeline(observers=[observer])
    result = pipe.process([message(raw("a", "cv"), 0), message(b"nope", 1)])
    [batch] = observer.seen
    assert [e.id for e in batch.events] == ["a"]
    assert batch.prediction.probs.shape == (1, 4)
    assert batch.model_version == "fake-1"
    [tagged] = decoded(result.records, "tagged", TaggedContent)
    assert tagged.duplicate_of == "original"
    assert OutputRecord("side", b"a", b"{}") in result.records


def test_threshold_override_changes_routing() -> None:
    pipe, _ = pipeline(threshold=0.95)
    result = pipe.process([message(raw("a", "cv"), 0)])
    assert decoded(result.records, "review", ReviewRequest)


def test_score_chunks_split_the_batch_and_join_the_prediction_in_order_whatever_order_they_run() -> None:
    titles = ["cv", "nlp", "unsure"] * 40
    batch = [message(raw(f"id{i}", title), i) for i, title in enumerate(titles)]
    serial, _ = pipeline(dedup_window=0)
    chunked, predictor = pipeline(dedup_window=0, score_chunks=3)
    recorder = Recorder()
    chunked.observers.append(recorder)
    prepared = chunked.prepare(batch)
    tasks = chunked.scoring_tasks(prepared)
    for task in reversed(tasks):
        task()
    records = chunked.finish(prepared).records
    assert [r[:2] for r in records] == [r[:2] for r in serial.process(batch).records]
    assert [len(call) for call in predictor.calls] == [40, 40, 40]
    assert [call[0].split()[0] for call in predictor.calls] == ["unsure", "nlp", "cv"]  # chunks 3, 2, 1
    [scored] = recorder.seen
    assert scored.prediction.probs.shape == (120, 4)
    assert scored.prediction.oov_share.shape == (120,)


def test_inference_seconds_is_the_wall_time_of_the_chunks_not_their_sum(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    chunked, _ = pipeline(dedup_window=0, score_chunks=2)
    prepared = chunked.prepare([message(raw(f"id{i}", "cv"), i) for i in range(64)])
    first, second = chunked.scoring_tasks(prepared)
    clock = iter([10.0, 11.5, 10.5, 12.0])  # chunk 1 runs 10.0-11.5, chunk 2 10.5-12.0, side by side
    monkeypatch.setattr("stream_tagger.worker.pipeline.time.perf_counter", lambda: next(clock))
    first()
    second()
    result = chunked.finish(prepared)
    assert result.inference_seconds == pytest.approx(2.0)
    assert result.scored == 64


def test_small_batches_are_one_chunk_and_finish_refuses_an_unscored_chunk() -> None:
    chunked, _ = pipeline(dedup_window=0, score_chunks=4)
    small = chunked.prepare([message(raw(f"id{i}", "cv"), i) for i in range(40)])
    [task] = chunked.scoring_tasks(small)  # one chunk: two would be under 32 texts each
    task()
    assert len(chunked.finish(small).records) == 40
    prepared = chunked.prepare([message(raw(f"x{i}", "cv"), i) for i in range(128)])
    first, *_rest = chunked.scoring_tasks(prepared)
    first()
    with pytest.raises(AssertionError, match="every chunk"):
        chunked.finish(prepared)


def test_scored_batch_top1_is_the_argmax_computed_once() -> None:
    probs = np.array([[0.1, 0.9], [0.7, 0.3], [0.4, 0.6]], dtype=np.float32)
    batch = ScoredBatch([], [], FakePrediction(probs, np.zeros(3)), [], ("a", "b"), "v1")
    assert batch.top1.tolist() == [1, 0, 1]
    assert batch.top1 is batch.top1


def routes(rows: list[list[float]], labels: tuple[str, ...] = LABELS, top_k: int = 2) -> Routes:
    probs = np.array(rows, dtype=np.float32).reshape(-1, len(labels))
    return route_columns(probs, labels, np.full(len(labels), 0.5, np.float32), [[]] * len(probs), top_k)


REVIEW = [0.3, 0.3, 0.2, 0.2]


def test_recent_outcomes_forget_the_oldest_id_first() -> None:
    recent = RecentOutcomes(2, len(LABELS))
    for content_id in ("a", "b", "a", "c"):
        recent.add([content_id], routes([REVIEW]), [content_id], "v1")
    assert len(recent) == 2
    assert recent.get("a") is None
    review = routes([REVIEW]).outcomes()[0]
    assert recent.get("b") == (Outcome("review", review.scores, "b"), "v1")
    assert recent.get("c") == (Outcome("review", review.scores, "c"), "v1")


def test_recent_outcomes_keep_each_version_and_start_afresh_after_256_versions() -> None:
    recent = RecentOutcomes(1_000, len(LABELS))
    recent.add(["a"], routes([REVIEW]), [None], "v0")
    recent.add(["b"], routes([REVIEW]), [None], "v1")
    assert [recent.get(i)[1] for i in "ab"] == ["v0", "v1"]
    for n in range(2, 256):
        recent.add([f"id{n}"], routes([REVIEW]), [None], f"v{n}")
    [review] = routes([REVIEW]).outcomes()
    assert recent.get("id255") == (review, "v255")
    recent.add(["c"], routes([REVIEW]), [None], "v256")
    assert (len(recent), recent.get("a"), recent.get("c")) == (1, None, (review, "v256"))


def test_recent_outcomes_give_back_every_confidence_routing_can_publish_as_the_very_same_float() -> None:
    exact = np.arange(10_001, dtype=np.float64) / 10_000
    probs = np.column_stack([exact, np.zeros((len(exact), len(LABELS) - 1))]).astype(np.float32)
    columns = route_columns(probs, LABELS, np.zeros(len(LABELS), np.float32), [[]] * len(probs), 1)
    recent = RecentOutcomes(len(probs), len(LABELS))
    ids = [str(n) for n in range(len(probs))]
    recent.add(ids, columns, [None] * len(ids), "v1")
    published = columns.outcomes()
    assert {score.confidence for outcome in published for score in outcome.scores} == set(exact.tolist())
    assert [recent.get(i) for i in ids] == [(outcome, "v1") for outcome in published]


class ReferenceWindow:
    """The window's rules one id at a time, as plainly as they can be written: the oldest id first
    in, first forgotten (an id seen again keeps its place), and after 256 versions everything goes."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.order: list[str] = []
        self.known: dict[str, tuple[Outcome, str]] = {}
        self.versions: list[str] = []

    def add(self, content_ids: list[str], outcomes: list[Outcome], version: str) -> None:
        if version not in self.versions:
            if len(self.versions) == 256:
                self.order, self.known, self.versions = [], {}, []
            self.versions.append(version)
        for content_id, outcome in zip(content_ids, outcomes, strict=True):
            if content_id not in self.known:
                self.order.append(content_id)
            self.known[content_id] = (outcome, version)
            if len(self.order) > self.size:
                del self.known[self.order.pop(0)]


@pytest.mark.parametrize("size", [0, 1, 7, 1_000])
def test_recent_outcomes_agree_with_the_rules_one_id_at_a_time(size: int) -> None:
    # Ids from a small pool (repeats within and across batches, the ring wrapping many times), each
    # model version with its own labels in its own order, reviews, author tags, duplicates, 350 versions.
    rng = np.random.default_rng(size)
    recent, reference = RecentOutcomes(size, len(LABELS)), ReferenceWindow(size)
    pool = [f"id{n}" for n in range(30)]
    orders = [tuple(rng.permutation(LABELS).tolist()) for _ in range(4)] + [LABELS[:3]]  # fewer labels too
    for batch in range(700):
        version, labels = f"v{batch // 2}", orders[batch // 2 % len(orders)]
        n = int(rng.integers(0, 12))
        probs = rng.dirichlet(np.full(len(labels), 0.4), size=n).astype(np.float32)
        given = ["mlops", "Computer Vision", "gans"]
        authors = [rng.choice(given, size=rng.integers(0, 2)).tolist() for _ in range(n)]
        thresholds = np.full(len(labels), 0.45, np.float32)
        columns = route_columns(probs, labels, thresholds, authors, int(rng.integers(1, 5)))
        ids = rng.choice(pool, size=n).tolist()
        duplicate_of = [None if rng.random() < 0.7 else str(rng.choice(pool)) + "-é" for _ in range(n)]
        outcomes = columns.outcomes()
        for outcome, duplicate in zip(outcomes, duplicate_of, strict=True):
            outcome.duplicate_of = duplicate
        recent.add(ids, columns, duplicate_of, version)
        reference.add(ids, outcomes, version)
        assert len(recent) == len(reference.known)
        assert [recent.get(i) for i in pool] == [reference.known.get(i) for i in pool]


class SecondModel(FakePredictor):
    """The model a hot reload swaps in: it reads every title as NLP."""

    version = "fake-2"

    def predict(self, texts: list[str]) -> FakePrediction:
        return super().predict(["nlp" for _ in texts])


def test_replay_after_a_hot_reload_names_the_model_that_decided_it() -> None:
    pipe, _ = pipeline()
    pipe.process([message(raw("a", "cv"), 0)])
    pipe.serve(SecondModel())
    result = pipe.process([message(raw("a", "cv"), 1), message(raw("b", "cv"), 2)])
    replay, fresh = decoded(result.records, "tagged", TaggedContent)
    assert (replay.id, replay.model_version) == ("a", "fake-1")
    assert replay.tags == [TagScore("computer-vision", 0.9)]
    assert (fresh.id, fresh.model_version) == ("b", "fake-2")
    assert fresh.tags == [TagScore("natural-language-processing", 0.9)]


def test_dead_letter_of_an_oversized_message_fits_in_one_kafka_message() -> None:
    pipe, _ = pipeline()
    huge = b'{"id": "' + b"x" * 799_992
    result = pipe.process([message(huge, 5, key=b"big")])
    [record] = result.records
    assert len(record.value) + len(record.key or b"") < 1_000_000
    letter = msgspec.json.decode(record.value, type=DeadLetter)
    assert letter.reason == "too_large"
    assert huge.startswith(letter.original) and len(letter.original) > 700_000
    assert f"truncated to its first {len(letter.original)} of 800000 bytes" in letter.detail


def test_dead_letter_of_a_message_with_a_huge_key_fits_and_is_keyed_by_the_keys_digest() -> None:
    # The broker takes a key of ~600 kB; as the record key beside its base64 copy it would not fit.
    pipe, _ = pipeline()
    key = b"k" * 600_000
    [record] = pipe.process([message(b"not json", 3, key=key)]).records
    assert record.key == b"sha256:" + hashlib.sha256(key).hexdigest().encode()
    letter = msgspec.json.decode(record.value, type=DeadLetter)
    assert (letter.reason, letter.original) == ("not_json", b"not json")
    assert letter.original_key == key[:DEAD_LETTER_MAX_KEY_BYTES]
    assert f"key truncated to its first {DEAD_LETTER_MAX_KEY_BYTES} of 600000 bytes" in letter.detail


@settings(max_examples=30, deadline=None, derandomize=True)
@given(  # small ones, ones around the key cap, and ones near what the broker takes (1,048,588 bytes)
    key_bytes=st.one_of(
        st.none(), st.integers(0, 100), st.integers(16_000, 17_000), st.integers(400_000, 1_048_576)
    ),
    value_bytes=st.one_of(st.integers(0, 100), st.integers(400_000, 1_048_576)),
)
def test_any_key_and_value_the_broker_takes_give_one_dead_letter_the_producer_takes(
    key_bytes: int | None, value_bytes: int
) -> None:
    pipe, _ = pipeline(max_event_bytes=1_048_576)
    key = None if key_bytes is None else b"\xff" * key_bytes
    [record] = pipe.process([message(b"{" * value_bytes, 0, key=key)]).records  # never JSON
    assert len(record.value) + len(record.key or b"") <= DEAD_LETTER_MAX_BYTES
    assert record.key == dead_letter_key(key)
    letter = msgspec.json.decode(record.value, type=DeadLetter)
    assert letter.original_key == (None if key is None else key[:DEAD_LETTER_MAX_KEY_BYTES])
    assert b"{" * value_bytes == letter.original or "original truncated" in letter.detail


def test_a_dead_letter_whose_reason_quotes_a_huge_value_still_fits() -> None:
    # msgspec quotes a bad enum value whole, escaped: a feedback's 400 kB "source" made a 1.1 MB letter.
    value = msgspec.json.encode({"id": "a", "tags": [], "source": "\U000f0000" * 100_000})
    rejection = decode_feedback(value, 1_048_576)
    assert isinstance(rejection, Rejection) and len(rejection.detail) > 1_000_000
    _, letter = dead_letter(rejection, value, b"a", "feedback", 0, 0, datetime.now(UTC))
    assert len(msgspec.json.encode(letter)) + 1 <= DEAD_LETTER_MAX_BYTES
    assert letter.detail.endswith(f"({len(rejection.detail)} characters)")


def test_dead_letter_under_the_limit_keeps_the_whole_original() -> None:
    pipe, _ = pipeline(max_event_bytes=1_000_000)
    value = b"{" * 700_000  # not JSON, under max_event_bytes: base64 makes it ~933 kB, which still fits
    [record] = pipe.process([message(value, 0)]).records
    letter = msgspec.json.decode(record.value, type=DeadLetter)
    assert (letter.reason, letter.original) == ("not_json", value)
    assert "truncated" not in letter.detail


class StricterModel(SecondModel):
    """A hot-reloaded model whose threshold its own 0.9 answers do not clear."""

    thresholds = dict.fromkeys(LABELS, 0.95)


def test_an_id_of_a_batch_not_finished_yet_is_scored_again_with_the_same_outcome() -> None:
    # The hot path prepares batch N+1 before it finishes batch N: N+1 cannot know N's outcomes yet.
    pipe, _ = pipeline()
    first = pipe.prepare([message(raw("a", "cv"), 0)])
    second = pipe.prepare([message(raw("a", "cv"), 1), message(raw("b", "cv"), 2)])
    assert [event.id for event in second.to_score] == ["a", "b"]
    pipe.predict(second)
    pipe.predict(first)
    [before] = decoded(pipe.finish(first).records, "tagged", TaggedContent)
    again, _ = decoded(pipe.finish(second).records, "tagged", TaggedContent)
    assert (again.id, again.status, again.tags) == (before.id, before.status, before.tags)


def test_an_id_of_a_batch_not_finished_yet_across_a_hot_reload_is_decided_by_the_new_model() -> None:
    # A model swapped in between the two batches scores the second copy, and the window keeps that outcome.
    pipe, _ = pipeline()
    first = pipe.prepare([message(raw("a", "cv"), 0)])
    pipe.serve(StricterModel())
    second = pipe.prepare([message(raw("a", "cv"), 1)])
    pipe.predict(second)
    pipe.predict(first)
    [before] = decoded(pipe.finish(first).records, "tagged", TaggedContent)
    [after] = decoded(pipe.finish(second).records, "tagged", TaggedContent)
    assert (before.status, before.model_version) == ("tagged", "fake-1")
    assert (after.status, after.model_version) == ("pending_review", "fake-2")
    [later] = decoded(pipe.process([message(raw("a", "nlp"), 2)]).records, "tagged", TaggedContent)
    assert (later.status, later.model_version) == ("pending_review", "fake-2")
