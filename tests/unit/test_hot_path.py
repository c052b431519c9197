"""The hot path's commit discipline, with fake Kafka clients: offsets move only after every ack."""

from __future__ import annotations

import gc
import os
import sys
import threading
import time
from typing import Any

import msgspec
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, KafkaError, KafkaException, Message, TopicPartition
from prometheus_client import CollectorRegistry

from stream_tagger.metrics import Metrics
from stream_tagger.settings import Settings
from stream_tagger.worker.hot_path import (
    DeliveryFailed,
    HotPath,
    _next_offsets,
    lower_priority,
    partition_lag,
)
from stream_tagger.worker.pipeline import BatchResult, Pipeline, PreparedBatch, Topics
from tests.unit.test_pipeline import FakePrediction, FakePredictor

SETTINGS = Settings(topic_raw="raw", batch_max_size=2)
BATCH_OF_3 = Settings(topic_raw="raw", batch_max_size=3)


def raw_message(i: int, partition: int = 0, title: str = "cv") -> Message:
    """``title`` is what the fake model reads; "boom" makes its predict raise in the scoring thread."""
    value = msgspec.json.encode({"id": f"id{i}", "title": title, "created_at": "2020-02-20T06:43:18Z"})
    return Message(
        topic="raw",
        partition=partition,
        offset=i,
        key=f"id{i}".encode(),
        value=value,
        timestamp=(TIMESTAMP_CREATE_TIME, 1_700_000_000_000),
    )


class FakeConsumer:
    """Serves scripted batches; a batch may be preceded by a rebalance (revoke of partition 0, or the
    loss of every partition). Like librdkafka, ``close()`` revokes what is still assigned."""

    def __init__(
        self, script: list[list[Message] | str], journal: list[tuple], hot_path: list[HotPath]
    ) -> None:
        self.script = script
        self.journal = journal
        self.hot_path = hot_path
        self.assigned: list[TopicPartition] = []
        self.timeouts: list[float] = []  # of every consume() call
        self.sizes: list[int] = []  # the most messages each consume() call asked for
        self.rest: list[Message] | None = None  # what a call left of its step
        self.revoke_in_rest = False  # the call that takes ``rest`` revokes partition 0 first

    def subscribe(self, _topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self.on_assign, self.on_revoke, self.on_lost = on_assign, on_revoke, on_lost

    def consume(self, n: int, timeout: float) -> list[Message]:
        """The next step of the script, at most ``n`` messages of it. What a call for one message left
        of its step is what the call after it gets: those messages were queued already."""
        self.timeouts.append(timeout)
        self.sizes.append(n)
        if self.rest is not None:
            if self.revoke_in_rest:
                self._revoke_partition_0()
                self.revoke_in_rest = False
            taken, rest = self.rest[:n], self.rest[n:]
            self.rest = rest or None
            return taken
        if not self.script:
            self.hot_path[0].stop()
            return []
        step = self.script.pop(0)
        if step == "assign":
            self.assigned = [TopicPartition("raw", 0), TopicPartition("raw", 1)]
            self.on_assign(self, self.assigned)
            return []
        if step == "revoke":
            self.journal.append(("revoke-start",))
            self.on_revoke(self, [TopicPartition("raw", 0)])
            self.assigned = self.assigned[1:]
            self.journal.append(("revoke-end",))
            return []
        if isinstance(step, tuple) and step[0] == "revoke-within":
            # A revoke of partition 0 inside the consume() that then returns these messages.
            self._revoke_partition_0()
            return self._at_most(n, list(step[1]))
        if isinstance(step, tuple) and step[0] == "revoke-within-rest":
            # These messages, and a revoke of partition 0 inside the call that takes what the first
            # call left of them.
            self.revoke_in_rest = True
            return self._at_most(n, list(step[1]))
        if step == "lost":
            self.journal.append(("lost",))
            self.on_lost(self, self.assigned)
            self.assigned = []
            return []
        return self._at_most(n, list(step))

    def _revoke_partition_0(self) -> None:
        self.on_revoke(self, [TopicPartition("raw", 0)])
        self.assigned = self.assigned[1:]

    def _at_most(self, n: int, messages: list[Message]) -> list[Message]:
        if (n == 1 and messages) or n < len(messages):
            self.rest = messages[n:]
        return messages[:n]

    def store_offsets(self, offsets: list[TopicPartition]) -> None:
        self.journal.append(("store", sorted((tp.partition, tp.offset) for tp in offsets)))

    def commit(self, asynchronous: bool = True) -> None:
        self.journal.append(("commit", asynchronous))

    def consumer_group_metadata(self) -> str:
        return "group-metadata"

    def close(self) -> None:
        if self.assigned:
            self.on_revoke(self, self.assigned)
        self.journal.append(("close",))


class FakeProducer:
    """Acks everything on flush, or fails every delivery when ``fail`` is set."""

    fail_commit = False  # commit_transaction raises (a fenced producer)

    def __init__(self, conf: dict[str, Any], journal: list[tuple], fail: bool) -> None:
        self.on_delivery = conf["on_delivery"]
        self.journal = journal
        self.fail = fail
        self.queued: list[tuple[str, bytes | None]] = []
        self.purged: list[tuple[str, bytes | None]] = []  # aborted outputs, reported at the next flush
        self.produced: list[tuple[str, bytes | None]] = []  # every output, in the order produced

    def produce(self, topic: str, _value: bytes, key: bytes | None) -> None:
        self.queued.append((topic, key))
        self.produced.append((topic, key))

    def fail_queued(self) -> None:
        for topic, key in self.queued:
            self.on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), Message(topic=topic, key=key))

    def flush(self, _timeout: float) -> int:
        for topic, key in self.purged:  # as librdkafka: a purged output's failure comes at the next flush
            self.on_delivery(KafkaError(KafkaError._PURGE_QUEUE), Message(topic=topic, key=key))
        self.purged = []
        if self.queued:
            self.journal.append(("acked", len(self.queued)))
        if self.fail:
            self.fail_queued()
        self.queued = []
        return 0

    def __len__(self) -> int:
        return len(self.queued)

    # Transactions: journalled; commit_transaction flushes, as librdkafka's does.
    def init_transactions(self, _timeout: float) -> None:
        self.journal.append(("init",))

    def begin_transaction(self) -> None:
        self.journal.append(("begin",))

    def send_offsets_to_transaction(self, offsets: list[TopicPartition], metadata: str) -> None:
        assert metadata == "group-metadata"
        self.journal.append(("txn-offsets", sorted((tp.partition, tp.offset) for tp in offsets)))

    def commit_transaction(self) -> None:
        self.flush(0)
        if self.fail_commit:
            raise KafkaException(KafkaError(KafkaError._FENCED, "fenced"))
        self.journal.append(("txn-commit",))

    def abort_transaction(self, _timeout: float) -> None:
        self.purged, self.queued = self.queued, []
        self.journal.append(("txn-abort",))


def build(
    script: list[list[Message] | str],
    fail: bool = False,
    predictor: FakePredictor | None = None,
    settings: Settings = SETTINGS,
) -> tuple[HotPath, list[tuple], Metrics]:
    journal: list[tuple] = []
    metrics = Metrics(CollectorRegistry())
    pipeline = Pipeline(
        predictor or FakePredictor(),
        Topics("tagged", "review", "dlq"),
        max_event_bytes=10_000,
        top_k=2,
        score_chunks=settings.score_chunks,
    )
    holder: list[HotPath] = []
    hot_path = HotPath(
        settings,
        pipeline,
        metrics,
        consumer_factory=lambda _conf: FakeConsumer(script, journal, holder),  # type: ignore[arg-type,return-value]
        producer_factory=lambda conf: FakeProducer(conf, journal, fail),  # type: ignore[arg-type,return-value]
    )
    holder.append(hot_path)
    return hot_path, journal, metrics


def processed(metrics: Metrics, outcome: str) -> float | None:
    return metrics.registry.get_sample_value("stream_tagger_events_processed_total", {"outcome": outcome})


def test_offsets_are_stored_only_after_the_batch_was_acked_and_committed_at_stop() -> None:
    hot_path, journal, metrics = build(
        ["assign", [raw_message(0), raw_message(1), raw_message(5, partition=1)], [raw_message(2)]],
        settings=BATCH_OF_3,
    )
    hot_path.run()
    assert journal == [
        ("acked", 3),
        ("store", [(0, 2), (1, 6)]),
        ("acked", 1),
        ("store", [(0, 3)]),
        ("commit", False),
        ("commit", False),  # close() revokes the partitions, which commits (nothing new) again
        ("close",),
    ]
    assert processed(metrics, "tagged") == 4


def test_a_failed_delivery_stops_the_loop_without_storing_offsets_or_counting() -> None:
    hot_path, journal, metrics = build(["assign", [raw_message(0)], [raw_message(1)]], fail=True)
    with pytest.raises(DeliveryFailed, match="not acknowledged"):
        hot_path.run()
    assert not any(entry[0] == "store" for entry in journal)
    assert journal[-1] == ("close",)
    assert hot_path.state.failure and "DeliveryFailed" in hot_path.state.failure
    assert processed(metrics, "tagged") == 0


def test_revoke_finishes_and_commits_the_pending_full_batch_before_partitions_move() -> None:
    hot_path, journal, _ = build(["assign", [raw_message(0), raw_message(1)], "revoke"])
    hot_path.run()
    assert journal[:5] == [
        ("revoke-start",),
        ("acked", 2),
        ("store", [(0, 2)]),
        ("commit", False),
        ("revoke-end",),
    ]
    assert journal[5:] == [("commit", False), ("commit", False), ("close",)]  # at stop, then close() revokes


def test_a_batch_is_acked_and_stored_before_the_next_one_is_sent_and_at_once_when_input_pauses() -> None:
    hot_path, journal, _ = build(["assign", [raw_message(0)], [raw_message(1)], [], [], "revoke"])
    hot_path.run()
    assert journal[:6] == [
        ("acked", 1),  # batch 0, once batch 1 was scored: before batch 1's outputs are produced
        ("store", [(0, 1)]),
        ("acked", 1),  # batch 1, when a consume() waited and nothing came
        ("store", [(0, 2)]),
        ("revoke-start",),
        ("commit", False),
    ]


def full(*offsets: int) -> list[Message]:
    """A batch of SETTINGS.batch_max_size messages: the loop overlaps only full batches."""
    assert len(offsets) == SETTINGS.batch_max_size
    return [raw_message(i) for i in offsets]


def test_revoke_publishes_the_batch_still_being_scored_and_commits_it() -> None:
    hot_path, journal, metrics = build(["assign", full(0, 1), full(2, 3), "revoke"])
    hot_path.run()
    assert journal[:7] == [
        ("revoke-start",),
        ("acked", 2),  # batch 0, sent once batch 1 was handed to the scoring thread
        ("store", [(0, 2)]),
        ("acked", 2),  # batch 1, scored when the rebalance came: finished, sent and acked inside it
        ("store", [(0, 4)]),
        ("commit", False),
        ("revoke-end",),
    ]
    assert processed(metrics, "tagged") == 4


@pytest.mark.parametrize(
    ("pstats", "expected"),
    [
        ({"consumer_lag": 42, "hi_offset": 100, "lo_offset": 0, "committed_offset": 58}, 42),
        ({"consumer_lag": -1, "hi_offset": 100, "lo_offset": 10, "committed_offset": -1001}, 90),
        ({"consumer_lag": -1, "hi_offset": -1, "lo_offset": -1, "committed_offset": -1001}, None),
    ],
)
def test_partition_lag_from_librdkafka_statistics(pstats: dict, expected: int | None) -> None:
    assert partition_lag(pstats) == expected


def test_a_message_the_model_raises_on_is_dead_lettered_and_the_loop_goes_on() -> None:
    script: list = ["assign", full(0, 1), [raw_message(2, title="boom"), raw_message(3)], full(4, 5)]
    hot_path, journal, metrics = build(script)
    hot_path.run()
    assert hot_path.state.failure is None
    stored = [entry for entry in journal if entry[0] == "store"]
    assert stored[-1] == ("store", [(0, 6)])  # every offset, the poison message's included
    assert processed(metrics, "tagged") == 5
    assert processed(metrics, "dead_letter") == 1
    reason = {"reason": "internal_error"}
    assert metrics.registry.get_sample_value("stream_tagger_dead_letters_total", reason) == 1


def test_lost_partitions_drop_the_batch_being_scored_and_store_nothing() -> None:
    hot_path, journal, metrics = build(["assign", full(0, 1), full(2, 3), "lost"])
    hot_path.run()
    # Batch 0 was produced already: acked, not stored. Batch 1, being scored, is never produced.
    assert journal == [("lost",), ("acked", 2), ("commit", False), ("close",)]
    assert processed(metrics, "tagged") == 0  # counted only once stored


def fail_the_first_flush(monkeypatch: pytest.MonkeyPatch) -> None:
    """``FakeProducer.flush`` journals ("flushed", n) and fails every output of the first flush that has
    any, as a broker gone at a partition loss would."""
    flushes = iter([True])

    def flush_failing_once(self: FakeProducer, _timeout: float) -> int:
        if self.queued:
            self.journal.append(("flushed", len(self.queued)))
            if next(flushes, False):
                self.fail_queued()
        self.queued = []
        return 0

    monkeypatch.setattr(FakeProducer, "flush", flush_failing_once)


def test_a_delivery_failure_of_lost_partitions_outputs_does_not_stop_the_loop_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script: list = ["assign", full(0, 1), full(2, 3), "lost", "assign", [raw_message(4)]]
    hot_path, journal, metrics = build(script)
    fail_the_first_flush(monkeypatch)  # the one at the loss
    hot_path.run()
    assert hot_path.state.failure is None
    assert ("store", [(0, 5)]) in journal  # the batch after the loss is stored as usual
    assert processed(metrics, "tagged") == 1


def test_a_partial_batch_is_published_at_once_and_only_full_batches_overlap() -> None:
    hot_path, _, _ = build(["assign", [raw_message(0)], full(1, 2), [], []])
    queued: list[int] = []  # outputs produced and not yet flushed, seen at the start of each loop
    hot_path.between_batches.append(lambda: queued.append(len(hot_path._producer or [])))
    hot_path.run()
    # 1 after the partial batch 0 (produced in its own loop); 0 after the full batch 1-2 (being scored,
    # produced in the next loop); 2 once the next consume came back empty.
    assert queued[2:5] == [1, 0, 2]


class SlowPredictor(FakePredictor):
    def predict(self, texts: list[str]) -> FakePrediction:
        time.sleep(0.03)
        return super().predict(texts)


@pytest.mark.parametrize(("wait_ms", "left_at_most"), [(50, 0.02), (10, 0.0)])
def test_the_consume_wait_counts_from_when_the_previous_consume_returned(
    wait_ms: float, left_at_most: float
) -> None:
    # The partial batch takes >= 30 ms to score: the next consume waits what is left of the wait, and
    # nothing (never a negative timeout, which librdkafka reads as "forever") when the wait is over.
    # (No batch counts as sparse here: that wait is the next test's.)
    settings = Settings(topic_raw="raw", batch_max_size=64, batch_max_wait_ms=wait_ms, sparse_batch_size=0)
    hot_path, _, _ = build(["assign", [raw_message(0)], []], predictor=SlowPredictor(), settings=settings)
    hot_path.run()
    timeouts = hot_path._consumer.timeouts  # type: ignore[union-attr]
    assert 0 <= timeouts[2] <= left_at_most
    assert all(0 <= t <= wait_ms / 1000 for t in timeouts)
    assert set(hot_path._consumer.sizes) == {64}  # type: ignore[union-attr]


def test_after_a_sparse_batch_the_wait_is_its_work_at_most_and_after_none_the_next_event_is_taken() -> None:
    # After a consume that came back empty: one event, as soon as it comes, with what is queued by then
    # (a call that does not wait). After that batch of one, which took >= 30 ms to score: a wait of
    # about as long, not the rest of the second-long batch_max_wait_ms.
    settings = Settings(topic_raw="raw", batch_max_size=64, batch_max_wait_ms=1_000)
    script = ["assign", [raw_message(0)], [raw_message(1), raw_message(2)], [], []]
    hot_path, _, metrics = build(script, predictor=SlowPredictor(), settings=settings)
    hot_path.run()
    consumer = hot_path._consumer
    assert isinstance(consumer, FakeConsumer)
    assert consumer.sizes[1:7] == [1, 63, 64, 64, 1, 1]
    assert consumer.timeouts[1] == consumer.timeouts[5] == 1.0
    assert consumer.timeouts[2] == 0.0
    assert 0.03 <= consumer.timeouts[3] <= 0.5
    assert processed(metrics, "tagged") == 3


def test_after_a_batch_of_sparse_batch_size_events_or_more_the_wait_is_what_is_left() -> None:
    settings = Settings(topic_raw="raw", batch_max_size=64, batch_max_wait_ms=1_000, sparse_batch_size=2)
    script = ["assign", [raw_message(0), raw_message(1)], []]
    hot_path, _, _ = build(script, predictor=SlowPredictor(), settings=settings)
    hot_path.run()
    consumer = hot_path._consumer
    assert isinstance(consumer, FakeConsumer)
    assert consumer.sizes[1:4] == [1, 63, 64]
    assert 0.5 < consumer.timeouts[3] < 1.0


class WaitingPredictor(FakePredictor):
    """In the scoring thread, ``predict`` waits (up to 5 s) until another thread has scored a chunk."""

    def __init__(self) -> None:
        super().__init__()
        self.threads: list[str] = []
        self.helped = threading.Event()
        self.waited_in_vain = 0

    def predict(self, texts: list[str]) -> FakePrediction:
        name = threading.current_thread().name
        self.threads.append(name)
        if not name.startswith("scoring"):
            self.helped.set()
        elif not self.helped.wait(5):
            self.waited_in_vain += 1
        return super().predict(texts)


def test_the_hot_path_thread_scores_the_chunks_the_scoring_thread_has_not_started() -> None:
    predictor = WaitingPredictor()
    settings = Settings(topic_raw="raw", batch_max_size=64, score_chunks=2)
    batch = [raw_message(i) for i in range(64)]
    hot_path, journal, _ = build(["assign", batch], predictor=predictor, settings=settings)
    hot_path.run()
    assert sorted(len(call) for call in predictor.calls) == [32, 32]
    assert threading.current_thread().name in predictor.threads
    assert predictor.waited_in_vain == 0
    assert ("acked", 64) in journal


def test_a_partial_batch_of_one_chunk_with_nothing_before_it_is_scored_in_the_hot_path_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(topic_raw="raw", batch_max_size=64, score_chunks=2)
    messages = [raw_message(i) for i in range(137)]
    # 5 and 63 events: partial, one chunk each (32 events at least per chunk), each taken once the one
    # before was published. Then a full batch (two chunks) and 5 events taken while it waits.
    script = ["assign", messages[:5], messages[5:68], messages[68:132], messages[132:]]
    hot_path, journal, _ = build(script, settings=settings)
    handed_over: list[int] = []  # the events of each chunk given to the scoring thread
    submit = hot_path._scorer.submit

    def counted(task: Any) -> Any:
        handed_over.append(len(task.args[2]))  # partial(Pipeline._score, batch, index, rows)
        return submit(task)

    monkeypatch.setattr(hot_path._scorer, "submit", counted)
    hot_path.run()
    assert handed_over == [32, 32, 5]
    assert [entry for entry in journal if entry[0] == "acked"] == [
        ("acked", 5),
        ("acked", 63),
        ("acked", 64),
        ("acked", 5),
    ]


def test_a_big_partial_batch_is_routed_and_produced_part_by_part() -> None:
    settings = Settings(topic_raw="raw", batch_max_size=1_000, partial_batch_part_size=128)
    batch = [raw_message(i) for i in range(385)]  # 3 parts: 128, 128 and 129 events
    predictor = FakePredictor()
    hot_path, journal, metrics = build(["assign", batch], predictor=predictor, settings=settings)
    finish = hot_path.pipeline.finish
    steps: list[int] = []  # before each part's finish, how many outputs were produced

    def journalled_finish(prepared: PreparedBatch) -> BatchResult:
        steps.append(len(hot_path._producer.produced))  # type: ignore[union-attr]
        return finish(prepared)

    hot_path.pipeline.finish = journalled_finish  # type: ignore[method-assign]
    hot_path.run()
    # Each part is scored on its own (two chunks each), finished and its outputs produced before the
    # next is finished: the scoring thread scores part 2 while this thread routes and produces part 1.
    assert sorted(len(call) for call in predictor.calls) == [64] * 5 + [65]
    assert steps == [0, 128, 256]
    produced = hot_path._producer.produced  # type: ignore[union-attr]
    assert produced == [("tagged", f"id{i}".encode()) for i in range(385)]  # in input order
    # One batch: acked and stored once, counted once as a batch, its events once each.
    assert journal[:2] == [("acked", 385), ("store", [(0, 385)])]
    assert processed(metrics, "tagged") == 385
    registry = metrics.registry
    assert registry.get_sample_value("stream_tagger_batch_size_count") == 1
    inference = {"model_version": "fake-1", "role": "live"}
    assert registry.get_sample_value("stream_tagger_inference_seconds_count", inference) == 3


def test_the_last_part_is_finished_once_the_next_batch_is_handed_to_the_scoring_thread() -> None:
    settings = Settings(topic_raw="raw", batch_max_size=1_000, partial_batch_part_size=128)
    first = [raw_message(i) for i in range(256)]  # 2 parts
    second = [raw_message(256 + i) for i in range(10)]
    hot_path, journal, metrics = build(["assign", first, second], settings=settings)
    steps: list[tuple[str, str]] = []
    prepare, finish = hot_path.pipeline.prepare, hot_path.pipeline.finish

    def journalled_prepare(messages: list[Message], ahead: dict | None = None) -> PreparedBatch:
        steps.append(("prepare", messages[0].key().decode()))  # type: ignore[union-attr]
        return prepare(messages, ahead)

    def journalled_finish(prepared: PreparedBatch) -> BatchResult:
        steps.append(("finish", prepared.decoded[0][1].id))
        return finish(prepared)

    hot_path.pipeline.prepare = journalled_prepare  # type: ignore[method-assign]
    hot_path.pipeline.finish = journalled_finish  # type: ignore[method-assign]
    hot_path.run()
    assert steps == [
        ("prepare", "id0"),
        ("prepare", "id128"),
        ("finish", "id0"),
        ("prepare", "id256"),  # the next batch is taken and handed over first
        ("finish", "id128"),
        ("finish", "id256"),
    ]
    # The first batch's offsets once both its parts were acked; then the second's.
    assert journal[:4] == [("acked", 256), ("store", [(0, 256)]), ("acked", 10), ("store", [(0, 266)])]
    assert processed(metrics, "tagged") == 266


@pytest.mark.parametrize("part_size", [0, 128])
def test_a_produced_batch_never_waits_a_whole_consume_wait_for_its_acks(
    monkeypatch: pytest.MonkeyPatch, part_size: int
) -> None:
    """Whether a batch was published whole or its last part after an empty take, its acks are awaited
    at the next take, not after a wait for new input."""
    seen: list[tuple[float, bool]] = []  # each consume's timeout, and whether a batch awaited its acks
    consume = FakeConsumer.consume

    def spy(self: FakeConsumer, n: int, timeout: float) -> list[Message]:
        seen.append((timeout, self.hot_path[0]._pending is not None))
        return consume(self, n, timeout)

    monkeypatch.setattr(FakeConsumer, "consume", spy)
    settings = Settings(
        topic_raw="raw", batch_max_size=1_000, batch_max_wait_ms=50, partial_batch_part_size=part_size
    )
    script: list = ["assign", [raw_message(i) for i in range(256)], [], [raw_message(300)]]
    hot_path, _, _ = build(script, settings=settings, predictor=SlowPredictor())  # > 50 ms a batch
    hot_path.run()
    pending = [timeout for timeout, waiting in seen if waiting]
    assert pending and max(pending) < 0.05, pending


def test_lost_partitions_while_a_last_part_waits_store_nothing_and_blame_nothing_later(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(topic_raw="raw", batch_max_size=1_000, partial_batch_part_size=128)
    script: list = ["assign", [raw_message(i) for i in range(256)], "lost", "assign", [raw_message(300)]]
    hot_path, journal, metrics = build(script, settings=settings)
    fail_the_first_flush(monkeypatch)  # the one at the loss: the first part's outputs
    hot_path.run()
    assert hot_path.state.failure is None
    # The first part's outputs were produced: flushed at the loss, nothing of the batch stored.
    assert journal[:2] == [("lost",), ("flushed", 128)]
    assert [entry for entry in journal if entry[0] == "store"] == [("store", [(0, 301)])]
    assert processed(metrics, "tagged") == 1


def test_an_id_sent_again_in_a_later_part_gets_the_first_parts_outcome() -> None:
    """As within one whole batch: a retry or an edit of a post gets the outcome it got first."""
    settings = Settings(topic_raw="raw", batch_max_size=1_000, partial_batch_part_size=128)
    batch = [raw_message(i) for i in range(256)]  # 2 parts, every post "cv"
    edited = msgspec.json.encode({"id": "id5", "title": "nlp", "created_at": "2020-02-20T06:43:18Z"})
    batch[200] = Message(topic="raw", partition=0, offset=200, key=b"id5", value=edited)
    predictor = FakePredictor()
    hot_path, journal, metrics = build(["assign", batch], predictor=predictor, settings=settings)
    values: list[bytes] = []
    produce = FakeProducer.produce

    def keeping_values(self: FakeProducer, topic: str, value: bytes, key: bytes | None) -> None:
        values.append(value)
        produce(self, topic, value, key)

    FakeProducer.produce = keeping_values  # type: ignore[method-assign]
    try:
        hot_path.run()
    finally:
        FakeProducer.produce = produce  # type: ignore[method-assign]
    assert not any(text.startswith("nlp") for call in predictor.calls for text in call)  # not scored again
    first, again = (msgspec.json.decode(values[i]) for i in (5, 200))
    assert again["id"] == "id5" and again["tags"] == first["tags"] == [
        {"tag": "computer-vision", "confidence": 0.9}
    ]
    assert processed(metrics, "tagged") == 256 and journal[:2] == [("acked", 256), ("store", [(0, 256)])]


def test_exactly_once_a_batch_in_parts_is_one_transaction() -> None:
    guarantee = "exactly_once"
    settings = Settings(
        topic_raw="raw", batch_max_size=1_000, partial_batch_part_size=128, processing_guarantee=guarantee
    )
    hot_path, journal, metrics = build(["assign", [raw_message(i) for i in range(256)]], settings=settings)
    hot_path.run()
    assert journal == [
        ("init",),
        ("begin",),
        ("acked", 256),
        ("txn-offsets", [(0, 256)]),
        ("txn-commit",),
        ("close",),
    ]
    assert processed(metrics, "tagged") == 256


@pytest.mark.parametrize(
    ("size", "partial", "part_size", "parts"),
    [
        (4_000, True, 1_024, 3),
        (4_096, True, 1_024, 4),
        (2_047, True, 1_024, 1),  # two parts would be smaller than asked
        (4_000, True, 0, 1),  # 0: never split
        (4_096, False, 1_024, 1),  # a full batch is overlapped with the next instead
    ],
)
def test_how_many_parts_a_batch_is_finished_in(size: int, partial: bool, part_size: int, parts: int) -> None:
    settings = Settings(topic_raw="raw", partial_batch_part_size=part_size)
    hot_path, _, _ = build([], settings=settings)
    assert hot_path._part_count(size, partial) == parts


class FailingWhenStolen(FakePredictor):
    """Posts titled "unsure" fail when the hot-path thread scores them; the scoring thread, on them,
    stays busy for a second (so that the batches queued behind it are still queued when the loop
    fails) and then scores them."""

    def predict(self, texts: list[str]) -> FakePrediction:
        if texts[0].startswith("unsure"):
            if not threading.current_thread().name.startswith("scoring"):
                raise RuntimeError("stolen chunk failed")
            threading.Event().wait(1)
        return super().predict(texts)


def test_a_stolen_chunk_that_fails_dead_letters_its_posts_and_the_loop_goes_on() -> None:
    predictor = FailingWhenStolen()
    settings = Settings(topic_raw="raw", batch_max_size=64, score_chunks=2)
    first = [raw_message(i) for i in range(64)]
    second = [raw_message(64 + i, title="unsure") for i in range(64)]
    third = [raw_message(128 + i, title="nlp") for i in range(64)]
    script: list = ["assign", first, second, third]
    hot_path, journal, metrics = build(script, predictor=predictor, settings=settings)
    hot_path.run()
    assert hot_path.state.failure is None
    assert [entry for entry in journal if entry[0] == "store"][-1] == ("store", [(0, 192)])
    # The chunk this thread took over (at least one of the two) is dead-lettered; the rest is routed.
    dead, review = processed(metrics, "dead_letter"), processed(metrics, "review")
    assert dead in (32, 64) and dead + review == 64, (dead, review)
    assert processed(metrics, "tagged") == 128


@pytest.mark.parametrize("assigned", [None, (), (0, 1), (0, 1, 2), (0, 1, 2, 3)])
def test_next_offsets_follow_each_partitions_last_message_whatever_the_interleaving(
    assigned: tuple[int, ...] | None,
) -> None:
    order = [(0, 10), (1, 5), (0, 11), (2, 7), (1, 6), (0, 12), (1, 7)]  # partition 2 only near the start
    batch = [Message(topic="raw", partition=p, offset=o) for p, o in order]
    found = {
        (tp.topic, tp.partition): tp.offset
        for tp in _next_offsets(batch, None if assigned is None else frozenset(("raw", p) for p in assigned))
    }
    expected = {("raw", 0): 13, ("raw", 1): 8, ("raw", 2): 8}
    # Exactly the assigned partitions' ((0, 1): 2 was revoked inside the consume() that returned it;
    # (): every one was); None: no assignment seen yet, every partition counts.
    assert found == {tp: o for tp, o in expected.items() if assigned is None or tp[1] in assigned}
    assert _next_offsets([], frozenset()) == [] == _next_offsets([], None)


EXACTLY_ONCE = Settings(topic_raw="raw", batch_max_size=2, processing_guarantee="exactly_once")


def test_exactly_once_commits_each_batchs_outputs_and_offsets_in_one_transaction() -> None:
    script: list = ["assign", [raw_message(0), raw_message(5, partition=1)], [raw_message(1)]]
    hot_path, journal, metrics = build(script, settings=EXACTLY_ONCE)
    hot_path.run()
    assert journal == [
        ("init",),
        ("begin",),
        ("acked", 2),
        ("txn-offsets", [(0, 1), (1, 6)]),
        ("txn-commit",),
        ("begin",),
        ("acked", 1),
        ("txn-offsets", [(0, 2)]),
        ("txn-commit",),
        ("close",),  # no consumer commit, no stored offset: the transactions committed them
    ]
    assert processed(metrics, "tagged") == 3


def test_exactly_once_a_failed_commit_stops_the_loop_and_counts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(FakeProducer, "fail_commit", True)
    script: list = ["assign", full(0, 1), full(2, 3)]
    hot_path, journal, metrics = build(script, settings=EXACTLY_ONCE)
    with pytest.raises(KafkaException, match="fenced"):
        hot_path.run()
    assert not any(entry[0] in ("store", "commit", "txn-commit") for entry in journal)
    assert journal[-2:] == [("txn-abort",), ("close",)]
    assert processed(metrics, "tagged") == 0


def test_exactly_once_lost_partitions_abort_the_open_transaction() -> None:
    hot_path, journal, metrics = build(["assign", full(0, 1), full(2, 3), "lost"], settings=EXACTLY_ONCE)
    hot_path.run()
    assert ("txn-abort",) in journal and ("txn-commit",) not in journal
    assert not any(entry[0] in ("store", "commit") for entry in journal)
    assert processed(metrics, "tagged") == 0


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def test_rebalances_and_assigned_partitions_are_exported() -> None:
    hot_path, _, metrics = build(["assign", full(0, 1), "revoke", "lost"])
    hot_path.run()
    rebalances = "stream_tagger_kafka_rebalances_total"
    assert sample(metrics, rebalances, {"event": "assigned"}) == 1
    assert sample(metrics, rebalances, {"event": "revoked"}) == 1
    assert sample(metrics, rebalances, {"event": "lost"}) == 1
    assert sample(metrics, "stream_tagger_kafka_assigned_partitions") == 0


def test_the_assigned_partitions_gauge_follows_assignment() -> None:
    hot_path, _, metrics = build(["assign", "revoke"])
    seen: list[float | None] = []
    hot_path.between_batches.append(
        lambda: seen.append(sample(metrics, "stream_tagger_kafka_assigned_partitions"))
    )
    hot_path.run()
    assert seen[1:3] == [2, 1]  # after the assignment of partitions 0 and 1, after the revoke of 0


def test_sync_and_transaction_commits_are_timed() -> None:
    hot_path, _, metrics = build(["assign", full(0, 1)])
    hot_path.run()
    count = "stream_tagger_kafka_commit_seconds_count"
    assert sample(metrics, count, {"kind": "sync"}) == 2  # at stop, and in the revoke of close()
    hot_path, _, metrics = build(["assign", full(0, 1), full(2, 3)], settings=EXACTLY_ONCE)
    hot_path.run()
    assert sample(metrics, count, {"kind": "transaction"}) == 2


def test_a_fatal_consumer_error_stops_the_loop_before_the_next_batch() -> None:
    # confluent-kafka's message errors never say fatal(): librdkafka's code _FATAL does (no topic).
    fatal = Message(topic=None, partition=-1, error=KafkaError(KafkaError._FATAL, "fenced"))
    hot_path, journal, _ = build(["assign", [raw_message(0)], [fatal], [raw_message(1)]])
    with pytest.raises(KafkaException, match="fenced"):
        hot_path.run()
    assert hot_path.state.failure and "fenced" in hot_path.state.failure
    # Nothing after the error is read: offset 1's outcome is never acked or stored.
    assert [entry for entry in journal if entry[0] == "acked"] == [("acked", 1)]
    assert not any(entry[0] == "store" and (0, 2) in entry[1] for entry in journal)


def test_failed_deliveries_count_as_produce_errors_by_code() -> None:
    hot_path, _, metrics = build(["assign", [raw_message(0)], [raw_message(1)]], fail=True)
    with pytest.raises(DeliveryFailed):
        hot_path.run()
    assert sample(metrics, "stream_tagger_kafka_produce_errors_total", {"code": "_MSG_TIMED_OUT"}) == 1


def test_a_producer_error_counts_as_a_produce_error() -> None:
    hot_path, _, metrics = build([])
    hot_path._on_producer_error(KafkaError(KafkaError._ALL_BROKERS_DOWN))
    assert sample(metrics, "stream_tagger_kafka_produce_errors_total", {"code": "_ALL_BROKERS_DOWN"}) == 1


class NextVersion(FakePredictor):
    version = "fake-2"


def test_the_series_of_a_model_version_no_longer_served_is_removed() -> None:
    hot_path, _, metrics = build(["assign", [raw_message(0)], [raw_message(1)]])
    count = "stream_tagger_inference_seconds_count"

    def served(version: str) -> float | None:
        return sample(metrics, count, {"model_version": version, "role": "live"})

    seen: list[float | None] = []  # fake-1's batches, before each consume

    def swap_after_the_first_batch() -> None:
        seen.append(served("fake-1"))
        if len(seen) == 3:  # after the assignment, after the first batch
            hot_path.pipeline.serve(NextVersion())  # type: ignore[arg-type]

    hot_path.between_batches.append(swap_after_the_first_batch)
    hot_path.run()
    assert seen[2] == 1
    assert (served("fake-1"), served("fake-2")) == (None, 1)


def test_messages_of_a_partition_revoked_inside_the_consume_are_left_to_its_next_owner() -> None:
    batch = [raw_message(0), raw_message(7, partition=1), raw_message(1)]
    script = ["assign", ("revoke-within", batch), [raw_message(8, partition=1)]]
    hot_path, journal, metrics = build(script, settings=BATCH_OF_3)
    hot_path.run()
    stored = [entry for entry in journal if entry[0] == "store"]
    assert stored == [("store", [(1, 8)]), ("store", [(1, 9)])]  # partition 0's two are not published
    assert processed(metrics, "tagged") == 2


def test_a_revoke_inside_the_call_that_takes_what_is_queued_drops_both_calls_messages_of_it() -> None:
    # After the empty consume of the assignment, consume(1) takes message 0 and the non-blocking call
    # after it the rest, inside which partition 0 is revoked: neither call's partition 0 message is
    # published or stored.
    batch = [raw_message(0), raw_message(7, partition=1), raw_message(1)]
    script = ["assign", ("revoke-within-rest", batch), [raw_message(8, partition=1)]]
    hot_path, journal, metrics = build(script, settings=BATCH_OF_3)
    hot_path.run()
    assert hot_path._consumer.sizes[1:3] == [1, 2]  # type: ignore[union-attr]
    stored = [entry for entry in journal if entry[0] == "store"]
    assert stored == [("store", [(1, 8)]), ("store", [(1, 9)])]
    assert processed(metrics, "tagged") == 2


def test_exactly_once_the_batch_after_a_loss_is_not_blamed_for_the_aborted_outputs() -> None:
    script: list = ["assign", full(0, 1), full(2, 3), "lost", "assign", [raw_message(4)]]
    hot_path, journal, metrics = build(script, settings=EXACTLY_ONCE)
    hot_path.run()  # the purge reports of the aborted transaction come at the next flush
    assert hot_path.state.failure is None
    assert journal[-3:] == [("txn-offsets", [(0, 5)]), ("txn-commit",), ("close",)]
    assert processed(metrics, "tagged") == 1


def test_while_the_loop_runs_what_was_loaded_is_frozen_and_the_gil_switches_every_ms() -> None:
    hot_path, _, _ = build(["assign", [raw_message(0)]])
    seen: list[tuple[int, float]] = []
    hot_path.between_batches.append(lambda: seen.append((gc.get_freeze_count(), sys.getswitchinterval())))
    before = sys.getswitchinterval()
    hot_path.run()
    assert seen[0][0] > 0
    assert seen[0][1] == pytest.approx(0.001)
    assert (gc.get_freeze_count(), sys.getswitchinterval()) == (0, before)  # as they were, once it stops


def test_a_failed_loop_also_restores_the_switch_interval_and_the_collector() -> None:
    hot_path, _, _ = build(["assign", [raw_message(0)], [raw_message(1)]], fail=True)
    before = sys.getswitchinterval()
    with pytest.raises(DeliveryFailed):
        hot_path.run()
    assert (gc.get_freeze_count(), sys.getswitchinterval()) == (0, before)


def test_what_the_process_froze_before_the_loop_stays_frozen_after_it() -> None:
    hot_path, _, _ = build(["assign", [raw_message(0)]])
    gc.freeze()  # as the worker's start-up does (app.tune_gc)
    try:
        frozen = gc.get_freeze_count()
        hot_path.run()
        assert gc.get_freeze_count() >= frozen
    finally:
        gc.unfreeze()


def own_nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


@pytest.mark.skipif(sys.platform != "linux", reason="a thread has a priority of its own on Linux only")
@pytest.mark.parametrize("nice", [0, 4, 10])
def test_the_scoring_thread_runs_nicer_than_the_hot_path_thread_by_the_setting(nice: int) -> None:
    if nice and own_nice() + nice > 19:
        pytest.skip("the tests run too nice for the scoring thread to be nicer still")
    hot_path, _, _ = build([], settings=Settings(topic_raw="raw", scoring_thread_nice=nice))
    try:
        scoring = hot_path._scorer.submit(own_nice).result(5)
    finally:
        hot_path._scorer.shutdown()
    assert scoring == own_nice() + nice


@pytest.mark.skipif(sys.platform != "linux", reason="a thread has a priority of its own on Linux only")
def test_a_refused_priority_change_is_logged_and_the_thread_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(*_args: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "setpriority", refuse)
    lower_priority(10)  # does not raise: the scoring thread starts at the process's priority
    assert "the scoring thread keeps the process's priority: [Errno 1] Operation not permitted" in caplog.text
