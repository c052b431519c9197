"""Join people's corrections with what the worker predicted, keyed by content id.

Why a join over two topics: the worker's hot path must not wait for feedback, and feedback arrives
minutes to days after the prediction, possibly on another worker. So predictions are read back from
the tagged topic into a table keyed by id, and corrections from the feedback topic are matched
against it. Both topics are keyed by content id with the same partition count (``settings.partitions``),
so they are co-partitioned: the worker owning partition p of one owns partition p of the other, and
every lookup is local. Tables are Faust tables backed by changelog topics, so a restarted or
rebalanced worker gets its state back.

The join is symmetric because the two agents run independently: feedback that arrives before its
prediction is parked and judged when the prediction comes. A parked list is one changelog record, so
it is kept small: the latest ``PARKED_PER_SOURCE`` corrections of each source (older ones are dropped
and counted), without the reviewer's name (nothing here uses it), and no record is written that Faust's
producer would refuse (``RecordTooLarge``: the correction is dead-lettered instead; a refused changelog
record would crash the process outside any handler, and again on every restart).

The first prediction for an id is kept (later ones are at-least-once replays, or the echo of a review
resolution this module published). Both tables forget what arrived longer than
``feedback_retention_days`` ago (a sweep every ``feedback_sweep_interval_s``), so they stay bounded on
an endless stream; a deletion is a tombstone in the changelog, which compaction then drops. Arrival is
this worker's clock (a client's ``created_at`` may be anything), and a prediction waiting for its
review stays for ``feedback_pending_retention_days``, longer.

At-least-once, as in the hot path: an event read is acknowledged (so that Faust may commit its offset)
only once every write made before it (table changelog records, review resolutions, dead letters) is
acknowledged by the broker (``FeedbackLoop.settle``); a write that fails crashes the process before
its event's offset can be committed, and a restart reads it again.

Every write names its changelog partition (``ChangelogTable``): Faust would take the partition of the
event being processed, which is another topic's for half the writes (a prediction resolved by a
correction, a parked correction taken by its prediction) and none at all in the sweep's timer. So each
key lives in one changelog partition whatever the feedback producers' partitioner, and its tombstone
goes there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import faust
import msgspec
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from faust.serializers import codecs
from faust.stores.memory import Store as MemoryStore

from stream_tagger.events import Feedback, TaggedContent, TagScore, as_utc
from stream_tagger.metrics import FeedbackMetrics
from stream_tagger.online.precision_recall import Judged, OnlineEvaluator
from stream_tagger.settings import APPROVED_TAGS, Settings
from stream_tagger.worker.decode import Rejection, dead_letter, decode_feedback, internal_error
from stream_tagger.worker.route import normalise_tag

log = logging.getLogger(__name__)

# Events are acknowledged in groups, once their writes are: every this many events, or this often
# when the input is slow (Faust commits acknowledged offsets every few seconds anyway).
_SETTLE_EVERY = 1_000
_SETTLE_INTERVAL_S = 0.5
# Corrections kept per source in a parked list: people correct their corrections, the latest count.
PARKED_PER_SOURCE = 3
# Faust's default ``producer_max_request_size``: aiokafka refuses a larger record before sending it.
MAX_RECORD_BYTES = 1_000_000


class Prediction(msgspec.Struct, kw_only=True, frozen=True):
    """What the table keeps per id: the little that judging and resolving a prediction need."""

    status: str
    suggested: list[str]
    author_tags: list[str]
    model_version: str
    event_time: datetime
    processed_at: datetime
    partition: int  # of the tagged topic: a resolution is published there too
    duplicate_of: str | None = None
    resolved: bool = False
    # When the feedback worker read it (its own clock): what the retention ages it by. None in values
    # written before it was kept; those age by ``processed_at``.
    arrived_at: datetime | None = None


class Parked(msgspec.Struct, kw_only=True, frozen=True):
    """Corrections waiting for their prediction, and the feedback partition they came from: the partition
    of the key in the table's changelog, which a sweep needs to delete it (``FeedbackLoop.sweep``)."""

    partition: int
    corrections: list[Feedback]
    # When its newest correction arrived (the feedback worker's clock, not the client's ``created_at``):
    # what the retention ages it by. None in values written before it was kept; those age by the newest
    # ``created_at``, no later than now.
    arrived_at: datetime | None = None


_encode = msgspec.json.Encoder().encode
_decode_tagged = msgspec.json.Decoder(TaggedContent).decode


class RecordTooLarge(Exception):
    """A table value whose changelog record Faust's producer would refuse (``FeedbackJoin``)."""


@dataclass(frozen=True)
class Verdict:
    """What one correction, matched with its prediction, means for the metrics and the tagged topic."""

    feedback: Feedback
    judged: Judged
    review_seconds: float | None = None  # set when this correction resolved a pending review
    resolution: TaggedContent | None = None  # the reviewed outcome to publish ...
    partition: int = 0  # ... on this partition of the tagged topic


class Table(Protocol):
    """What the join needs of a table: ``ChangelogTable`` in the worker, a dict-backed one in tests."""

    def get(self, key: str) -> Any: ...
    def snapshot(self) -> list[str]: ...
    def put(self, key: str, value: Any, partition: int) -> None: ...
    def forget(self, key: str, partition: int) -> None: ...


class ChangelogTable:
    """A Faust table written with the changelog partition named by the caller (module docstring).

    ``put`` and ``forget`` are what Faust's ``table[key] = value`` and ``del table[key]`` do (a
    changelog record, then the local store) minus the look-up of the current event's partition and the
    monitor's counters; a key TTL is only kept for windowed tables, which these are not. Each changelog
    record's future goes to ``writes``, which the loop awaits before acknowledging events."""

    def __init__(self, table: faust.Table, writes: list[asyncio.Future[Any]]) -> None:
        if table.window is not None:
            raise ValueError(f"{table.name}: windowed tables keep per-partition timestamps; not supported")
        if not isinstance(table.data, MemoryStore):
            # rocksdb's store files a key under the current event's partition, whatever we name.
            raise ValueError(f"{table.name}: only Faust's memory store keeps a key where its changelog is")
        self.table = table
        self.writes = writes

    def get(self, key: str) -> Any:
        return self.table.data.get(key)

    def snapshot(self) -> list[str]:
        """The keys as they are now: a list, so that the caller may delete while it iterates."""
        return list(self.table.data.keys())

    def put(self, key: str, value: Any, partition: int) -> None:
        self.writes.append(self.table.send_changelog(partition, key, value))
        self.table.data[key] = value
        # Filed under its partition as the memory store files what it restores: when a rebalance moves
        # the partition to another worker, recovery drops the key here (``on_recovery_completed``); the
        # sweep never visits a partition this worker does not own.
        self.table.data._key_partition[key] = partition

    def forget(self, key: str, partition: int) -> None:
        self.writes.append(self.table.send_changelog(partition, key, value=None, value_serializer="raw"))
        self.table.data.pop(key, None)
        self.table.data._key_partition.pop(key, None)


class FeedbackJoin:
    """The join's logic over two tables of JSON-ready values.

    Values are plain builtins because that is what a Faust table gives back when it restores itself
    from its changelog, whatever it was handed before.
    """

    def __init__(
        self,
        predictions: Table,
        parked: Table,
        max_record_bytes: int = MAX_RECORD_BYTES,
        forgotten: Callable[[str, int], None] = lambda reason, count: None,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.predictions = predictions
        self.parked = parked
        self.max_record_bytes = max_record_bytes
        self.now = now
        self.forgotten = forgotten  # (reason, how many corrections or predictions): nothing goes silently
        # Ids whose resolution is on its way (``resolved`` not called yet): a second reviewer's decision
        # meanwhile must not publish another one. In memory only: after a crash the replay resolves.
        self._resolving: set[str] = set()

    def on_tagged(self, event: TaggedContent, partition: int) -> list[Verdict]:
        """Remember a prediction (the first one of an id); judge the corrections that were waiting for
        it. The parked list stays until the caller has published their resolutions (``unpark``): a
        replay after a crash in between finds the prediction known and judges the list again."""
        existing = self.predictions.get(event.id)
        if existing is None:
            record = Prediction(
                status=event.status,
                suggested=[t.tag for t in event.tags],
                author_tags=list(event.author_tags),
                model_version=event.model_version,
                event_time=event.event_time,
                processed_at=event.processed_at,
                partition=partition,
                duplicate_of=event.duplicate_of,
                arrived_at=self.now(),
            )
            self._put(self.predictions, event.id, msgspec.to_builtins(record), partition)
        waiting = self.parked.get(event.id)
        if waiting is None:
            return []
        if existing is not None:
            record = msgspec.convert(existing, Prediction)
        try:
            return [self._judge(fb, record) for fb in msgspec.convert(waiting, Parked).corrections]
        except Exception:
            # No verdict reaches the caller, so no resolution is on its way: a later decision may resolve.
            self._resolving.discard(event.id)
            raise

    def unpark(self, content_id: str) -> None:
        """Forget the corrections parked for ``content_id``, once their verdicts are applied."""
        waiting = self.parked.get(content_id)
        if waiting is not None:
            self.parked.forget(content_id, msgspec.convert(waiting, Parked).partition)

    def resolved(self, verdict: Verdict) -> None:
        """Mark the prediction ``verdict`` resolved, once the broker acknowledged its resolution: marked
        before, a crash in between would leave the post pending forever. A crash after it publishes
        the resolution again on replay, which is harmless: the same outcome, and ``on_tagged`` keeps
        the first prediction of an id, so the echo is not taken for a new one."""
        content_id = verdict.feedback.id
        self._resolving.discard(content_id)
        if self.predictions.get(content_id) is None:  # its partition moved away meanwhile: the new
            return  # owner replays the decision from the last commit and resolves it there
        record = msgspec.structs.replace(self._record(content_id), resolved=True)
        self._put(self.predictions, content_id, msgspec.to_builtins(record), record.partition)

    def on_feedback(self, feedback: Feedback, partition: int) -> Verdict | None:
        """Judge a correction against its prediction, or park it until the prediction is known."""
        if self.predictions.get(feedback.id) is None:
            self._park(feedback, partition)
            return None
        return self._judge(feedback, self._record(feedback.id))

    def _park(self, feedback: Feedback, partition: int) -> None:
        """Add ``feedback`` to its id's parked list, keeping the latest ``PARKED_PER_SOURCE`` per source:
        a list's changelog record, and the work of rewriting it, stay bounded however many come."""
        waiting = self.parked.get(feedback.id)
        # A list keeps the partition of its first correction: one key, one changelog partition.
        earlier = Parked(partition=partition, corrections=[])
        if waiting is not None:
            earlier = msgspec.convert(waiting, Parked)
        kept: list[Feedback] = []
        per_source: dict[str, int] = {}
        for correction in reversed([*earlier.corrections, msgspec.structs.replace(feedback, reviewer=None)]):
            per_source[correction.source] = per_source.get(correction.source, 0) + 1
            if per_source[correction.source] <= PARKED_PER_SOURCE:
                kept.append(correction)
        kept.reverse()
        parked = msgspec.structs.replace(earlier, corrections=kept, arrived_at=self.now())
        self._put(self.parked, feedback.id, msgspec.to_builtins(parked), parked.partition)
        dropped = len(earlier.corrections) + 1 - len(kept)
        if dropped:
            log.info(
                "feedback parked: %d older corrections dropped for later ones from the same source",
                dropped,
                extra={"content_id": feedback.id},
            )
            self.forgotten("parked_superseded", dropped)

    def _put(self, table: Table, key: str, value: Any, partition: int) -> None:
        """``table.put``, unless Faust's producer would refuse the changelog record (its json codec, the
        record's size as aiokafka counts it): then ``RecordTooLarge``, and nothing is written."""
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(
            codecs.dumps("json", key), codecs.dumps("json", value), []
        )
        if size > self.max_record_bytes:
            name = "predictions" if table is self.predictions else "parked"
            raise RecordTooLarge(f"its {name} table record would be {size} bytes > {self.max_record_bytes}")
        table.put(key, value, partition)

    def expired(
        self, before: datetime, pending_before: datetime
    ) -> Iterator[tuple[Table, str, int, int, str] | None]:
        """Per key of both tables: (table, id, changelog partition, how many corrections or predictions
        it holds, the reason it goes) for a prediction or a parked list that arrived before ``before``,
        else None (so that the caller can yield to the event loop while it scans a big table). Arrival
        is this worker's clock: a client's ``created_at`` can be years off either way. A prediction
        waiting for its review stays until ``pending_before`` (a longer retention: a decision that comes
        later finds nothing to resolve, but a post nobody reviews must not stay for ever). A snapshot of
        the keys is taken first, so the caller may delete while iterating. A value that cannot be read
        is kept and logged, not fatal: without its partition it cannot be deleted correctly."""
        for table, kind in ((self.predictions, Prediction), (self.parked, Parked)):
            for content_id in table.snapshot():
                value = table.get(content_id)
                if value is None:
                    yield None
                    continue
                try:
                    entry = msgspec.convert(value, kind)
                except msgspec.ValidationError as exc:
                    log.warning(
                        "feedback table: unreadable value kept (%s)", exc, extra={"content_id": content_id}
                    )
                    yield None
                    continue
                limit = before
                if isinstance(entry, Prediction):
                    if content_id in self._resolving:  # ``resolved`` will rewrite it: keep it until then
                        yield None
                        continue
                    arrived, count, reason = entry.arrived_at or entry.processed_at, 1, "prediction_expired"
                    if entry.status == "pending_review" and not entry.resolved:
                        limit, reason = pending_before, "pending_expired"
                else:
                    written = (as_utc(f.created_at) for f in entry.corrections)
                    arrived = entry.arrived_at or min(max(written, default=before), self.now())
                    count, reason = len(entry.corrections), "parked_expired"
                expired = as_utc(arrived) < limit
                yield (table, content_id, entry.partition, count, reason) if expired else None

    def _record(self, content_id: str) -> Prediction:
        return msgspec.convert(self.predictions.get(content_id), Prediction)

    def _judge(self, feedback: Feedback, record: Prediction) -> Verdict:
        # Each approved tag once, in the person's order ("MLOps" and "mlops" are one tag).
        corrected = list(dict.fromkeys(t for t in map(normalise_tag, feedback.tags) if t in APPROVED_TAGS))
        judged = Judged.of(record.suggested, corrected, record.author_tags)
        pending = record.status == "pending_review" and not record.resolved
        if not (feedback.source == "reviewer" and pending and feedback.id not in self._resolving):
            return Verdict(feedback, judged)
        resolution = TaggedContent(
            id=feedback.id,
            status="tagged",
            tags=[TagScore(t, 1.0) for t in corrected if t in judged.truth],
            author_tags=record.author_tags,
            model_version=record.model_version,
            event_time=record.event_time,
            processed_at=datetime.now(UTC),
            duplicate_of=record.duplicate_of,
        )
        # Until the decision arrived here, not the client's created_at (which may be anything); at least 0
        # when this worker's clock is behind the one that stamped the pending event.
        waited = max(0.0, (self.now() - as_utc(record.processed_at)).total_seconds())
        self._resolving.add(feedback.id)
        return Verdict(
            feedback, judged, review_seconds=waited, resolution=resolution, partition=record.partition
        )


class FeedbackLoop:
    """The feedback side: two Faust agents sharing the join's tables, and the metrics they feed.

    It runs in the ``feedback-worker`` process, or in the worker when ``feedback_in_worker`` is set.

    Rates: every tagged event passes through a Faust agent here (a table write each), which Faust
    sustains at a few thousand events per second. Above that the agent lags; the hot path does not
    wait for it, and feedback for a prediction not read back yet is parked, not lost.
    """

    def __init__(self, app: faust.App, settings: Settings, metrics: FeedbackMetrics) -> None:
        self.settings = settings
        self.metrics = metrics
        self.evaluator = OnlineEvaluator(APPROVED_TAGS, settings.online_eval_window)
        # Values stay bytes: msgspec decodes them (faster and stricter than Faust's codecs).
        raw = faust.Schema(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
        self.tagged_topic = app.topic(settings.topic_tagged, schema=raw)
        self.feedback_topic = app.topic(settings.topic_feedback, schema=raw)
        self.dead_letter_topic = app.topic(settings.topic_dead_letter, schema=raw)
        by_id = faust.Schema(key_type=str, key_serializer="json", value_serializer="json")
        n = settings.partitions
        self.app = app
        # Writes not known to be acknowledged yet, and the events read before them (see ``settle``).
        self._writes: list[asyncio.Future[Any]] = []
        self._held: list[faust.EventT] = []
        self._settling = asyncio.Lock()  # the timer's settle and an agent's must not interleave
        self.join = FeedbackJoin(
            ChangelogTable(app.Table("feedback-predictions", schema=by_id, partitions=n), self._writes),
            ChangelogTable(app.Table("feedback-parked", schema=by_id, partitions=n), self._writes),
            max_record_bytes=app.conf.producer_max_request_size,
            forgotten=lambda reason, count: metrics.feedback_forgotten.labels(reason).inc(count),
        )
        app.agent(self.tagged_topic, name="feedback-predictions")(self._read_predictions)
        app.agent(self.feedback_topic, name="feedback-corrections")(self._read_feedback)
        app.timer(settings.feedback_sweep_interval_s, name="feedback-sweep")(self.sweep)
        self._settler: asyncio.Task[None] | None = None

    async def _hold(self, event: faust.EventT) -> None:
        """``event`` is processed: it is acknowledged at the next ``settle``, after its writes."""
        self._held.append(event)
        if self._settler is None:
            # A plain task, not a Faust timer: Faust stops its timers before it waits for every event
            # to be acknowledged (at a rebalance and at shutdown), and would then wait forever.
            self._settler = asyncio.ensure_future(self._settle_periodically())
        if len(self._held) >= _SETTLE_EVERY:
            await self.settle()

    async def _settle_periodically(self) -> None:
        while True:
            await asyncio.sleep(_SETTLE_INTERVAL_S)
            await self.settle()

    async def settle(self) -> None:
        """Wait for the broker to acknowledge every write made so far, then acknowledge the events held
        so far (whose writes are among them). A failed write crashes the app: its event is never
        acknowledged, so its offset is never committed and a restart processes it again."""
        async with self._settling:
            held, writes = self._held[:], self._writes[:]
            # Exceptions as results: a failed or cancelled write must crash the app, never this task.
            failed = [
                r
                for r in await asyncio.gather(*writes, return_exceptions=True)
                if isinstance(r, BaseException)
            ]
            if failed:
                log.error(
                    "a feedback write was not acknowledged (%r); stopping before its offset is committed",
                    failed[0],
                )
                await self.app.crash(failed[0])
                return
            # Only appended to meanwhile: drop what this settle covered, keep what came since.
            del self._writes[: len(writes)]
            del self._held[: len(held)]
            for event in held:
                event.ack()

    async def sweep(self) -> int:
        """Forget what arrived longer than the retention ago in the partitions this worker owns (not its
        standby copies: their owner sweeps them); returns how many entries went, and counts the
        predictions and parked corrections in ``stream_tagger_feedback_forgotten_total``. Yields to the
        event loop every 1,000 keys scanned: the agents and heartbeats must not stall behind a sweep of
        a big table.
        Which partitions are owned is only known between rebalances (recovery included): a sweep does
        not start during one and stops when one begins; the next interval sweeps again."""
        app = self.app
        rebalances = app.rebalancing_count
        if app.rebalancing:
            return 0
        now, settings = datetime.now(UTC), self.settings
        before = now - timedelta(days=settings.feedback_retention_days)
        pending_days = max(settings.feedback_pending_retention_days, settings.feedback_retention_days)
        pending_before = now - timedelta(days=pending_days)
        predictions = self.join.predictions
        owned_predictions = self._owned(self.settings.topic_tagged)
        owned_parked = self._owned(self.settings.topic_feedback)
        forgotten = 0
        for scanned, found in enumerate(self.join.expired(before, pending_before), 1):
            if found is not None:
                table, content_id, partition, count, reason = found
                if partition in (owned_predictions if table is predictions else owned_parked):
                    table.forget(content_id, partition)
                    forgotten += 1
                    self.join.forgotten(reason, count)
            if scanned % 1_000 == 0:
                await asyncio.sleep(0)
                if app.rebalancing or app.rebalancing_count != rebalances:
                    log.info("feedback tables: sweep stopped by a rebalance after %d entries", forgotten)
                    break
        if forgotten:
            log.info("feedback tables: forgot %d entries older than %s", forgotten, before.isoformat())
        return forgotten

    def changelogs(self) -> list[str]:
        """The topics the join's tables are written to (``check_feedback_partitions``)."""
        return [table.changelog_topic.get_topic_name() for table in self.app.tables.values()]

    def _owned(self, topic: str) -> set[int]:
        """Partitions of ``topic`` this worker is the active owner of (the tables' changelog partitions)."""
        return {tp.partition for tp in self.app.assignor.assigned_actives() if tp.topic == topic}

    async def _read_predictions(self, stream: faust.StreamT) -> None:
        async for event in stream.noack().events():
            if not await self._guarded(self._on_tagged, event):
                return

    async def _read_feedback(self, stream: faust.StreamT) -> None:
        async for event in stream.noack().events():
            if not await self._guarded(self._on_feedback, event):
                return

    async def _guarded(self, handle: Callable[[faust.EventT], Awaitable[None]], event: faust.EventT) -> bool:
        """``handle(event)``; what it raises unforeseen (a failed send) crashes the app: its event is
        never acknowledged, so its offset is never committed and a restart processes it again (left
        to Faust's supervisor, the agent would restart past it and its partition's commits stall)."""
        try:
            await handle(event)
        except Exception as exc:
            log.error("feedback loop failed on an event (%r); stopping", exc, extra=_context(event))
            await self.app.crash(exc)
            return False
        return True

    async def _on_tagged(self, event: faust.EventT) -> None:
        try:
            tagged = _decode_tagged(event.value)
            verdicts = self.join.on_tagged(tagged, event.message.partition)
        except Exception as exc:  # unreadable (DecodeError, RecursionError) or a join that raised
            # Only the worker writes the tagged topic, so this is a bug or a foreign producer:
            # say where, but do not dead-letter (the dead-letter topic is for inputs).
            log.warning(
                "tagged event not joined (%s)", internal_error("joining", exc).detail, extra=_context(event)
            )
            verdicts = []
        for verdict in verdicts:
            await self._apply(verdict)
        if verdicts:
            self.join.unpark(tagged.id)
        await self._hold(event)

    async def _on_feedback(self, event: faust.EventT) -> None:
        message = event.message
        feedback = decode_feedback(event.value, self.settings.max_event_bytes)
        verdict = None
        if not isinstance(feedback, Rejection):
            try:
                verdict = self.join.on_feedback(feedback, message.partition)
            except RecordTooLarge as exc:
                feedback = Rejection("too_large", f"not parked: {exc}")
            except Exception as exc:  # one odd correction must not stop the loop: it is dead-lettered
                feedback = internal_error("joining", exc)
        if isinstance(feedback, Rejection):
            log.warning("feedback dead-lettered (%s)", feedback.reason, extra=_context(event))
            key, letter = dead_letter(
                feedback,
                event.value,
                event.key,
                message.topic,
                message.partition,
                message.offset,
                datetime.now(UTC),
            )
            self._writes.append(await self.dead_letter_topic.send(key=key, value=_encode(letter)))
            self.metrics.dead_letters.labels(feedback.reason).inc()
        else:
            self.metrics.feedback.labels(feedback.source).inc()
            if verdict is not None:
                await self._apply(verdict)
        await self._hold(event)

    async def _apply(self, verdict: Verdict) -> None:
        self.evaluator.add(verdict.judged)
        m = self.metrics
        for tag, values in self.evaluator.snapshot().items():
            for gauge, value in zip((m.online_precision, m.online_recall), values, strict=True):
                if value is not None:
                    gauge.labels(tag).set(value)
                else:  # undefined over the window now: no series, rather than a stale value
                    with contextlib.suppress(KeyError):
                        gauge.remove(tag)
        if verdict.resolution is not None and verdict.review_seconds is not None:
            # Same partition as the pending event it replaces: a different producer's partitioner must
            # not split one post's history over two partitions of the tagged topic.
            sent = await self.tagged_topic.send(
                key=verdict.resolution.id.encode(),
                value=_encode(verdict.resolution),
                partition=verdict.partition,
            )
            # Awaited here, not in ``settle``: the prediction is marked resolved only once the broker has
            # the resolution (``FeedbackJoin.resolved``). Reviews come at a human rate: the wait is rare.
            await sent
            self.join.resolved(verdict)
            m.review_resolution_seconds.observe(verdict.review_seconds)


def feedback_app(settings: Settings, metrics: FeedbackMetrics) -> tuple[faust.App, FeedbackLoop]:
    """A Faust app running only the feedback loop (``feedback-worker``); its /metrics, /healthz and
    /ready are the process's own server (``web.py``), Faust's web server is off.

    Reading every tagged event back through Faust costs CPU, and in the worker's process also the GIL
    its hot path needs (2 cores at load average ~9: ~1.5k instead of ~4k events/s; within noise when
    the cores are less busy). In its own process the loop uses the other core; it has its own consumer
    group, so it never takes raw partitions.
    """
    from stream_tagger.app import make_faust_app  # the worker's app factory: same broker settings

    own_group = settings.model_copy(update={"consumer_group": f"{settings.consumer_group}-feedback"})
    app = make_faust_app(own_group)  # Faust's web server off: its views would serve the tables
    return app, FeedbackLoop(app, settings, metrics)


def _context(event: faust.EventT) -> dict[str, Any]:
    """Where an event came from, for a log record's ``extra`` (``stream_tagger.logs``)."""
    message = event.message
    key = event.key.decode("utf-8", "replace") if isinstance(event.key, bytes) else event.key
    if isinstance(key, str) and len(key) > 200:  # an input's key can be ~1 MB: a log line is not
        key = f"{key[:200]}... ({len(key)} characters)"
    return {
        "topic": message.topic,
        "partition": message.partition,
        "offset": message.offset,
        "content_id": key,
    }
