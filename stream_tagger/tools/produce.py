"""Publishing raw events: from a file or from memory, paced, with a delivery report a producer can trust.

The report counts broker acknowledgements, not calls to ``produce()``: an event counts as delivered
only once the broker said so, which is what a content producer needs to know before moving on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from confluent_kafka import KafkaError, KafkaException, Message, Producer

from stream_tagger.events import RawContent
from stream_tagger.kafka.admin import broker_topics
from stream_tagger.kafka.config import KAFKA_LOG, producer_common
from stream_tagger.settings import Settings
from stream_tagger.tools.sources import RowError, read_posts

#: How long a command waits for the broker's first answer before saying it is not there.
CONNECT_TIMEOUT_S = 5.0
# A message the broker has not acknowledged after this long is reported failed instead of retried on.
_DELIVERY_TIMEOUT_MS = 30_000
_MAX_ERRORS_KEPT = 20


class BrokerUnreachable(Exception):
    """Nothing answered at the configured bootstrap address."""


def check_broker(settings: Settings, timeout: float = CONNECT_TIMEOUT_S) -> dict[str, int]:
    """The broker's topics and their partition counts; raises ``BrokerUnreachable`` naming the address
    after ``timeout`` s.

    librdkafka clients never fail on a missing broker, they retry forever: one bounded metadata
    request up front is what turns "hangs" into a one-line error. A broker that refuses this client
    raises ``BrokerRefused`` at once.
    """
    try:
        return broker_topics(settings, timeout)
    except KafkaException as exc:
        raise BrokerUnreachable(
            f"no Kafka broker answered at {settings.bootstrap_servers} within "
            f"{timeout:.0f}s ({exc.args[0].str()}); start one with "
            f"`stream-tagger broker` or set STREAM_TAGGER_BOOTSTRAP_SERVERS"
        ) from exc


def make_producer(settings: Settings, **overrides: str | int) -> Producer:
    """A producer that waits for the broker's acknowledgement of every event (``acks=all``)."""
    return Producer(
        {
            **producer_common(settings),
            "acks": "all",
            "linger.ms": 5,
            "message.timeout.ms": _DELIVERY_TIMEOUT_MS,
            "logger": KAFKA_LOG,
            **overrides,
        }
    )


@dataclass
class DeliveryReport:
    """What happened to every row: delivered (acknowledged), failed (with reasons), or rejected as bad."""

    delivered: int = 0
    failed: int = 0
    bad_rows: list[RowError] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.bad_rows


class Pacer:
    """Holds a loop to ``rate`` iterations per second on average (``None``: as fast as possible)."""

    def __init__(self, rate: float | None) -> None:
        self.rate = rate
        self._start = time.monotonic()
        self._count = 0

    def wait(self) -> None:
        if not self.rate:
            return
        self._count += 1
        delay = self._start + self._count / self.rate - time.monotonic()
        if delay > 0:
            time.sleep(delay)


def encode(event: RawContent) -> bytes:
    return msgspec.json.encode(event)


def publish(
    producer: Producer,
    topic: str,
    items: Iterable[tuple[bytes | None, bytes]],
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> DeliveryReport:
    """Send (key, value) pairs to ``topic`` at ``rate``/s and wait for every acknowledgement.

    Takes bytes so that the demo can also send malformed events; ``on_sent(n)`` is called as the
    broker acknowledges ``n`` more events (for a progress bar).
    """
    report = DeliveryReport()

    def delivered(err: KafkaError | None, _msg: Message) -> None:
        if err is None:
            report.delivered += 1
        else:
            report.failed += 1
            if len(report.errors) < _MAX_ERRORS_KEPT:
                report.errors.append(err.str())
        if on_sent:
            on_sent(1)

    pacer = Pacer(rate)
    for key, value in items:
        pacer.wait()
        while True:
            try:
                producer.produce(topic, value=value, key=key, on_delivery=delivered)
                break
            except BufferError:
                # The local queue is full: wait for acknowledgements instead of dropping the event.
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(_DELIVERY_TIMEOUT_MS / 1000 + 5)
    if remaining:
        report.failed += remaining
        report.errors.append(f"{remaining} event(s) not acknowledged by the broker")
    return report


def load_file(path: Path, settings: Settings) -> tuple[list[RawContent], list[RowError]]:
    """The valid posts of a CSV/JSONL file and its bad rows (schema, size limit), read in one pass.

    Read whole before sending so that bad rows are reported up front and the progress bar has a total.
    """
    posts: list[RawContent] = []
    bad: list[RowError] = []
    for item in read_posts(path, max_event_bytes=settings.max_event_bytes):
        if isinstance(item, RawContent):
            posts.append(item)
        else:
            bad.append(item)
    return posts, bad


def produce_events(
    settings: Settings,
    topic: str,
    events: Iterable[RawContent],
    rate: float | None = None,
    on_sent: Callable[[int], None] | None = None,
) -> DeliveryReport:
    """Publish raw events keyed by content id (the worker's partitioning and idempotence key)."""
    check_broker(settings)
    pairs = ((event.id.encode(), encode(event)) for event in events)
    return publish(make_producer(settings), topic, pairs, rate=rate, on_sent=on_sent)
