"""The start-up wait for the broker: pauses that double up to a ceiling, and an optional limit."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from typing import ClassVar

import faust
import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import NewTopic
from prometheus_client import CollectorRegistry

from stream_tagger.kafka import admin
from stream_tagger.kafka.admin import BrokerRefused, BrokerWaitExpired, wait_for_broker
from stream_tagger.metrics import Metrics
from stream_tagger.online.feedback import FeedbackLoop
from stream_tagger.settings import Settings


class Clock:
    """Fake time: each metadata request costs ``request_s``, each pause what it asked for."""

    def __init__(self, request_s: float = 3.0) -> None:
        self.now = 0.0
        self.request_s = request_s
        self.pauses: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def pause(self, seconds: float) -> bool:
        self.pauses.append(seconds)
        self.now += seconds
        return False


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()

    def unreachable(_settings: Settings, _timeout: float) -> set[str]:
        clock.now += clock.request_s
        raise KafkaException(KafkaError(KafkaError._TRANSPORT, "Broker transport failure"))

    monkeypatch.setattr(admin, "broker_topics", unreachable)
    monkeypatch.setattr(admin.time, "monotonic", clock.monotonic)
    monkeypatch.setattr(threading.Event, "wait", lambda _event, seconds: clock.pause(seconds))
    return clock


def test_pauses_double_up_to_the_ceiling_and_the_limit_ends_the_wait(clock: Clock) -> None:
    settings = Settings(broker_retry_seconds=1, broker_retry_max_seconds=8, broker_wait_limit_seconds=60)
    with pytest.raises(BrokerWaitExpired, match=r"no Kafka broker answered at \S+ within 60s \(\d+ attempt"):
        wait_for_broker(settings)
    assert clock.pauses[:5] == [1, 2, 4, 8, 8]
    assert clock.now >= 60
    assert sum(clock.pauses) + clock.request_s * (len(clock.pauses) + 1) == clock.now
    assert clock.pauses[-1] <= 8  # the last pause is cut to what is left of the limit


def test_without_a_limit_the_wait_goes_on_until_stopped(clock: Clock) -> None:
    stop = threading.Event()
    stop.is_set = lambda: len(clock.pauses) >= 20  # type: ignore[method-assign]
    assert wait_for_broker(Settings(), stop) is None
    assert clock.pauses[:6] == [2, 4, 8, 16, 30, 30]  # the defaults: 2 s, doubling, at most 30 s
    assert clock.now > 500


def test_an_attempt_is_logged_with_the_next_pause(clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(BrokerWaitExpired):
        wait_for_broker(Settings(broker_wait_limit_seconds=10))
    assert (
        "Kafka broker unreachable at 127.0.0.1:19092 (Broker transport failure); retrying in 2.0s "
        "(attempt 1)" in caplog.text
    )


class Admin:
    """An AdminClient whose broker refuses the names it has an error for, as Kafka does."""

    refusals: ClassVar[dict[str, KafkaError]] = {}

    def __init__(self, _conf: dict[str, object]) -> None:
        pass

    def create_topics(self, topics: list[NewTopic], **_kwargs: object) -> dict[str, Future[None]]:
        futures = {}
        for topic in topics:
            future: Future[None] = Future()
            refusal = self.refusals.get(topic.topic)
            if refusal is None:
                future.set_result(None)
            else:
                future.set_exception(KafkaException(refusal))
            futures[topic.topic] = future
        return futures


@pytest.mark.parametrize(
    ("error", "hint"),
    [
        (KafkaError(KafkaError.TOPIC_EXCEPTION, "Topic name is illegal"), "; see the STREAM_TAGGER_TOPIC_*"),
        (KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "Not authorized"), ""),
        (
            KafkaError(KafkaError.INVALID_REPLICATION_FACTOR, "3 > 1 broker"),
            "; set STREAM_TAGGER_REPLICATION",
        ),
    ],
)
def test_a_topic_the_broker_will_not_create_is_one_line(
    monkeypatch: pytest.MonkeyPatch, error: KafkaError, hint: str
) -> None:
    settings = Settings(replication_factor=1, min_insync_replicas=1)
    monkeypatch.setattr(admin, "AdminClient", Admin)
    monkeypatch.setattr(Admin, "refusals", {settings.topic_review: error})
    with pytest.raises(BrokerRefused) as refused:
        admin.ensure_topics(settings, {settings.topic_raw})
    assert str(refused.value).startswith(f"cannot create topic {settings.topic_review}: {error.str()}{hint}")


def test_feedback_topics_of_another_partition_count_are_refused_in_one_line() -> None:
    """An event of a partition the join's changelog lacks would stop the feedback worker at every
    restart; a topic not created yet gets the configured count."""
    settings = Settings(partitions=4)
    changelogs = FeedbackLoop(faust.App("changelogs"), settings, Metrics(CollectorRegistry())).changelogs()
    assert changelogs == ["changelogs-feedback-predictions-changelog", "changelogs-feedback-parked-changelog"]
    admin.check_feedback_partitions(settings, {settings.topic_tagged: 4, settings.topic_raw: 12}, changelogs)
    for topic in (settings.topic_feedback, changelogs[1]):  # a changelog made before the topics grew
        with pytest.raises(admin.TopicsMismatch) as mismatch:
            admin.check_feedback_partitions(settings, {settings.topic_tagged: 4, topic: 12}, changelogs)
        assert str(mismatch.value).startswith(
            f"topic {topic} has 12 partitions, but STREAM_TAGGER_PARTITIONS is 4"
        )
