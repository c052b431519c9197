"""Failure isolation: an exception on one message becomes that message's dead letter, never its batch's."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, Message

from stream_tagger.events import DeadLetter, TaggedContent
from stream_tagger.worker import pipeline as pipeline_module
from stream_tagger.worker.pipeline import BatchResult, OutputRecord, ScoredBatch
from tests.unit.test_pipeline import FakePrediction, FakePredictor, decoded, message, pipeline, raw


class PoisonedPredictor(FakePredictor):
    """Raises on any batch holding a text that starts with ``poison``; answers NaN for ``nan``."""

    def predict(self, texts: list[str]) -> FakePrediction:
        self.calls.append(texts)
        if any(text.startswith("poison") for text in texts):
            raise MemoryError("the featuriser gave up")
        rows = [[np.nan] * 4 if text.startswith("nan") else [0.9, 0.05, 0.03, 0.02] for text in texts]
        return FakePrediction(np.array(rows, dtype=np.float32), np.zeros(len(texts), np.float32))


def one_outcome_each(result: BatchResult, n: int) -> dict[str, int]:
    """Every input has exactly one status record on the tagged topic or one dead letter."""
    outcomes = {topic: sum(r.topic == topic for r in result.records) for topic in ("tagged", "dlq")}
    assert outcomes["tagged"] + outcomes["dlq"] == n, outcomes
    assert sum(map(len, result.event_times.values())) == n
    return outcomes


def test_a_message_the_model_raises_on_is_dead_lettered_and_the_rest_of_the_batch_publishes() -> None:
    pipe, _ = pipeline(predictor=PoisonedPredictor())
    batch = [message(raw(f"id{i}", "poison" if i == 137 else "cv"), i) for i in range(190)]
    result = pipe.process(batch)
    assert one_outcome_each(result, 190) == {"tagged": 189, "dlq": 1}
    [letter] = decoded(result.records, "dlq", DeadLetter)
    assert (letter.reason, letter.offset) == ("internal_error", 137)
    assert letter.detail.startswith("MemoryError while scoring at test_pipeline_isolation.py:")
    assert letter.original == batch[137].value()
    assert result.dead_letter_reasons == {"internal_error": 1}


def test_a_row_that_is_not_probabilities_is_dead_lettered_not_tagged() -> None:
    pipe, _ = pipeline(predictor=PoisonedPredictor())
    batch = [message(raw("a", "cv"), 0), message(raw("b", "nan"), 1), message(raw("c", "cv"), 2)]
    result = pipe.process(batch)
    assert one_outcome_each(result, 3) == {"tagged": 2, "dlq": 1}
    [letter] = decoded(result.records, "dlq", DeadLetter)
    assert letter.offset == 1 and "not probabilities" in letter.detail


def test_the_same_id_again_in_the_batch_shares_the_failed_rows_dead_letter() -> None:
    pipe, _ = pipeline(predictor=PoisonedPredictor())
    result = pipe.process([message(raw("p", "poison"), 0), message(raw("p", "poison"), 1)])
    assert one_outcome_each(result, 2) == {"tagged": 0, "dlq": 2}


def test_a_model_with_the_wrong_shape_dead_letters_rather_than_misroutes() -> None:
    class Truncating(FakePredictor):
        def predict(self, texts: list[str]) -> FakePrediction:
            prediction = super().predict(texts)
            return FakePrediction(prediction.probs[:, :2], prediction.oov_share)

    pipe, _ = pipeline(predictor=Truncating())
    result = pipe.process([message(raw("a", "cv"), 0), message(raw("b", "cv"), 1)])
    assert one_outcome_each(result, 2) == {"tagged": 0, "dlq": 2}
    assert "shape (1, 2)" in decoded(result.records, "dlq", DeadLetter)[0].detail


def test_a_routing_failure_on_one_row_dead_letters_that_row(monkeypatch: pytest.MonkeyPatch) -> None:
    route = pipeline_module.route_columns

    def fragile(probs: np.ndarray, labels, thresholds, author_tags, top_k):  # type: ignore[no-untyped-def]
        if any("boom" in tags for tags in author_tags):
            raise KeyError("boom")
        return route(probs, labels, thresholds, author_tags, top_k)

    monkeypatch.setattr(pipeline_module, "route_columns", fragile)
    observer = Seen()
    pipe, _ = pipeline(observers=[observer])
    batch = [message(raw(f"id{i}", "cv", author_tags=["boom"] if i == 5 else []), i) for i in range(9)]
    result = pipe.process(batch)
    assert one_outcome_each(result, 9) == {"tagged": 8, "dlq": 1}
    assert decoded(result.records, "dlq", DeadLetter)[0].offset == 5
    [seen] = observer.seen  # observers see the routed rows only, aligned
    assert [e.id for e in seen.events] == [f"id{i}" for i in range(9) if i != 5]
    assert len(seen.outcomes) == len(seen.texts) == len(seen.prediction.probs) == 8


class Seen:
    def __init__(self) -> None:
        self.seen: list[ScoredBatch] = []

    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        self.seen.append(batch)
        return ()


class Failing:
    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        raise ZeroDivisionError("observer bug")


def test_an_observer_that_raises_costs_nothing_but_itself() -> None:
    pipe, _ = pipeline(observers=[Failing(), Seen()])
    result = pipe.process([message(raw("a", "cv"), 0), message(raw("b", "cv"), 1)])
    assert one_outcome_each(result, 2) == {"tagged": 2, "dlq": 0}
    assert result.observer_errors == ["Failing"]


@pytest.mark.parametrize("timestamp_ms", [-1, 2**63 - 1, 253_402_300_800_000])
def test_a_kafka_timestamp_datetime_cannot_hold_is_timed_from_receipt(timestamp_ms: int) -> None:
    pipe, _ = pipeline()
    odd = Message(
        topic="raw",
        partition=0,
        offset=0,
        key=b"a",
        value=raw("a", "cv"),
        timestamp=(TIMESTAMP_CREATE_TIME, timestamp_ms),
    )
    result = pipe.process([odd])
    [tagged] = decoded(result.records, "tagged", TaggedContent)
    assert tagged.status == "tagged" and tagged.event_time.year >= 2024


def test_an_encoding_failure_dead_letters_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    pipe, _ = pipeline()
    outcome = pipe._encoder.outcome

    def fragile(event, *args):  # type: ignore[no-untyped-def]
        if event.id == "b":
            raise OverflowError("cannot encode")
        return outcome(event, *args)

    monkeypatch.setattr(pipe._encoder, "outcome", fragile)
    result = pipe.process([message(raw("a", "cv"), 0), message(raw("b", "cv"), 1)])
    assert one_outcome_each(result, 2) == {"tagged": 1, "dlq": 1}
    [letter] = decoded(result.records, "dlq", DeadLetter)
    assert letter.detail.startswith("OverflowError while encoding")


def test_rows_that_are_not_probabilities_are_found_from_the_one_answer_without_bisecting() -> None:
    predictor = PoisonedPredictor()
    pipe, _ = pipeline(predictor=predictor)
    batch = [message(raw(f"id{i}", "nan" if i % 10 == 3 else "cv"), i) for i in range(100)]
    result = pipe.process(batch)
    assert one_outcome_each(result, 100) == {"tagged": 90, "dlq": 10}
    assert len(predictor.calls) == 1


class HalfwayFailing:
    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        yield OutputRecord("side", b"k", b"{}")
        raise ZeroDivisionError("after one record")


def test_an_observer_that_fails_halfway_publishes_none_of_its_records() -> None:
    pipe, _ = pipeline(observers=[HalfwayFailing()])
    result = pipe.process([message(raw("a", "cv"), 0)])
    assert [r.topic for r in result.records] == ["tagged"]
    assert result.observer_errors == ["HalfwayFailing"]
