"""Reading the output topics as a UI developer sees them: follow, decode, render one line per event.

Partitions are assigned directly instead of joining a consumer group: a tail must not wait for a group
rebalance (seconds on Tansu) nor take partitions away from anyone, and it commits nothing.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

import msgspec
from confluent_kafka import OFFSET_BEGINNING, OFFSET_END, Consumer, KafkaError, KafkaException, TopicPartition
from rich.text import Text

from stream_tagger.events import DeadLetter, RawContent, ReviewRequest, TaggedContent, TagScore
from stream_tagger.kafka.config import KAFKA_LOG, consumer_common
from stream_tagger.settings import Settings
from stream_tagger.tools.produce import check_broker

#: Names a user types for the topics in settings (any other name is taken as a topic name as is).
TOPIC_ALIASES = ("tagged", "review", "dead-letter", "raw")

Event = TaggedContent | ReviewRequest | DeadLetter | RawContent


class TopicMissing(Exception):
    """The topic does not exist on the broker (yet): the worker creates its topics when it starts."""


def resolve_topic(settings: Settings, name: str) -> str:
    return {
        "tagged": settings.topic_tagged,
        "review": settings.topic_review,
        "dead-letter": settings.topic_dead_letter,
        "raw": settings.topic_raw,
    }.get(name, name)


def event_type(settings: Settings, topic: str) -> type[Event] | None:
    """The struct a topic carries, or None for a topic this package does not know."""
    return {
        settings.topic_tagged: TaggedContent,
        settings.topic_review: ReviewRequest,
        settings.topic_dead_letter: DeadLetter,
        settings.topic_raw: RawContent,
    }.get(topic)


class Record(msgspec.Struct, frozen=True):
    """One message as read: where it came from, its raw value, and the event when it decodes."""

    topic: str
    partition: int
    offset: int
    value: bytes
    event: Event | None


def follow(
    settings: Settings,
    topics: Sequence[str],
    from_beginning: bool = False,
    max_messages: int | None = None,
    idle_timeout: float | None = None,
    stop: Callable[[], bool] | None = None,
) -> Iterator[Record]:
    """Messages of ``topics`` as they arrive, until ``max_messages`` were read, nothing came for
    ``idle_timeout`` seconds, or ``stop()`` is true (checked every poll, ~0.2 s)."""
    existing = check_broker(settings)
    missing = [t for t in topics if t not in existing]
    if missing:
        raise TopicMissing(
            f"topic {', '.join(missing)} does not exist at {settings.bootstrap_servers}; "
            f"the worker creates it at start (`stream-tagger worker`)"
        )
    consumer = Consumer(
        {
            **consumer_common(settings),
            "group.id": f"stream-tagger-tail-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "logger": KAFKA_LOG,
        }
    )
    try:
        metadata = consumer.list_topics(timeout=10)
        start = OFFSET_BEGINNING if from_beginning else OFFSET_END
        since_ms = None if from_beginning else int(time.time() * 1000)
        consumer.assign([TopicPartition(t, p, start) for t in topics for p in metadata.topics[t].partitions])
        types = {t: event_type(settings, t) for t in topics}
        decoders = {t: msgspec.json.Decoder(kind) for t, kind in types.items() if kind is not None}
        yield from _poll(consumer, decoders, max_messages, idle_timeout, stop, since_ms)
    finally:
        consumer.close()


def _poll(
    consumer: Consumer,
    decoders: dict[str, msgspec.json.Decoder],
    max_messages: int | None,
    idle_timeout: float | None,
    stop: Callable[[], bool] | None,
    since_ms: int | None,
) -> Iterator[Record]:
    count = 0
    last = time.monotonic()
    # Tansu reports a partition's end as the last *batch's* base offset + 1, so "from the end" can start
    # inside that batch: skip records older than the start of the tail until a partition shows a new one.
    fresh: set[tuple[str, int]] = set()
    while max_messages is None or count < max_messages:
        if stop is not None and stop():
            return
        msg = consumer.poll(0.2)
        if msg is None:
            if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                return
            continue
        if msg.error():
            if msg.error().code() == KafkaError._PARTITION_EOF:
                continue
            raise KafkaException(msg.error())
        where = (msg.topic(), msg.partition())
        if since_ms is not None and where not in fresh:
            if msg.timestamp()[1] < since_ms:
                continue
            fresh.add(where)
        last = time.monotonic()
        count += 1
        value = msg.value() or b""
        decoder = decoders.get(msg.topic())
        event = None
        if decoder is not None:
            try:
                event = decoder.decode(value)
            except msgspec.DecodeError:
                event = None
        yield Record(msg.topic(), msg.partition(), msg.offset(), value, event)


def latency_ms(event: TaggedContent) -> float:
    """Event time to tagged publish, in milliseconds (what the 100 ms budget is about)."""
    return (event.processed_at - event.event_time).total_seconds() * 1000


def _scores(scores: list[TagScore]) -> str:
    return ", ".join(f"{s.tag} {s.confidence:.2f}" for s in scores) or "-"


def _clock(at: datetime) -> str:
    return at.strftime("%H:%M:%S.%f")[:-3]


def render(record: Record) -> Text:
    """One readable line per event; an undecodable value is shown raw so nothing is hidden."""
    event = record.event
    if isinstance(event, TaggedContent):
        line = Text.assemble((_clock(event.processed_at), "dim"), " ", (event.id, "bold"), " ")
        if event.status == "tagged":
            line.append(_scores(event.tags), "green")
        else:
            line.append("pending review", "yellow")
        if event.author_tags:
            line.append(f"  author: {', '.join(event.author_tags)}", "cyan")
        if event.duplicate_of:
            line.append(f"  duplicate of {event.duplicate_of}", "magenta")
        line.append(f"  {latency_ms(event):.0f} ms  model {event.model_version}", "dim")
        return line
    if isinstance(event, ReviewRequest):
        return Text.assemble(
            (_clock(event.processed_at), "dim"),
            " ",
            (event.id, "bold"),
            " ",
            ("review: " + _scores(event.candidates), "yellow"),
            f"  {event.title[:70]}",
        )
    if isinstance(event, DeadLetter):
        original = event.original[:60].decode("utf-8", "replace")
        origin = f"  {event.topic}[{event.partition}]@{event.offset}"
        return Text.assemble(
            (_clock(event.received_at), "dim"),
            " ",
            (event.reason, "bold red"),
            f" {event.detail[:80]}",
            (origin, "dim"),
            f"  {original!r}",
        )
    if isinstance(event, RawContent):
        return Text.assemble(
            (_clock(event.created_at), "dim"), " ", (event.id, "bold"), f" {event.title[:90]}"
        )
    return Text(f"{record.topic}[{record.partition}]@{record.offset} {record.value[:200]!r}", "dim")
