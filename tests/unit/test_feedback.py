"""The feedback join: corrections matched with predictions, parked when early, reviews resolved once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import faust
import msgspec
import pytest
from aiokafka import AIOKafkaProducer
from faust.serializers import codecs
from faust.stores.memory import Store as MemoryStore
from faust.types import TP
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from stream_tagger.events import Feedback, TaggedContent, TagScore
from stream_tagger.metrics import Metrics
from stream_tagger.online.feedback import ChangelogTable, FeedbackJoin, FeedbackLoop, RecordTooLarge
from stream_tagger.settings import Settings

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def tagged(
    content_id: str,
    tags: list[str],
    status: str = "tagged",
    author: list[str] | None = None,
    version: str = "v1",
) -> TaggedContent:
    return TaggedContent(
        id=content_id,
        status=status,
        tags=[TagScore(t, 0.9) for t in tags],  # type: ignore[arg-type]
        author_tags=author or [],
        model_version=version,
        event_time=T0,
        processed_at=T0,
    )


def fb(content_id: str, tags: list[str], source: str = "user", after: float = 60.0) -> Feedback:
    return Feedback(id=content_id, tags=tags, source=source, created_at=T0 + timedelta(seconds=after))  # type: ignore[arg-type]


class RestoredTable(dict):
    """A table as the join sees it: values as a Faust table restores them from its changelog (JSON), and
    the changelog partition of every write and deletion."""

    def __init__(self) -> None:
        super().__init__()
        self.changelog: list[tuple[int, str, bool]] = []  # (partition, key, deleted)

    def snapshot(self) -> list[str]:
        return list(self)

    def put(self, key: str, value: object, partition: int) -> None:
        self[key] = json.loads(json.dumps(value))
        self.changelog.append((partition, key, False))

    def forget(self, key: str, partition: int) -> None:
        self.pop(key, None)
        self.changelog.append((partition, key, True))


def test_correction_is_judged_against_the_suggested_tags() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable())
    assert join.on_tagged(tagged("1", ["mlops"], author=["other"]), 0) == []
    verdict = join.on_feedback(fb("1", ["computer-vision", "other", "not-a-tag"]), 0)
    assert verdict is not None
    assert verdict.judged.predicted == {"mlops"}
    assert verdict.judged.truth == {"computer-vision"}
    assert verdict.resolution is None and verdict.review_seconds is None


def test_early_feedback_is_parked_and_judged_when_the_prediction_arrives() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable())
    assert join.on_feedback(fb("1", ["mlops"]), 0) is None
    assert join.on_feedback(fb("1", ["other"], source="author"), 0) is None
    verdicts = join.on_tagged(tagged("1", ["mlops"]), 0)
    assert [v.judged.truth for v in verdicts] == [{"mlops"}, {"other"}]
    assert list(join.parked) == ["1"]  # until the verdicts are applied
    join.unpark("1")
    assert join.parked == {}


def test_first_prediction_wins_over_replays_and_echoes() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable())
    join.on_tagged(tagged("1", ["mlops"]), 0)
    join.on_tagged(tagged("1", ["other"], version="v2"), 0)
    verdict = join.on_feedback(fb("1", ["mlops"]), 0)
    assert verdict is not None and verdict.judged.predicted == {"mlops"}


def test_reviewer_resolves_a_pending_item_once_with_the_time_it_took() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable(), now=lambda: T0 + timedelta(seconds=90))
    join.on_tagged(tagged("1", [], status="pending_review", author=["other"]), 0)
    first = join.on_feedback(
        fb("1", ["nlp-not-approved", "natural-language-processing", "other"], source="reviewer", after=90), 0
    )
    assert first is not None and first.review_seconds == 90.0
    assert first.resolution is not None
    assert first.resolution.status == "tagged"
    assert [t.tag for t in first.resolution.tags] == ["natural-language-processing"]
    assert first.resolution.author_tags == ["other"]
    assert join.on_feedback(fb("1", ["mlops"], source="reviewer"), 0).resolution is None  # type: ignore[union-attr]  # on its way
    join.resolved(first)
    again = join.on_feedback(fb("1", ["mlops"], source="reviewer", after=120), 0)
    assert again is not None and again.resolution is None and again.review_seconds is None


def test_a_decision_naming_a_tag_twice_publishes_it_once() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable())
    join.on_tagged(tagged("1", [], status="pending_review"), 0)
    verdict = join.on_feedback(fb("1", ["MLOps", "mlops", "other"], source="reviewer"), 0)
    assert verdict is not None and verdict.resolution is not None
    assert [t.tag for t in verdict.resolution.tags] == ["mlops", "other"]


def test_user_feedback_does_not_resolve_a_review() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable())
    join.on_tagged(tagged("1", [], status="pending_review"), 0)
    verdict = join.on_feedback(fb("1", ["mlops"]), 0)
    assert verdict is not None and verdict.resolution is None


def test_tags_are_normalised_like_the_router_does() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable())
    join.on_tagged(tagged("1", [], status="pending_review", author=["Computer Vision"]), 0)
    correction = fb("1", ["computer_vision", "Natural Language Processing"], source="reviewer")
    verdict = join.on_feedback(correction, 0)
    assert verdict is not None and verdict.resolution is not None
    assert verdict.judged.truth == {"natural-language-processing"}
    assert [t.tag for t in verdict.resolution.tags] == ["natural-language-processing"]


def test_join_works_on_values_restored_from_a_changelog() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable(), now=lambda: T0 + timedelta(seconds=60))
    assert join.on_feedback(fb("1", ["mlops"]), 0) is None
    [verdict] = join.on_tagged(tagged("1", ["mlops"], status="tagged"), 2)
    assert verdict.judged.predicted == verdict.judged.truth == {"mlops"}
    repost = tagged("2", [], status="pending_review")
    repost.duplicate_of = "1"
    join.on_tagged(repost, 3)
    resolved = join.on_feedback(fb("2", ["other"], source="reviewer"), 0)
    assert resolved is not None and resolved.partition == 3 and resolved.review_seconds == 60.0
    assert resolved.resolution is not None and resolved.resolution.duplicate_of == "1"


def test_expired_names_what_arrived_before_the_retention_only() -> None:
    clock = [T0]
    join = FeedbackJoin(RestoredTable(), RestoredTable(), now=lambda: clock[0])
    join.on_tagged(tagged("old", ["mlops"]), 0)
    join.on_feedback(fb("parked-old", ["mlops"]), 1)
    join.on_feedback(fb("parked-old", ["other"], source="author"), 1)
    join.on_feedback(fb("parked-mixed", ["mlops"]), 0)
    clock[0] = T0 + timedelta(days=40)
    join.on_tagged(tagged("new", ["mlops"]), 0)  # made at T0, read back 40 days later
    join.on_feedback(fb("parked-mixed", ["other"]), 0)  # its newest correction arrived recently
    expired = [hit for hit in join.expired(T0 + timedelta(days=30), T0) if hit is not None]
    assert [
        (table is join.predictions, key, partition, count, reason)
        for table, key, partition, count, reason in expired
    ] == [
        (True, "old", 0, 1, "prediction_expired"),
        (False, "parked-old", 1, 2, "parked_expired"),
    ]


def test_the_retention_ages_entries_by_arrival_not_by_the_clients_clock() -> None:
    clock = [T0]
    join = FeedbackJoin(RestoredTable(), RestoredTable(), now=lambda: clock[0])
    future = Feedback(
        id="future", tags=["mlops"], source="user", created_at=datetime(9999, 12, 31, tzinfo=UTC)
    )
    past = Feedback(id="past", tags=["mlops"], source="reviewer", created_at=T0 - timedelta(days=400))
    join.on_feedback(future, 0)
    join.on_feedback(past, 0)
    assert [
        hit for hit in join.expired(T0 - timedelta(days=30), T0) if hit
    ] == []  # not swept before it is judged
    swept = [hit[1] for hit in filter(None, join.expired(T0 + timedelta(days=1), T0))]
    assert swept == ["future", "past"]  # a year-9999 timestamp does not keep it forever


def test_a_prediction_waiting_for_its_review_is_kept_longer_than_the_others() -> None:
    clock = [T0]
    join = FeedbackJoin(RestoredTable(), RestoredTable(), now=lambda: clock[0])
    join.on_tagged(tagged("waiting", [], status="pending_review"), 0)
    join.on_tagged(tagged("decided", [], status="pending_review"), 0)
    decided = join.on_feedback(fb("decided", ["mlops"], source="reviewer"), 0)
    assert decided is not None
    join.resolved(decided)
    late = T0 + timedelta(days=400)
    assert [hit[1] for hit in filter(None, join.expired(late, T0))] == ["decided"]
    # After its own, longer retention a post nobody reviewed goes too, and says why.
    assert [(hit[1], hit[4]) for hit in filter(None, join.expired(late, late))] == [
        ("waiting", "pending_expired"),
        ("decided", "prediction_expired"),
    ]
    clock[0] = late
    verdict = join.on_feedback(fb("waiting", ["mlops"], source="reviewer"), 0)
    assert verdict is not None and verdict.resolution is not None  # nothing swept it: still resolved


def test_the_sweep_forgets_what_is_older_than_the_retention_and_lets_the_agents_run() -> None:
    app = faust.App("sweep-test", broker="kafka://127.0.0.1:1")  # never started: no broker needed
    metrics = Metrics(CollectorRegistry())
    loop = FeedbackLoop(app, Settings(feedback_retention_days=1), metrics)
    clock = [T0]
    loop.join = FeedbackJoin(
        RestoredTable(), RestoredTable(), forgotten=loop.join.forgotten, now=lambda: clock[0]
    )
    loop._owned = lambda topic: {0, 1, 2, 3}  # type: ignore[method-assign]  # an app never started owns none
    for i in range(2_500):
        loop.join.on_tagged(tagged(f"old{i}", ["mlops"]), i % 4)
    loop.join.on_tagged(tagged("standby-copy", ["mlops"]), 5)  # its owner, another worker, sweeps it
    loop.join.on_feedback(fb("parked", ["mlops"]), 0)
    loop.join.on_feedback(fb("parked", ["other"], source="author"), 0)
    clock[0] = datetime.now(UTC)
    loop.join.on_tagged(tagged("recent", ["mlops"]), 0)

    async def sweep_beside_another_task() -> tuple[int, int]:
        ticks = 0

        async def agent() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.create_task(agent())
        forgotten = await loop.sweep()
        task.cancel()
        return forgotten, ticks

    forgotten, ticks = asyncio.run(sweep_beside_another_task())
    assert forgotten == 2_501 and loop.join.parked == {}
    counted = metrics.registry.get_sample_value
    assert counted("stream_tagger_feedback_forgotten_total", {"reason": "prediction_expired"}) == 2_500
    assert counted("stream_tagger_feedback_forgotten_total", {"reason": "parked_expired"}) == 2
    assert sorted(loop.join.predictions) == ["recent", "standby-copy"]
    tombstones = [(p, key) for p, key, deleted in loop.join.predictions.changelog if deleted]
    assert tombstones == [(i % 4, f"old{i}") for i in range(2_500)]  # each in its key's partition
    assert ticks >= 2  # the sweep yielded to the event loop while it ran


@pytest.mark.parametrize("field", ["feedback_retention_days", "feedback_pending_retention_days"])
def test_the_longest_retention_the_settings_take_sweeps_without_error(field: str) -> None:
    async def sweep() -> tuple[int, list[str]]:
        app = faust.App(f"sweep-{field}", broker="kafka://127.0.0.1:1")  # never started: no broker needed
        loop = FeedbackLoop(app, Settings(**{field: 36_500}), Metrics(CollectorRegistry()))
        loop.join = FeedbackJoin(RestoredTable(), RestoredTable(), forgotten=loop.join.forgotten)
        loop._owned = lambda topic: {0}  # type: ignore[method-assign]
        loop.join.on_tagged(tagged("recent", ["mlops"]), 0)
        return await loop.sweep(), sorted(loop.join.predictions)

    assert asyncio.run(sweep()) == (0, ["recent"])


def test_every_write_of_a_key_goes_to_one_changelog_partition_whatever_the_event_partition() -> None:
    # Feedback produced with another partitioner than the tagged topic's: each key still lives in one
    # changelog partition, so that its tombstone deletes it everywhere.
    join = FeedbackJoin(RestoredTable(), RestoredTable())
    assert join.on_feedback(fb("early", ["mlops"]), 3) is None
    assert join.on_feedback(fb("early", ["other"], after=90), 1) is None  # the list keeps partition 3
    join.on_tagged(tagged("early", ["mlops"]), 0)
    join.on_tagged(tagged("review", [], status="pending_review"), 2)
    join.unpark("early")
    resolving = join.on_feedback(fb("review", ["mlops"], source="reviewer"), 1)
    assert resolving is not None and resolving.resolution is not None
    join.resolved(resolving)
    assert join.parked.changelog == [(3, "early", False), (3, "early", False), (3, "early", True)]
    assert join.predictions.changelog == [(0, "early", False), (2, "review", False), (2, "review", False)]


def test_an_unreadable_value_is_kept_and_the_rest_still_expires() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable(), now=lambda: T0)
    join.on_tagged(tagged("old", ["mlops"]), 0)
    join.parked["legacy"] = [{"id": "legacy"}]  # not a Parked: logged and kept, not fatal
    found = [hit for hit in join.expired(T0 + timedelta(days=30), T0) if hit is not None]
    assert [(hit[1], hit[2]) for hit in found] == [("old", 0)]


class FakeFaustTable:
    """The members of a Faust table that ``ChangelogTable`` uses, over Faust's real memory store."""

    window = None
    name = "fake"

    def __init__(self) -> None:
        self.data = MemoryStore("memory://", faust.App("fake", broker="kafka://127.0.0.1:1"), self)
        self.sent: list[tuple[int, str, object, str | None]] = []

    def send_changelog(
        self, partition: int, key: str, value: object, value_serializer: str | None = None
    ) -> None:
        self.sent.append((partition, key, value, value_serializer))


def test_changelog_table_names_the_partition_of_each_record() -> None:
    faust_table = FakeFaustTable()
    table = ChangelogTable(faust_table, [])  # type: ignore[arg-type]
    table.put("a", {"x": 1}, 2)
    assert table.get("a") == {"x": 1} and table.snapshot() == ["a"]
    table.forget("a", 2)
    assert table.get("a") is None
    assert faust_table.sent == [(2, "a", {"x": 1}, None), (2, "a", None, "raw")]
    faust_table.data = {}  # another store (rocksdb files keys by the current event's partition)
    with pytest.raises(ValueError, match="memory store"):
        ChangelogTable(faust_table, [])  # type: ignore[arg-type]


def test_a_key_written_here_leaves_with_its_partition_as_a_restored_one_does() -> None:
    # A rebalance that moves a partition to another feedback loop ends with Faust's recovery, which
    # drops that partition's keys from the memory store: the sweep only visits partitions owned here,
    # so a key written live and left behind would stay for good.
    faust_table = FakeFaustTable()
    table = ChangelogTable(faust_table, [])  # type: ignore[arg-type]
    table.put("stays", {"x": 1}, 0)
    table.put("moves", {"x": 1}, 1)
    table.put("forgotten", {"x": 1}, 1)
    table.forget("forgotten", 1)
    asyncio.run(faust_table.data.on_recovery_completed({TP("changelog", 0)}, set()))
    assert table.snapshot() == ["stays"]


def test_no_sweep_during_a_rebalance() -> None:
    # Which partitions this worker owns is only known between rebalances; the next interval sweeps.
    app = faust.App("sweep-rebalance", broker="kafka://127.0.0.1:1")  # never started
    loop = FeedbackLoop(app, Settings(feedback_retention_days=1), Metrics(CollectorRegistry()))
    loop.join = FeedbackJoin(RestoredTable(), RestoredTable(), now=lambda: T0)
    loop._owned = lambda topic: {0}  # type: ignore[method-assign]
    loop.join.on_tagged(tagged("old", ["mlops"]), 0)
    app.rebalancing = True
    assert asyncio.run(loop.sweep()) == 0 and list(loop.join.predictions) == ["old"]
    app.rebalancing = False
    assert asyncio.run(loop.sweep()) == 1 and list(loop.join.predictions) == []


class HeldEvent:
    def __init__(self) -> None:
        self.acked = False

    def ack(self) -> bool:
        self.acked = True
        return True


def test_events_are_acknowledged_only_after_every_write_before_them() -> None:
    async def scenario() -> tuple[list[bool], list[bool]]:
        app = faust.App("settle", broker="kafka://127.0.0.1:1")  # never started
        loop = FeedbackLoop(app, Settings(), Metrics(CollectorRegistry()))
        write = asyncio.get_running_loop().create_future()
        loop._writes.append(write)
        first, second = HeldEvent(), HeldEvent()
        await loop._hold(first)  # type: ignore[arg-type]
        settling = asyncio.ensure_future(loop.settle())
        await asyncio.sleep(0.01)
        await loop._hold(second)  # type: ignore[arg-type]  # held after the settle began
        before = [first.acked, second.acked]
        write.set_result(None)
        await settling
        return before, [first.acked, second.acked]

    before, after = asyncio.run(scenario())
    assert before == [False, False]
    assert after == [True, False]  # the second waits for the next settle


def failed(write: asyncio.Future[None]) -> None:
    write.set_exception(RuntimeError("NOT_ENOUGH_REPLICAS"))


def cancelled(write: asyncio.Future[None]) -> None:
    write.cancel()


def crash_recording_loop(name: str) -> tuple[FeedbackLoop, list[BaseException]]:
    """A feedback loop on an app whose crashes are recorded instead of stopping it."""
    app = faust.App(name, broker="kafka://127.0.0.1:1")
    crashes: list[BaseException] = []

    async def crash(why: BaseException) -> None:
        crashes.append(why)

    app.crash = crash  # type: ignore[method-assign]
    return FeedbackLoop(app, Settings(), Metrics(CollectorRegistry())), crashes


@pytest.mark.parametrize(("end", "reason"), [(failed, RuntimeError), (cancelled, asyncio.CancelledError)])
def test_a_write_that_fails_or_is_cancelled_crashes_the_app_and_acknowledges_nothing(
    end: Callable[[asyncio.Future[None]], None], reason: type[BaseException]
) -> None:
    async def scenario() -> tuple[bool, list[BaseException]]:
        loop, crashes = crash_recording_loop("settle-fail")
        write: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        end(write)  # a cancelled write raises no Exception: it must not end the settling either
        loop._writes.append(write)
        event = HeldEvent()
        await loop._hold(event)  # type: ignore[arg-type]
        await loop.settle()
        return event.acked, crashes

    acked, crashes = asyncio.run(scenario())
    assert not acked
    assert len(crashes) == 1 and isinstance(crashes[0], reason)


def naive(content_id: str, tags: list[str], source: str = "user") -> Feedback:
    """A correction whose timestamp has no timezone: the schema allows it."""
    return Feedback(
        id=content_id,
        tags=tags,
        source=source,  # type: ignore[arg-type]
        created_at=(T0 + timedelta(days=1)).replace(tzinfo=None),
    )


def test_timestamps_without_a_timezone_are_taken_as_utc_by_the_sweep_and_the_review_clock() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable(), now=lambda: T0 + timedelta(days=40))
    # A parked list written before arrival times were kept ages by its corrections' created_at.
    join.parked["parked"] = {"partition": 0, "corrections": [msgspec.to_builtins(naive("parked", ["mlops"]))]}
    expired = [hit for hit in join.expired(T0 + timedelta(days=30), T0) if hit is not None]
    assert [hit[1] for hit in expired] == ["parked"]
    pending = tagged("r", [], status="pending_review")
    pending.processed_at = T0.replace(tzinfo=None)
    join.on_tagged(pending, 0)
    verdict = join.on_feedback(naive("r", ["mlops"], source="reviewer"), 0)
    assert verdict is not None and verdict.review_seconds == 40 * 86_400.0


def test_a_parked_correction_that_cannot_be_judged_leaves_the_list_parked() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable())
    join.on_feedback(fb("1", ["mlops"]), 0)
    join.on_feedback(fb("1", ["other"], source="reviewer"), 0)
    join._judge = lambda feedback, record: 1 / 0  # type: ignore[method-assign,assignment,misc]
    with pytest.raises(ZeroDivisionError):
        join.on_tagged(tagged("1", ["mlops"], status="pending_review"), 0)
    assert len(join.parked["1"]["corrections"]) == 2


class FaustSizedTable(RestoredTable):
    """A ``RestoredTable`` whose writes go through Faust's json codec and the size check aiokafka makes
    before it sends (``MessageSizeTooLargeError``), at Faust's own ``producer_max_request_size``."""

    def __init__(self) -> None:
        super().__init__()
        limit = faust.App("sized", broker="kafka://127.0.0.1:1").conf.producer_max_request_size
        self.producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", max_request_size=limit)
        self.largest = 0

    def put(self, key: str, value: object, partition: int) -> None:
        _key, v = self.producer._serialize(codecs.dumps("json", key), codecs.dumps("json", value), [])
        self.largest = max(self.largest, len(v))
        super().put(key, value, partition)


def test_corrections_for_an_unseen_id_keep_its_parked_record_small_and_count_what_they_replace() -> None:
    async def scenario() -> tuple[FaustSizedTable, list[tuple[str, int]]]:
        forgotten: list[tuple[str, int]] = []
        predictions, parked = FaustSizedTable(), FaustSizedTable()
        join = FeedbackJoin(predictions, parked, forgotten=lambda *why: forgotten.append(why))
        long_name = Feedback(
            id="ghost", tags=["mlops"], source="reviewer", created_at=T0, reviewer="r" * 60_000
        )
        for _ in range(17):  # each ~60 kB: together over the 1 MB a changelog record may have
            assert join.on_feedback(long_name, 0) is None
        for i in range(8_000):
            assert (
                join.on_feedback(fb("ghost", ["other"], source=("user", "author")[i % 2], after=i), 0) is None
            )
        await predictions.producer.stop()
        await parked.producer.stop()
        return parked, forgotten

    parked, forgotten = asyncio.run(scenario())  # aiokafka's producer wants a running loop
    corrections = parked["ghost"]["corrections"]
    latest = [fb("ghost", ["other"], source=("user", "author")[i % 2], after=i) for i in range(7_994, 8_000)]
    assert [(c["source"], c["created_at"]) for c in corrections] == [
        *[("reviewer", "2026-03-01T12:00:00Z")] * 3,
        *[(c.source, c.created_at.isoformat().replace("+00:00", "Z")) for c in latest],
    ]
    assert all(c["reviewer"] is None for c in corrections)  # the name is not kept: nothing judges by it
    assert parked.largest < 2_000
    assert sum(count for _reason, count in forgotten) == 17 + 8_000 - len(corrections)
    assert {reason for reason, _count in forgotten} == {"parked_superseded"}


@given(
    st.lists(
        st.tuples(st.sampled_from(["author", "reviewer", "user"]), st.integers(0, 70_000), st.integers(0, 4)),
        min_size=1,
        max_size=40,
    )
)
@settings(max_examples=60, deadline=None)
def test_a_parked_record_stays_bounded_and_keeps_the_latest_of_each_source(
    corrections: list[tuple[str, int, int]],
) -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable())
    for i, (source, name_length, n_tags) in enumerate(corrections):
        feedback = Feedback(
            id="x" * 128,
            tags=["t" * 64] * n_tags,
            source=source,  # type: ignore[arg-type]
            created_at=T0 + timedelta(seconds=i),
            reviewer="r" * name_length,
        )
        join.on_feedback(feedback, 0)
    kept = join.parked["x" * 128]["corrections"]
    assert len(codecs.dumps("json", join.parked["x" * 128])) < 10_000
    for source in ("author", "reviewer", "user"):
        sent = [i for i, (s, _n, _t) in enumerate(corrections) if s == source]
        assert [c["created_at"] for c in kept if c["source"] == source] == [
            (T0 + timedelta(seconds=i)).isoformat().replace("+00:00", "Z") for i in sent[-3:]
        ]


def test_a_value_faust_would_refuse_is_not_written() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable(), max_record_bytes=300)
    join.on_feedback(fb("1", ["mlops"]), 0)
    with pytest.raises(RecordTooLarge, match="parked table record would be"):
        join.on_feedback(fb("1", ["other"], source="author"), 0)
    assert len(join.parked["1"]["corrections"]) == 1 and len(join.parked.changelog) == 1


class FeedbackEvent:
    """A feedback message as the corrections agent sees it."""

    def __init__(self, value: bytes, offset: int = 41) -> None:
        self.value, self.key, self.acked = value, b"1", False
        self.message = type(
            "Message", (), {"topic": "content.feedback.v1", "partition": 0, "offset": offset}
        )()

    def ack(self) -> bool:
        self.acked = True
        return True


def acknowledged(sent: list[tuple[object, ...]], fail: bool = False) -> Callable[..., Any]:
    """A topic's ``send``: records what it is given, and returns the broker's answer as a future."""

    async def send(key: bytes | None, value: bytes, partition: int | None = None) -> asyncio.Future[None]:
        sent.append((key, json.loads(value), partition))
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_exception(RuntimeError("REQUEST_TIMED_OUT")) if fail else future.set_result(None)
        return future

    return send


def test_a_correction_that_would_make_its_parked_record_too_large_is_dead_lettered() -> None:
    async def scenario() -> tuple[list[tuple[object, ...]], bool, float | None]:
        metrics = Metrics(CollectorRegistry())
        loop = FeedbackLoop(faust.App("too-large", broker="kafka://127.0.0.1:1"), Settings(), metrics)
        loop.join = FeedbackJoin(RestoredTable(), RestoredTable(), max_record_bytes=200)
        letters: list[tuple[object, ...]] = []
        loop.dead_letter_topic.send = acknowledged(letters)  # type: ignore[method-assign]
        event = FeedbackEvent(
            b'{"id":"1","tags":["mlops"],"source":"user","created_at":"2026-03-01T13:00:00Z"}'
        )
        assert await loop._guarded(loop._on_feedback, event)  # type: ignore[arg-type]
        await loop.settle()
        count = metrics.registry.get_sample_value("stream_tagger_dead_letters_total", {"reason": "too_large"})
        return letters, event.acked, count

    letters, acked, count = asyncio.run(scenario())
    [(_key, letter, _partition)] = letters
    assert letter["reason"] == "too_large" and "parked table record would be" in letter["detail"]
    assert acked and count == 1.0


async def replay_reviewer_decision(
    predictions: RestoredTable, parked: RestoredTable, event: FeedbackEvent | None, fail: bool
) -> tuple[list[tuple[object, ...]], list[BaseException], bool]:
    """One run of the feedback loop over tables as a restart restores them (every changelog write
    landed): the reviewer's decision ``event`` (or the prediction, when None), the resolution's send
    failing or not. Returns what was sent, the crashes and whether the event was acknowledged."""
    loop, crashes = crash_recording_loop("resolve")
    loop.join = FeedbackJoin(predictions, parked)
    sent: list[tuple[object, ...]] = []
    loop.tagged_topic.send = acknowledged(sent, fail)  # type: ignore[method-assign]
    if event is None:
        value = msgspec.json.encode(tagged("p1", [], status="pending_review"))
        event = FeedbackEvent(value)
        event.message.topic = "content.tagged.v1"
        await loop._guarded(loop._on_tagged, event)  # type: ignore[arg-type]
    else:
        await loop._guarded(loop._on_feedback, event)  # type: ignore[arg-type]
    await loop.settle()
    if loop._settler is not None:
        loop._settler.cancel()
    return sent, crashes, event.acked


DECISION = b'{"id":"p1","tags":["mlops"],"source":"reviewer","created_at":"2026-03-01T13:00:00Z"}'


def test_a_prediction_is_marked_resolved_only_once_its_resolution_is_acknowledged() -> None:
    predictions = RestoredTable()
    FeedbackJoin(predictions, RestoredTable()).on_tagged(tagged("p1", [], status="pending_review"), 0)
    sent, crashes, acked = asyncio.run(
        replay_reviewer_decision(predictions, RestoredTable(), FeedbackEvent(DECISION), True)
    )
    assert len(sent) == 1 and len(crashes) == 1 and not acked
    assert predictions["p1"]["resolved"] is False  # what a restart restores
    sent, crashes, acked = asyncio.run(
        replay_reviewer_decision(predictions, RestoredTable(), FeedbackEvent(DECISION), False)
    )
    assert [(value["status"], value["tags"], partition) for _key, value, partition in sent] == [
        ("tagged", [{"tag": "mlops", "confidence": 1.0}], 0)
    ]
    assert not crashes and acked and predictions["p1"]["resolved"] is True


def test_parked_decisions_stay_parked_until_their_resolution_is_acknowledged() -> None:
    predictions, parked = RestoredTable(), RestoredTable()
    FeedbackJoin(predictions, parked).on_feedback(fb("p1", ["mlops"], source="reviewer"), 0)
    sent, crashes, acked = asyncio.run(replay_reviewer_decision(predictions, parked, None, True))
    assert len(sent) == 1 and len(crashes) == 1 and not acked
    assert list(parked) == ["p1"] and predictions["p1"]["resolved"] is False
    # The restart reads the same prediction again: known now, but its parked decision is still judged.
    sent, crashes, acked = asyncio.run(replay_reviewer_decision(predictions, parked, None, False))
    assert [value["status"] for _key, value, _partition in sent] == ["tagged"]
    assert not crashes and acked and parked == {} and predictions["p1"]["resolved"] is True
    # The resolution's echo on the tagged topic: the first prediction stays, nothing is published.
    sent, crashes, acked = asyncio.run(replay_reviewer_decision(predictions, parked, None, False))
    assert sent == [] and acked and predictions["p1"]["status"] == "pending_review"


def test_the_review_clock_runs_to_the_decisions_arrival_whatever_the_reviewer_client_says() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable(), now=lambda: T0 + timedelta(minutes=5))
    for content_id, said in (("future", datetime(9999, 1, 1, tzinfo=UTC)), ("past", T0 - timedelta(days=9))):
        join.on_tagged(tagged(content_id, [], status="pending_review"), 0)
        decision = Feedback(id=content_id, tags=["mlops"], source="reviewer", created_at=said)
        verdict = join.on_feedback(decision, 0)
        assert verdict is not None and verdict.review_seconds == 300.0


def test_a_precision_that_becomes_undefined_is_no_longer_exported() -> None:
    async def scenario() -> list[float | None]:
        metrics = Metrics(CollectorRegistry())
        loop = FeedbackLoop(
            faust.App("gauges", broker="kafka://127.0.0.1:1"), Settings(online_eval_window=3), metrics
        )
        loop.join = FeedbackJoin(RestoredTable(), RestoredTable())
        seen = []
        for i, shown in enumerate([["mlops"], ["other"], ["other"], ["other"]]):
            loop.join.on_tagged(tagged(str(i), shown), 0)
            verdict = loop.join.on_feedback(fb(str(i), ["other"]), 0)
            assert verdict is not None
            await loop._apply(verdict)
            seen.append(metrics.registry.get_sample_value("stream_tagger_online_precision", {"tag": "mlops"}))
        return seen

    # 'mlops' shown once, wrongly; three posts later it is out of the window: no precision for it.
    assert asyncio.run(scenario()) == [0.0, 0.0, 0.0, None]


def test_a_parked_list_that_fails_half_way_does_not_block_a_later_resolution() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable())
    join.on_feedback(fb("1", ["mlops"], source="reviewer"), 0)
    join.on_feedback(fb("1", ["other"], source="user"), 0)
    judge = join._judge

    def judge_reviewers_only(feedback: Feedback, record: Any) -> Any:
        if feedback.source == "user":
            raise ValueError("odd correction")
        return judge(feedback, record)

    join._judge = judge_reviewers_only  # type: ignore[method-assign]
    with pytest.raises(ValueError, match="odd correction"):  # after the reviewer's verdict was made
        join.on_tagged(tagged("1", [], status="pending_review"), 0)
    join._judge = judge  # type: ignore[method-assign]
    verdict = join.on_feedback(fb("1", ["other"], source="reviewer"), 0)
    assert verdict is not None and verdict.resolution is not None


def test_a_post_whose_resolution_is_on_its_way_is_not_swept() -> None:
    join = FeedbackJoin(RestoredTable(), RestoredTable(), now=lambda: T0)
    join.on_tagged(tagged("p", [], status="pending_review"), 0)
    verdict = join.on_feedback(fb("p", ["mlops"], source="reviewer"), 0)
    assert verdict is not None and verdict.resolution is not None
    late = T0 + timedelta(days=1_000)
    assert [hit for hit in join.expired(late, late) if hit] == []  # the resolution is being sent
    join.resolved(verdict)
    assert [(hit[1], hit[4]) for hit in join.expired(late, late) if hit] == [("p", "prediction_expired")]
