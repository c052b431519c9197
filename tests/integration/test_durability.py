"""Failures of the brokers and of the group on Apache Kafka, with events arriving all along: every id
that goes in comes out (duplicates are counted and reported, see ``assert_every_id_out``).

The broker tests start their own brokers (``new_kafka``, ``kafka_cluster``): they kill them. The
worker's own SIGKILL is in test_worker_crash.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType

from stream_tagger.kafka.config import KAFKA_LOG
from stream_tagger.kafka.local_cluster import LocalKafka
from stream_tagger.settings import Settings
from tests.conftest import start_kafka
from tests.integration.helpers import (
    EventStream,
    WorkerProcess,
    assert_every_id_out,
    drain,
    has_keys,
    pin_model,
    read_all,
    wait_for,
)

pytestmark = pytest.mark.integration

# Events per second of the stream that flows through every failure: well within what the worker
# does on 2 cores next to the brokers, so a backlog is the failure's, not the load's.
RATE = 1_000
# Events sent after the failure that must come out too.
AFTER = 2_000


def leaders(settings: Settings, topic: str) -> dict[int, int]:
    """Partition -> id of the broker leading it, as the cluster's metadata says now."""
    admin = AdminClient({**settings.kafka_common(), "logger": KAFKA_LOG})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    return {p: meta.leader for p, meta in partitions.items()}


def replication(settings: Settings, topic: str) -> tuple[set[int], str]:
    """(replica counts of its partitions, its min.insync.replicas) of a topic."""
    admin = AdminClient({**settings.kafka_common(), "logger": KAFKA_LOG})
    partitions = admin.list_topics(topic, timeout=10).topics[topic].partitions
    resource = ConfigResource(ResourceType.TOPIC, topic)
    config = admin.describe_configs([resource])[resource].result(10)
    return {len(meta.replicas) for meta in partitions.values()}, config["min.insync.replicas"].value


def rode_it_out(
    settings: Settings, worker: WorkerProcess, stream: EventStream, at_kill: int, lost: str
) -> list[bytes]:
    """After a failure at ``at_kill`` events sent: AFTER more are sent and every one sent is tagged, the
    worker still alive and then stopping cleanly. Returns the ids sent."""
    stream.wait_sent(at_kill + AFTER)
    sent = stream.stop()
    drain(settings, settings.topic_tagged, has_keys(len(sent)), timeout=120)
    assert worker.alive, f"the worker died with {lost}:\n{worker.log_tail(30)}"
    assert worker.terminate() == 0
    return sent


def test_broker_killed_and_restarted_mid_stream_every_id_comes_out(
    new_kafka: Callable[[int], LocalKafka], settings: Settings, tmp_path: Path
) -> None:
    kafka = start_kafka(new_kafka(1))
    settings = pin_model(settings.model_copy(update={"bootstrap_servers": kafka.bootstrap_servers}), tmp_path)

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        stream = EventStream(settings, "bounce", RATE)
        worker.wait_processed(2_000)
        # The only broker, kill -9: nothing flushed, nothing handed over; it comes back on its data
        # after a few seconds (2 s down, then its start), with producers and the worker retrying.
        kafka.kill(1)
        at_kill = len(stream.sent)
        time.sleep(2)
        kafka.start_node(1)
        sent = rode_it_out(settings, worker, stream, at_kill, "the broker")
    assert_every_id_out(sent, read_all(settings, settings.topic_tagged))


def test_killing_the_leader_of_raw_and_tagged_partitions_loses_nothing(
    kafka_cluster: LocalKafka, settings: Settings, tmp_path: Path
) -> None:
    replicated = {
        "bootstrap_servers": kafka_cluster.bootstrap_servers,
        "replication_factor": 3,
        "min_insync_replicas": 2,
    }
    settings = pin_model(settings.model_copy(update=replicated), tmp_path)

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        # The worker created its topics: each partition on all three brokers, writes acked by two.
        for topic in (settings.topic_raw, settings.topic_tagged):
            assert replication(settings, topic) == ({3}, "2"), topic
        stream = EventStream(settings, "leader", RATE)
        worker.wait_processed(2_000)
        # 4 partitions' leaders spread over 3 brokers: each leads raw and tagged partitions.
        victim = leaders(settings, settings.topic_raw)[0]
        led = leaders(settings, settings.topic_tagged)
        assert victim in led.values(), f"broker {victim} leads no tagged partition: {led}"
        kafka_cluster.kill(victim)
        at_kill = len(stream.sent)

        def led_elsewhere() -> bool:
            now = {
                *leaders(settings, settings.topic_raw).values(),
                *leaders(settings, settings.topic_tagged).values(),
            }
            return victim not in now and -1 not in now

        wait_for(led_elsewhere, f"the partitions broker {victim} led have new leaders")
        # Written, consumed and tagged with one broker of three down (it stays down).
        sent = rode_it_out(settings, worker, stream, at_kill, f"broker {victim}")
    assert_every_id_out(sent, read_all(settings, settings.topic_tagged))


def test_a_second_worker_joining_then_leaving_mid_stream_loses_nothing(
    settings: Settings, tmp_path: Path
) -> None:
    settings = pin_model(settings, tmp_path)
    everything = f"model loaded, {settings.partitions} partition(s) assigned"

    with WorkerProcess(settings, tmp_path / "first.log") as first:
        first.wait_ready()
        stream = EventStream(settings, "join", RATE)
        first.wait_processed(2_000)
        with WorkerProcess(settings, tmp_path / "second.log") as second:
            second.wait_ready()  # it holds partitions: the group was rebalanced mid-stream
            assert first.get("/ready")[1] != everything
            second.wait_processed(1_000)
            assert second.terminate() == 0  # a graceful leave, events still arriving
        at_leave = len(stream.sent)
        wait_for(
            lambda: first.get("/ready") == (200, everything), "the first worker holds every partition again"
        )
        stream.wait_sent(at_leave + AFTER)
        sent = stream.stop()
        drain(settings, settings.topic_tagged, has_keys(len(sent)), timeout=120)
        assert first.terminate() == 0

    assert_every_id_out(sent, read_all(settings, settings.topic_tagged))
