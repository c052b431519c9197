"""Shared helpers for integration tests: produce events, drain topics, run `stream-tagger worker`.

The worker runs as a real subprocess (configured through STREAM_TAGGER_* variables built from a
``Settings``), because what the tests must show (SIGKILL, SIGTERM, restarts, exit codes, start-up
messages) only exists for a real process.
"""

from __future__ import annotations

import itertools
import os
import shutil
import signal
import sys
import threading
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self, TypeVar

import msgspec
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message, TopicPartition
from prometheus_client.samples import Sample

from stream_tagger.events import TaggedContent
from stream_tagger.kafka.config import KAFKA_LOG
from stream_tagger.kafka.embedded_broker import free_port
from stream_tagger.model.versions import resolve
from stream_tagger.processes import ProcessError, ServiceProcess
from stream_tagger.settings import Settings
from stream_tagger.tools.demo import malformed_events as demo_malformed_events
from stream_tagger.tools.produce import encode, make_producer, publish
from stream_tagger.tools.sources import dataset_events

WORKER_COMMAND = [str(Path(sys.executable).with_name("stream-tagger")), "worker"]
T = TypeVar("T")


def valid_events(n: int, prefix: str) -> list[tuple[bytes, bytes]]:
    """``n`` valid raw events from the bundled dataset as (key, value), ids ``prefix-NNNNNNN``."""
    return [(event.id.encode(), encode(event)) for event in dataset_events(n, id_prefix=prefix)]


def malformed_events(n: int, settings: Settings) -> list[tuple[bytes, bytes, str]]:
    """``n`` malformed events cycling through every reason (the demo's samples), as
    (key, value, expected reason); keys are unique, values repeat."""
    samples = itertools.islice(itertools.cycle(demo_malformed_events(settings.max_event_bytes)), n)
    return [(f"bad-{i}".encode(), value, reason) for i, (reason, value) in enumerate(samples)]


def produce(
    settings: Settings, items: Iterable[tuple[bytes | None, bytes]], topic: str | None = None
) -> None:
    """Publish with a plain confluent-kafka producer and fail the test unless every event was acked."""
    report = publish(make_producer(settings), topic or settings.topic_raw, items)
    assert report.ok, report.errors


class EventStream:
    """Valid events published from a thread at ``rate`` per second until ``stop()``, so that they keep
    arriving before, during and after whatever a test kills or restarts meanwhile.

    The producer is idempotent and waits up to a minute for a leader: a broker outage must neither
    lose an input nor write one twice, so every duplicate output counted afterwards is the worker's.
    """

    def __init__(self, settings: Settings, prefix: str, rate: float, limit: int = 60_000) -> None:
        self.sent: list[bytes] = []
        self._stop = threading.Event()
        events = valid_events(limit, prefix)

        def until_stopped() -> Iterator[tuple[bytes, bytes]]:
            for key, value in events:
                if self._stop.is_set():
                    return
                self.sent.append(key)
                yield key, value
            raise AssertionError(f"the stream ran out of its {limit} events before stop()")

        producer = make_producer(settings, **{"enable.idempotence": "true", "message.timeout.ms": 60_000})
        pool = ThreadPoolExecutor(1, thread_name_prefix="event-stream")
        self._report = pool.submit(publish, producer, settings.topic_raw, until_stopped(), rate)
        pool.shutdown(wait=False)

    @property
    def running(self) -> bool:
        return not self._report.done()

    def wait_sent(self, n: int, timeout: float = 60.0) -> None:
        """Until ``n`` events were handed to the producer in all."""
        deadline = time.monotonic() + timeout
        while len(self.sent) < n:
            assert self.running, "the stream stopped by itself"
            assert time.monotonic() < deadline, f"fewer than {n} events sent after {timeout:.0f}s"
            time.sleep(0.05)

    def stop(self, timeout: float = 120.0) -> list[bytes]:
        """Stop sending; the ids sent, once the broker acked every one (or the test fails)."""
        self._stop.set()
        report = self._report.result(timeout)
        assert report.ok, f"{report.failed} input(s) not acked by the broker: {report.errors}"
        assert report.delivered == len(self.sent)
        return list(self.sent)


def _reader(settings: Settings, topic: str) -> tuple[Consumer, list[int]]:
    """A consumer outside any group (``assign``: no group-join delay) and the topic's partitions."""
    consumer = Consumer(
        {
            **settings.kafka_common(),
            "group.id": "test-reader",
            "enable.auto.commit": False,
            "logger": KAFKA_LOG,
        }
    )
    return consumer, list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)


def drain(
    settings: Settings,
    topic: str,
    until: Callable[[dict[Any, list[bytes]]], bool],
    timeout: float = 60.0,
    by: Callable[[Message], Any] = Message.key,
) -> dict[Any, list[bytes]]:
    """Messages of ``topic`` from the beginning, as key -> values in arrival order, until ``until(seen)``.

    ``by`` names what groups them (the key; e.g. (partition, key) to see where each record went).
    Fails the test after ``timeout`` seconds, showing how far it got.
    """
    consumer, partitions = _reader(settings, topic)
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        seen: dict[bytes | None, list[bytes]] = defaultdict(list)
        deadline = time.monotonic() + timeout
        while not until(seen):
            assert time.monotonic() < deadline, (
                f"{topic}: condition not met after {timeout}s; {len(seen)} keys"
            )
            for message in consumer.consume(1_000, 0.2):
                if message.error() is None:
                    seen[by(message)].append(message.value())
        return dict(seen)
    finally:
        consumer.close()


def read_all(settings: Settings, topic: str, quiet: float = 2.0) -> dict[bytes | None, list[bytes]]:
    """Everything ``topic`` holds, as key -> values: reads until nothing new arrives for ``quiet`` s.

    Not by high watermarks: Tansu's are not exact (they lag behind the records actually stored).
    """
    consumer, partitions = _reader(settings, topic)
    try:
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        seen: dict[bytes | None, list[bytes]] = defaultdict(list)
        last_new = time.monotonic()
        while time.monotonic() - last_new < quiet:
            for message in consumer.consume(1_000, 0.2):
                if message.error() is None:
                    seen[message.key()].append(message.value())
                    last_new = time.monotonic()
        return dict(seen)
    finally:
        consumer.close()


def has_keys(n: int) -> Callable[[dict], bool]:
    """``drain`` condition: at least ``n`` distinct keys seen."""
    return lambda seen: len(seen) >= n


def committed_total(settings: Settings, group: str | None = None, topic: str | None = None) -> int:
    """Sum over a topic's partitions of a group's committed offsets (default: the worker on the raw topic)."""
    consumer = Consumer({**settings.kafka_common(), "group.id": group or settings.consumer_group})
    try:
        parts = [TopicPartition(topic or settings.topic_raw, p) for p in range(settings.partitions)]
        return sum(max(tp.offset, 0) for tp in consumer.committed(parts, timeout=10))
    finally:
        consumer.close()


def wait_value(read: Callable[[], T], done: Callable[[T], bool], timeout: float = 30.0) -> T:
    """Poll ``read()`` until ``done(value)``; returns the last value (the caller asserts on it, and so
    shows what it was)."""
    deadline = time.monotonic() + timeout
    value = read()
    while not done(value) and time.monotonic() < deadline:
        time.sleep(0.1)
        value = read()
    return value


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    """Poll until ``condition()`` holds; fails the test with ``what`` after ``timeout`` seconds."""
    assert wait_value(condition, bool, timeout), f"not within {timeout:.0f}s: {what}"


def pin_model(settings: Settings, directory: Path) -> Settings:
    """Settings serving a private copy of the current model version.

    ``models/current`` may be re-pointed while a test runs (training, promotion, hot reload); a
    test comparing outcomes across restarts needs one fixed version.
    """
    target = directory / "pinned-model"
    shutil.copytree(resolve(settings.model_dir), target)
    return settings.model_copy(update={"model_dir": target})


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment that makes ``Settings()`` in a child process equal ``settings``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_TAGGER_")}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if hasattr(value, "get_secret_value"):
            value = value.get_secret_value()
        env[f"STREAM_TAGGER_{name.upper()}"] = str(value)
    return env


class WorkerProcess(ServiceProcess):
    """`stream-tagger worker` (or ``command``) as a subprocess configured by ``settings``, with its own
    web port; output goes to ``log_path``. Adds what tests ask of a worker to the package's process."""

    def __init__(self, settings: Settings, log_path: Path, command: list[str] = WORKER_COMMAND) -> None:
        if not settings.web_port:
            settings = settings.model_copy(update={"web_port": free_port()})
        super().__init__(command, settings_env(settings), log_path, settings.web_port)
        self.settings = settings

    def wait_ready(self, timeout: float = 60.0) -> Self:
        try:
            return super().wait_ready(timeout)
        except ProcessError as exc:  # the whole recent log, not the package's few lines
            raise AssertionError(f"{str(exc).splitlines()[0]}\n{self.output()[-3000:]}") from None

    def wait_for_output(self, text: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output():
            assert time.monotonic() < deadline, f"{text!r} not in worker output:\n{self.output()[-3000:]}"
            time.sleep(0.1)

    def samples(self) -> list[Sample]:
        """Every sample /metrics shows now, from one request: values read together are of one moment."""
        from prometheus_client.parser import text_string_to_metric_families

        status, body = self.get("/metrics")
        assert status == 200, body
        return [sample for family in text_string_to_metric_families(body) for sample in family.samples]

    def metric(
        self, name: str, labels: dict[str, str] | None = None, samples: list[Sample] | None = None
    ) -> float:
        """Value of one sample (0 when absent): of ``samples`` if given, else read now."""
        for sample in self.samples() if samples is None else samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in (labels or {}).items()):
                return sample.value
        return 0.0

    def processed(self) -> float:
        now = self.samples()
        return sum(
            self.metric("stream_tagger_events_processed_total", {"outcome": o}, now)
            for o in ("tagged", "review", "dead_letter")
        )

    def wait_processed(self, n: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while self.processed() < n:
            assert time.monotonic() < deadline, f"fewer than {n} processed after {timeout}s"
            time.sleep(0.05)

    def wait_exit(self, timeout: float = 30.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def terminate(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait, no SIGKILL: the graceful stop under test; returns the exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.wait_exit(timeout)

    def kill(self) -> None:
        """SIGKILL: the crash nothing can clean up after."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)


def kill_mid_stream(settings: Settings, log_path: Path, processed: int) -> list[tuple[bytes, bytes]]:
    """A worker on what the raw topic holds, SIGKILLed once it counted ``processed`` events; then 2,000
    events more, which it returns. The killed worker may have tagged and committed the whole backlog
    first: those events are the next life's to tag, however far the first got."""
    first = WorkerProcess(settings, log_path).start()
    try:
        first.wait_ready()
        first.wait_processed(processed)
    finally:
        first.kill()
    later = valid_events(2_000, prefix="after")
    produce(settings, later)
    return later


def outcome(value: bytes) -> tuple[str, tuple[tuple[str, float], ...]]:
    """What a tagged-topic record decided (status and tags), without its timestamps."""
    event = msgspec.json.decode(value, type=TaggedContent)
    return event.status, tuple((score.tag, score.confidence) for score in event.tags)


def assert_consistent(tagged: dict[bytes | None, list[bytes]]) -> int:
    """Every id's records (duplicates after a replay) carry the same decision; returns the duplicate count."""
    for key, values in tagged.items():
        decisions = {outcome(value) for value in values}
        assert len(decisions) == 1, f"{key!r} was tagged differently: {decisions}"
    return sum(len(values) - 1 for values in tagged.values())


class DuplicateOutputs(UserWarning):
    """At-least-once allows an id to come out more than once after a failure; a test that saw some
    says how many in the run's warnings summary instead of passing over them in silence."""


@dataclass(frozen=True)
class Tally:
    """The ids that went in against what came out of one topic, every record counted."""

    sent: frozenset[bytes]
    out: dict[bytes | None, list[bytes]]

    @property
    def missing(self) -> set[bytes]:
        return set(self.sent - self.out.keys())

    @property
    def unexpected(self) -> set[bytes | None]:
        return set(self.out.keys() - self.sent)

    @property
    def duplicates(self) -> int:
        """Records beyond the first per id."""
        return sum(len(values) - 1 for values in self.out.values())

    def __str__(self) -> str:
        sample = f" (e.g. {sorted(self.missing)[:3]})" if self.missing else ""
        return (
            f"{len(self.sent)} ids in, {len(self.sent & self.out.keys())} out, "
            f"{len(self.missing)} missing{sample}, {len(self.unexpected)} unexpected, "
            f"{self.duplicates} duplicate record(s)"
        )


def assert_every_id_out(sent: Iterable[bytes], out: dict[bytes | None, list[bytes]]) -> Tally:
    """Nothing lost, nothing foreign, duplicates consistent with the first; their count is returned,
    shown in the assertion message on failure and as a ``DuplicateOutputs`` warning otherwise."""
    tally = Tally(frozenset(sent), out)
    print(f"tally: {tally}")  # in the report of a passing test with -rP
    assert not tally.missing and not tally.unexpected, str(tally)
    assert_consistent(out)
    if tally.duplicates:
        warnings.warn(DuplicateOutputs(str(tally)), stacklevel=2)
    return tally
