"""The high-volume loop: consume a micro-batch, score it, publish, wait for acks, store offsets.

It runs in one dedicated thread with plain confluent-kafka clients instead of a Faust stream: a Faust
agent that merely iterates its stream tops out at ~4.4k events/s on a 2-core machine, a bare
confluent-kafka loop at ~167k/s (docs/decisions/001-micro-batch-hot-path-beside-faust.md). Faust
still owns the process around it (lifecycle, signals, low-volume agents); see ``app.py``.

Under load two batches overlap on two cores: when a consume returns a full batch, batch N+1 is
decoded here, then featurised and run through onnxruntime in the ``scoring`` thread (both release
the GIL) while this thread routes, encodes and publishes batch N (``Pipeline.prepare`` /
``scoring_tasks`` / ``finish``). Scoring is most of the loop's time: one thread doing it all would keep
one core busy and leave the other to the broker's clients. Scoring comes in chunks, and when this
thread gets to a batch whose chunks the scoring thread has not all started, it scores those itself
rather than wait (``_scored``). A partial batch (the input does not keep up) is published before the
next is taken: overlapping those too would make many small batches, each waiting for the acks of the
one before, and the loop would fall behind. A big one is finished in parts, in order, so that this
thread routes and produces part 1 while the scoring thread scores part 2 (``_part_count``), and its
last part once the next batch is taken and handed to the scoring thread (what each piece buys:
decisions 013, 021 and 023). A partial batch of one chunk, with nothing before it left to publish (low
load), is scored here at once instead: there is nothing to share, nothing to overlap (decision 026).

Ordering that makes it at-least-once:
1. the outputs of batch N are produced (idempotent producer, keyed by content id);
2. while the broker acks them, batch N+1 is consumed and scored (overlapping network and CPU),
   full or not: waiting for the acks at once after a partial batch would leave the thread idle for
   a broker round trip per batch while events queue behind it. When no input comes within the consume
   wait (what is left of ``batch_max_wait_ms`` since the previous consume returned, less after a sparse
   batch), the acks are awaited then, so at low load a batch is finished at most that much after its
   acks. While a full batch, or the last part of a batch in parts, is in flight the loop does not wait
   for input;
3. only when every output of batch N is acked are its offsets stored; auto-commit commits stored
   offsets only. A failed delivery never lets an offset advance: the loop stops and the worker
   exits 1, so a restart re-processes the batch.
Rebalance callbacks run inside ``consume()`` in this same thread, so the batch being scored and
the one being acked are finished and their offsets committed before a partition moves to another
worker.

With ``processing_guarantee=exactly_once`` the same order holds with a Kafka transaction per batch:
the transaction opens before its outputs are produced, and at step 3 the batch's offsets are sent
within it and it is committed, so a reader with ``isolation.level=read_committed`` sees every output
once, a crash included. A failed commit stops the loop, as a failed delivery does: the transaction is
aborted and a restart re-processes the batch.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from stream_tagger.kafka.config import consumer_config, producer_config
from stream_tagger.metrics import Metrics, observe_many
from stream_tagger.settings import Settings
from stream_tagger.worker.pipeline import BatchResult, Earlier, Pipeline, PreparedBatch

log = logging.getLogger(__name__)
_SWITCH_INTERVAL_S = 0.001


def lower_priority(nice: int) -> None:
    """Make the calling thread ``nice`` nicer (at most 19), on Linux, where each thread has its own
    priority (elsewhere the call would reach the whole process). Raising one's own nice needs no
    privilege; where it is refused all the same (a seccomp profile), the thread keeps its priority."""
    if not nice or sys.platform != "linux":
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(os.getpriority(os.PRIO_PROCESS, tid) + nice, 19))
    except OSError as exc:
        log.warning("the scoring thread keeps the process's priority: %s", exc)


class DeliveryFailed(RuntimeError):
    """The broker did not ack an output: the batch's offsets stay uncommitted and the loop stops."""


@dataclass
class HotPathState:
    """What /healthz and /ready read; written by the loop thread only (plain attribute swaps)."""

    assigned: frozenset[tuple[str, int]] = frozenset()
    lag: dict[tuple[str, int], int] = field(default_factory=dict)
    last_progress: float = field(default_factory=time.monotonic)
    running: bool = False
    failure: str | None = None

    def total_lag(self) -> int:
        return sum(self.lag.get(tp, 0) for tp in self.assigned)


@dataclass(slots=True)
class _Pending:
    """A batch whose outputs were produced but not yet acked: its offsets, and the result of each part."""

    offsets: list[TopicPartition]
    results: list[BatchResult]


_DONE: Future[None] = Future()
_DONE.set_result(None)  # a chunk already scored, in this thread


@dataclass(slots=True)
class _Part:
    """A run of a batch's messages, decoded, its chunks being scored (in either thread), not yet routed."""

    prepared: PreparedBatch
    tasks: list[Callable[[], None]]
    futures: list[Future[None]]


@dataclass(slots=True)
class _Scoring:
    """A batch being scored, in parts that are finished and produced in order: one part for a batch
    overlapped with the next, several for a big partial one (``_part_count``)."""

    messages: list[Message]
    parts: list[_Part]
    results: list[BatchResult] = field(default_factory=list)  # of the parts produced so far


class HotPath:
    def __init__(
        self,
        settings: Settings,
        pipeline: Pipeline,
        metrics: Metrics,
        consumer_factory: Callable[[dict[str, Any]], Consumer] = Consumer,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        """The factories exist for unit tests of the commit discipline with fake clients."""
        self._consumer_factory = consumer_factory
        self._producer_factory = producer_factory
        self.settings = settings
        self.pipeline = pipeline
        self.metrics = metrics
        self.state = HotPathState()
        self._stop = threading.Event()
        self._pending: _Pending | None = None
        self._scoring: _Scoring | None = None
        self._scorer = ThreadPoolExecutor(
            1, "scoring", initializer=lower_priority, initargs=(settings.scoring_thread_nice,)
        )
        self._transactional = settings.processing_guarantee == "exactly_once"
        self._in_transaction = False
        self._assignment_seen = False  # until then, _next_offsets counts every partition (fake clients)
        self._moved = False  # partitions were revoked or lost since the last batch was taken
        self._errors: list[str] = []
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._consumed = metrics.events_consumed.labels(settings.topic_raw)
        self._live_version: str | None = None  # of the last batch published, to retire its series
        # Called in this thread before each batch is consumed: where a hot-reloaded model is swapped in
        # (``model_watch``), so that every batch is scored by exactly one model version.
        self.between_batches: list[Callable[[], object]] = []

    def stop(self) -> None:
        """Ask the loop to finish the batch being scored and the one waiting for acks, commit, return."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        """Asked to stop, or stopped by a failure (which stops the worker)."""
        return self._stop.is_set() or self.state.failure is not None

    def run(self) -> None:
        """Block until ``stop()``; raises on a failure that must not be skipped (see module docstring)."""
        settings = self.settings
        self._producer = self._producer_factory(
            producer_config(settings, self._on_delivery, self._on_producer_error)
        )
        if self._transactional:
            # Fences an earlier producer with the same transactional.id and aborts what it left open.
            self._producer.init_transactions(settings.delivery_timeout_ms / 1000)
        self._consumer = consumer = self._consumer_factory(
            consumer_config(settings, self._on_stats, self._on_error)
        )
        consumer.subscribe(
            [settings.topic_raw], on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self.state.running = True
        log.info("hot path consuming %s as group %s", settings.topic_raw, settings.consumer_group)
        wait_s = settings.batch_max_wait_ms / 1000
        # What is loaded by now (modules, the model, Faust) lives as long as the process: frozen, a full
        # collection no longer walks it (~80-100 ms on 2 busy cores, a stall of every event in flight).
        # Unfrozen at the end only if nothing was frozen before: gc.unfreeze() would also release what
        # the process froze itself (``app.tune_gc``).
        unfreeze = gc.get_freeze_count() == 0
        gc.freeze()
        # The scoring thread needs the GIL between its featurise and graph calls; at the default 5 ms
        # switch interval it waited up to that long each time while this thread ran Python, its core idle.
        switch_interval = sys.getswitchinterval()
        sys.setswitchinterval(_SWITCH_INTERVAL_S)
        taken = time.monotonic()
        messages: list[Message] = []
        try:
            while not self._stop.is_set():
                for hook in self.between_batches:
                    hook()
                if self._scoring:
                    messages = consumer.consume(settings.batch_max_size, 0.0)
                elif messages or self._pending is not None or not settings.sparse_batch_size:
                    # The wait counts from when the last batch was taken: what arrived since has waited
                    # already. After a sparse batch (or none, with a batch waiting for its acks) it is
                    # also at most the time since that batch was taken (decision 018; confluent-kafka
                    # truncates it to whole ms). Never negative: confluent-kafka would read it as "wait
                    # forever".
                    since = time.monotonic() - taken
                    timeout = wait_s - since
                    if len(messages) < settings.sparse_batch_size:
                        timeout = min(timeout, since)
                    messages = consumer.consume(settings.batch_max_size, max(0.0, timeout))
                else:
                    # Nothing came at the last take: wait for the next event, then take it with whatever
                    # else is queued by then.
                    messages = consumer.consume(1, wait_s)
                    if messages and settings.batch_max_size > 1:
                        messages += consumer.consume(settings.batch_max_size - 1, 0.0)
                taken = time.monotonic()
                batch = self._usable(messages)
                partial = len(messages) < settings.batch_max_size
                # The callbacks of a rebalance inside consume() may have finished self._scoring.
                scoring = self._scoring
                self._scoring = (
                    self._score(batch, self._part_count(len(batch), partial), partial and scoring is None)
                    if batch
                    else None
                )
                if scoring is not None:
                    self._publish(scoring)
                else:
                    self._finish_pending()
                if partial and self._scoring is not None and len(self._scoring.parts) > 1:
                    # Its last part is finished once the next batch is taken and handed to the scoring
                    # thread: one thread would otherwise idle while the other finishes it.
                    self._publish(self._scoring, len(self._scoring.parts) - 1)
                elif partial:
                    # Input does not keep the loop busy: publish the batch now, as one thread would.
                    self._publish_scoring()
            self._publish_scoring()
            self._finish_pending()
            self._commit()
            log.info("hot path stopped after committing its last batch")
        except BaseException as exc:
            self.state.failure = repr(exc)
            # Said as /healthz turns 503, which points to the log: closing the consumer below can take
            # a minute when the broker is gone.
            log.critical("hot path stopped: %s", exc)
            # Not published after a failure (close() revokes): a restart re-reads it.
            self._scoring = None
            if self._transactional:  # its outputs are aborted: nothing of it may be committed at close
                self._pending = None
                self._abort()
            raise
        finally:
            self.state.running = False
            sys.setswitchinterval(switch_interval)
            if unfreeze:
                gc.unfreeze()
            try:
                consumer.close()
            finally:
                self._scorer.shutdown(cancel_futures=True)

    def _usable(self, messages: list[Message]) -> list[Message]:
        """The messages to process: errors are raised or logged, and after a revoke or loss inside the
        consume() that returned them, messages of partitions no longer assigned are dropped (their next
        owner processes them; published here, their outputs would be committed without their offsets)."""
        batch = []
        moved, self._moved = self._moved, False
        assigned = self.state.assigned
        for message in messages:
            error = message.error()
            if error is None:
                if not moved or (message.topic(), message.partition()) in assigned:
                    batch.append(message)
            elif error.fatal() or error.code() == KafkaError._FATAL:
                # A consumer's fatal error (fenced by another member with its group.instance.id, say)
                # comes as a message of code _FATAL, which confluent-kafka does not flag fatal(): the
                # consumer has left its group for good, and the process must stop rather than idle.
                raise KafkaException(error)
            elif error.code() != KafkaError._PARTITION_EOF:
                log.warning(
                    "consumer error: %s",
                    error.str(),
                    extra={"topic": message.topic(), "partition": message.partition()},
                )
        return batch

    def _part_count(self, size: int, partial: bool) -> int:
        """How many parts a batch of ``size`` events is finished in. A partial batch is published before
        the next is taken (but for the last part of one in parts), by both threads in turn: whole, the
        scoring thread idles while this one decodes and then routes and encodes, this one idles while
        the chunks are scored. In parts, this thread finishes part 1 while the other scores part 2, and
        so on. A full batch is overlapped with the next instead."""
        part_size = self.settings.partial_batch_part_size
        if not partial or not part_size:
            return 1
        return max(1, size // part_size)

    def _score(self, batch: list[Message], parts: int, alone: bool) -> _Scoring:
        """Decode here, part by part (of equal size, within one event), each part's chunks handed to the
        scoring thread as soon as it is decoded (and scored here, see ``_scored``). An id in two parts
        gets the first part's outcome, as within one batch (``Pipeline.prepare``'s ``ahead``).

        ``alone``: a partial batch with no batch before it left to publish. In one part of one chunk it
        is scored here at once: it is published next and cannot be shared, and handed over, this
        thread would only wait for the scoring thread to wake and get a core, which at its nice value
        the broker's and other processes' threads come before (decision 024). The acks of the batch
        before are in flight meanwhile either way (decision 026)."""
        self._consumed.inc(len(batch))
        self.metrics.batch_size.observe(len(batch))
        ahead: dict[str, Earlier] | None = {} if parts > 1 else None
        bounds = [len(batch) * i // parts for i in range(parts + 1)]
        scoring = _Scoring(batch, [])
        for start, stop in itertools.pairwise(bounds):
            prepared = self.pipeline.prepare(batch[start:stop], ahead)
            tasks = self.pipeline.scoring_tasks(prepared)
            if alone and parts == 1 and len(tasks) == 1:
                tasks[0]()
                futures = [_DONE]
            else:
                futures = [self._scorer.submit(task) for task in tasks]
            scoring.parts.append(_Part(prepared, tasks, futures))
        return scoring

    @staticmethod
    def _scored(part: _Part) -> None:
        """Wait until every chunk of the part is scored, scoring here the chunks the scoring thread
        has not started: this thread would otherwise sit idle while the other one is the bottleneck.
        Re-raises what a chunk raised in the scoring thread, or here."""
        for task, future in zip(reversed(part.tasks), reversed(part.futures), strict=True):
            if future.cancel():  # not started yet: it will not be
                task()
        for future in part.futures:
            if not future.cancelled():
                future.result()

    def _publish(self, scoring: _Scoring, upto: int | None = None) -> None:
        """Finish a scored batch part by part and produce each part's outputs as it is finished, once
        the batch before it is acked; with ``upto``, only the parts before that one (a later call
        publishes the rest). Once every part is produced, the batch waits for its acks (``_pending``)."""
        results = scoring.results
        for part in scoring.parts[len(results) : len(scoring.parts) if upto is None else upto]:
            self._scored(part)
            result = self.pipeline.finish(part.prepared)
            if result.scored:
                self._observe_inference(part.prepared.serving.predictor.version, result.inference_seconds)
            if not results:
                self._finish_pending()
                self._begin()
            self._produce(result.records)
            results.append(result)
        if len(results) == len(scoring.parts):
            assigned = self.state.assigned if self._assignment_seen else None
            self._pending = _Pending(_next_offsets(scoring.messages, assigned), results)

    def _observe_inference(self, version: str, seconds: float) -> None:
        if version != self._live_version:
            # Batches are published in order: none of the version served before will follow.
            if self._live_version is not None:
                self.metrics.retire_model(self._live_version, "live")
            self._live_version = version
        self.metrics.inference_seconds.labels(version, "live").observe(seconds)

    def _publish_scoring(self) -> None:
        scoring, self._scoring = self._scoring, None
        if scoring is not None:
            self._publish(scoring)

    def _begin(self) -> None:
        """Open the batch's transaction (exactly-once); its offsets are sent in it at ``_finish_pending``."""
        if self._transactional:
            assert self._producer is not None
            self._producer.begin_transaction()
            self._in_transaction = True

    def _produce(self, records: Sequence[tuple[str, bytes | None, bytes]]) -> None:
        producer = self._producer
        assert producer is not None
        produce = producer.produce
        for topic, key, value in records:
            while True:
                try:
                    produce(topic, value, key)
                    break
                except BufferError:
                    # Local queue full: wait for acks rather than drop an output.
                    producer.poll(0.05)

    def _finish_pending(self) -> None:
        """Wait until the broker acked every output of the pending batch, then store its offsets."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        producer, consumer = self._producer, self._consumer
        assert producer is not None and consumer is not None
        while producer.flush(1.0):
            log.warning("waiting for the broker to ack %d output(s)", len(producer))
        if self._errors:
            first, count = self._errors[0], len(self._errors)
            raise DeliveryFailed(
                f"{count} output(s) not acknowledged by the broker ({first}); "
                "their inputs' offsets are not committed and will be re-processed"
            )
        if self._transactional:
            started = time.perf_counter()
            if pending.offsets:
                producer.send_offsets_to_transaction(pending.offsets, consumer.consumer_group_metadata())
            producer.commit_transaction()  # raises on failure: run() aborts, a restart re-processes
            self.metrics.kafka_commit_seconds.labels("transaction").observe(time.perf_counter() - started)
            self._in_transaction = False
        else:
            consumer.store_offsets(offsets=pending.offsets)
        self._record_acked(pending.results)

    def _abort(self) -> None:
        """Abort the open transaction, if any: its outputs are never seen by read_committed readers."""
        if not self._in_transaction:
            return
        self._in_transaction = False
        assert self._producer is not None
        try:
            self._producer.abort_transaction(self.settings.transaction_timeout_ms / 1000)
        except KafkaException as exc:  # fenced or timed out: the broker aborts it at its timeout
            log.warning("could not abort the open transaction (%s)", exc.args[0].str())

    def _record_acked(self, results: list[BatchResult]) -> None:
        now = time.time()
        metrics = self.metrics
        for outcome, times in results[0].event_times.items():
            if len(results) > 1:
                times = [t for result in results for t in result.event_times[outcome]]
            if times:
                metrics.events_processed.labels(outcome).inc(len(times))
                observe_many(metrics.end_to_end_latency.labels(outcome), now - np.asarray(times))
        for result in results:
            for reason, count in result.dead_letter_reasons.items():
                metrics.dead_letters.labels(reason).inc(count)
            for observer in result.observer_errors:
                metrics.observer_errors.labels(observer).inc()
        metrics.last_processed_timestamp.set(now)
        self.state.last_progress = time.monotonic()

    def _commit(self) -> None:
        """Commit stored offsets now. A failure is logged, not raised: every stored offset's outputs
        are already acked, so the worst case is that the next owner re-processes from the previous
        commit, which republishes the same outcomes under the same keys."""
        assert self._consumer is not None
        if self._transactional:
            return  # each batch's offsets were committed with its transaction
        started = time.perf_counter()
        try:
            self._consumer.commit(asynchronous=False)
            self.metrics.kafka_commit_seconds.labels("sync").observe(time.perf_counter() - started)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning(
                    "commit failed (%s); the next owner re-processes from the last commit", exc.args[0].str()
                )

    # --- librdkafka callbacks (all run inside consume()/flush() in this thread) ---

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._errors.append(error.str())
            self.metrics.kafka_produce_errors.labels(error.name()).inc()

    def _on_producer_error(self, error: KafkaError) -> None:
        self.metrics.kafka_produce_errors.labels(error.name()).inc()
        self._on_error(error)

    def _on_error(self, error: KafkaError) -> None:
        if error.fatal():
            self._errors.append(error.str())
        log.warning("kafka: %s", error.str())

    def _on_assign(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self.state.assigned = self.state.assigned | {(p.topic, p.partition) for p in partitions}
        self._assignment_seen = True
        self._rebalanced("assigned")
        log.info("assigned %s", _describe(partitions))

    def _on_revoke(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._publish_scoring()
        self._finish_pending()
        self._commit()
        self._forget(partitions)
        self._rebalanced("revoked")
        log.info("revoked %s after committing", _describe(partitions))

    def _on_lost(self, _consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Another worker may already own them. librdkafka reports a loss for the whole assignment (the
        # one subscribed topic's partitions), so every partition of the batch being scored is among
        # them: it is dropped unpublished, as nothing of it is stored and its next owner scores it
        # again; published here, it would only land beside (or after) that owner's outputs.
        # Parts of the batch being scored may have been produced already (its last one was waiting).
        produced = self._pending is not None or (self._scoring is not None and bool(self._scoring.results))
        if self._scoring is not None:  # chunks not started yet are not scored for nothing
            for part in self._scoring.parts:
                for future in part.futures:
                    future.cancel()
        self._scoring = None
        assert self._producer is not None
        if self._transactional:
            # Nothing of the open transaction may become visible: abort, the next owner redoes it.
            self._pending = None
            self._abort()
            # librdkafka reports the purged outputs' failures at the next flush or poll: take them now,
            # or the next, healthy batch would be blamed for them.
            self._producer.flush(0)
            log.warning("lost %s; their open transaction was aborted", _describe(partitions))
        else:
            # The batch waiting for acks is produced already: let it finish, and store nothing of it.
            self._pending = None
            if produced:
                self._producer.flush(self.settings.delivery_timeout_ms / 1000)
            log.warning("lost %s; they will be re-processed from the last commit", _describe(partitions))
        # Failures among these outputs are the next owner's to redo (nothing of them was stored); left
        # here they would stop the loop later, blamed on a batch that was delivered.
        self._errors.clear()
        self._forget(partitions)
        self._rebalanced("lost")

    def _forget(self, partitions: list[TopicPartition]) -> None:
        self._moved = True
        gone = {(p.topic, p.partition) for p in partitions}
        self.state.assigned = self.state.assigned - gone
        for topic, partition in gone:
            self.state.lag.pop((topic, partition), None)
            with contextlib.suppress(KeyError):
                self.metrics.consumer_lag.remove(topic, str(partition))

    def _rebalanced(self, event: str) -> None:
        self.metrics.kafka_rebalances.labels(event).inc()
        self.metrics.kafka_assigned_partitions.set(len(self.state.assigned))

    def _on_stats(self, stats_json: str) -> None:
        stats = json.loads(stats_json)
        lag: dict[tuple[str, int], int] = {}
        for topic, info in stats.get("topics", {}).items():
            for partition, pstats in info.get("partitions", {}).items():
                key = (topic, int(partition))
                behind = partition_lag(pstats)
                if key in self.state.assigned and behind is not None:
                    lag[key] = behind
                    self.metrics.consumer_lag.labels(topic, partition).set(behind)
        self.state.lag = lag


def partition_lag(pstats: dict[str, Any]) -> int | None:
    """End offset minus committed offset; before the group's first commit, minus the log start
    (where ``auto.offset.reset=earliest`` starts reading). None while librdkafka does not know."""
    if pstats.get("consumer_lag", -1) >= 0:
        return int(pstats["consumer_lag"])
    high, low = pstats.get("hi_offset", -1), pstats.get("lo_offset", -1)
    if pstats.get("committed_offset", -1) < 0 and high >= 0 and low >= 0:
        return int(high - low)
    return None


def _next_offsets(
    batch: Sequence[Message], assigned: frozenset[tuple[str, int]] | None
) -> list[TopicPartition]:
    """Per assigned partition in ``batch``, the offset after its last message (what to commit). Read from
    the end, stopping once every assigned partition is found: three method calls per message cost
    ~0.2 µs, ~1% of the loop's Python, for offsets that only each partition's last message decides.
    A partition revoked inside the consume() that returned the batch is left out: storing an offset
    for it raises, which would stop the loop (its events are the next owner's to redo); with every
    partition revoked, nothing is stored. ``assigned`` is None before any assignment was seen (fake
    clients in unit tests): then every partition counts."""
    last: dict[tuple[str, int], int] = {}
    wanted = -1 if assigned is None else len(assigned)
    for message in reversed(batch):
        tp = (message.topic(), message.partition())
        if tp not in last and (assigned is None or tp in assigned):
            last[tp] = message.offset() + 1
            if len(last) == wanted:
                break
    return [TopicPartition(topic, partition, offset) for (topic, partition), offset in last.items()]


def _describe(partitions: list[TopicPartition]) -> str:
    return ", ".join(f"{p.topic}[{p.partition}]" for p in partitions) or "nothing"
