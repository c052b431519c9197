"""Corrections back into training data: the feedback topic joined with the posts' text, as a training CSV.

The feedback topic only carries ids and tags, so the text comes from the raw topic (the one place that
has title, description and creation time for every post). Both topics are read from the beginning to
the end offsets seen at start, so an export is a consistent snapshot even while the stream goes on.
Messages are read with the workers' own decoders (size limit included): what a worker dead-letters,
the export skips, and an odd message (nested thousands deep, say) cannot stop it. Per id the latest
correction wins (people correct their corrections): latest by its ``created_at``, but never later than
the record's own timestamp, so that a correction stamped in the future (a client's clock, or its
payload) cannot outrank every later one for good. The training CSV holds one tag
per post, so the first approved tag of the correction is used; a correction naming no approved tag
teaches the model nothing and is left out, and counted, as is a post the trainer would refuse (no id
or no text once blanks are stripped: one such row would fail the whole file).
"""

from __future__ import annotations

import csv
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, TopicPartition

from stream_tagger.events import Feedback, RawContent, as_utc, record_time
from stream_tagger.kafka.config import KAFKA_LOG, consumer_common
from stream_tagger.model.dataset import row_problem
from stream_tagger.settings import APPROVED_TAGS, Settings
from stream_tagger.tools.produce import check_broker
from stream_tagger.worker.decode import Rejection, decode_feedback, decode_raw
from stream_tagger.worker.route import normalise_tag

CSV_COLUMNS = ("id", "created_on", "title", "description", "tag")
CREATED_ON_FORMAT = "%Y-%m-%d %H:%M:%S"  # as in data/dataset.csv

E = TypeVar("E", Feedback, RawContent)


class ExportError(Exception):
    """The export cannot run (a topic is missing); the message says which."""


@dataclass(frozen=True)
class ExportReport:
    written: int
    without_text: int  # corrected ids not (or no longer) on the raw topic
    without_approved_tag: int
    unusable: int  # posts the trainer refuses (``model.dataset.row_problem``): blank id or text


def read_to_end(settings: Settings, topic: str, timeout: float = 60.0) -> Iterator[Message]:
    """Every message of ``topic`` from the beginning up to the end offsets as they are now.

    The end of a partition is taken from its first fetch response: Tansu answers the ListOffsets
    request (``get_watermark_offsets``) with the start of the last record batch plus one, which ends
    the read early when a batch holds several records; the fetch response has the true high watermark.
    A partition also ends when the consumer reports it has read all it can (``_PARTITION_EOF``): a
    transactional producer's last offset is a commit marker, which no consumer receives, and what an
    open transaction wrote is not readable yet (committed records only).
    """
    consumer = Consumer(
        {
            **consumer_common(settings),
            "group.id": f"stream-tagger-export-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
            "enable.partition.eof": True,
            "logger": KAFKA_LOG,
        }
    )
    try:
        ends = {}
        for p in consumer.list_topics(topic, timeout=10).topics[topic].partitions:
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            if high > low:
                ends[p] = high
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in ends])
        deadline = time.monotonic() + timeout
        fetched: set[int] = set()
        while ends:
            if time.monotonic() > deadline:
                raise ExportError(f"{topic}: partitions {sorted(ends)} not read to the end in {timeout:.0f}s")
            msg = consumer.poll(0.5)
            if msg is None:
                continue
            p = msg.partition()
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(msg.error())
                ends.pop(p, None)
                continue
            if p not in ends:
                continue
            if p not in fetched:
                fetched.add(p)
                fetched_end = consumer.get_watermark_offsets(TopicPartition(topic, p), cached=True)[1]
                ends[p] = max(ends[p], fetched_end)
            if msg.offset() < ends[p]:
                yield msg
            if msg.offset() >= ends[p] - 1:
                del ends[p]
    finally:
        consumer.close()


def decoded(
    messages: Iterator[Message], decode: Callable[[bytes | None, int], E | Rejection], max_bytes: int
) -> Iterator[tuple[Message, E]]:
    """Each message that ``decode`` (a worker's decoder, which never raises) accepts at ``max_bytes``,
    with its event; the workers dead-letter the rest, so they are skipped."""
    for msg in messages:
        event = decode(msg.value(), max_bytes)
        if not isinstance(event, Rejection):
            yield msg, event


def correction_time(msg: Message, feedback: Feedback) -> datetime:
    """When a correction was made, for ordering: its ``created_at``, at most its record's timestamp.

    A replay keeps its own, earlier ``created_at`` and does not outrank a newer correction. The record's
    timestamp is the producing client's clock at send time unless the client sets it: a Kafka 4 broker
    refuses one over an hour ahead of its own clock (``log.message.timestamp.after.max.ms``), and a topic
    with ``message.timestamp.type=LogAppendTime`` takes the broker's."""
    made = as_utc(feedback.created_at)
    written = record_time(msg.timestamp())
    return made if written is None else min(made, written)


def latest_corrections(messages: Iterator[Message], max_bytes: int) -> dict[str, Feedback]:
    """Per id, the correction with the latest ``correction_time`` (of equal ones, the one read last);
    what the feedback worker would dead-letter is skipped."""
    latest: dict[str, tuple[datetime, Feedback]] = {}
    for msg, fb in decoded(messages, decode_feedback, max_bytes):
        made = correction_time(msg, fb)
        if fb.id not in latest or made >= latest[fb.id][0]:
            latest[fb.id] = made, fb
    return {cid: fb for cid, (_made, fb) in latest.items()}


def posts_by_id(messages: Iterator[Message], wanted: set[str], max_bytes: int) -> dict[str, RawContent]:
    """The first raw event of each wanted id that the worker would tag (a replay carries the same post)."""
    found: dict[str, RawContent] = {}
    for _msg, post in decoded(messages, decode_raw, max_bytes):
        if post.id in wanted and post.id not in found:
            found[post.id] = post
    return found


def training_tag(feedback: Feedback) -> str | None:
    return next((t for t in map(normalise_tag, feedback.tags) if t in APPROVED_TAGS), None)


def export_feedback(settings: Settings, out: Path) -> ExportReport:
    """Write the corrected examples as a training CSV at ``out``; counts what could not be written."""
    existing = check_broker(settings)
    missing = [t for t in (settings.topic_feedback, settings.topic_raw) if t not in existing]
    if missing:
        raise ExportError(f"topic {', '.join(missing)} does not exist at {settings.bootstrap_servers}")
    corrections = latest_corrections(read_to_end(settings, settings.topic_feedback), settings.max_event_bytes)
    tags = {cid: tag for cid, fb in corrections.items() if (tag := training_tag(fb)) is not None}
    posts = posts_by_id(read_to_end(settings, settings.topic_raw), set(tags), settings.max_event_bytes)
    rows = []
    for cid in sorted(posts):
        post = posts[cid]
        values = (cid, post.created_at.strftime(CREATED_ON_FORMAT), post.title, post.description, tags[cid])
        row = dict(zip(CSV_COLUMNS, values, strict=True))
        if row_problem(row) is None:
            rows.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return ExportReport(
        written=len(rows),
        without_text=len(tags) - len(posts),
        without_approved_tag=len(corrections) - len(tags),
        unusable=len(posts) - len(rows),
    )
