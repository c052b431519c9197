"""The embedded broker's storage option: the default keeps data; a URL the binary cannot serve is an error
that says why (the shipped Tansu is built with its in-memory/object-store engine only)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition

from stream_tagger.kafka.embedded_broker import MEMORY, BrokerError, EmbeddedBroker

pytestmark = pytest.mark.integration


def test_memory_storage_keeps_what_is_produced(tmp_path: Path) -> None:
    with EmbeddedBroker(log_path=tmp_path / "tansu.log", storage_engine=MEMORY) as broker:
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers})
        producer.produce("kept", b"hello", partition=0)  # the topic is auto-created with several partitions
        assert producer.flush(10) == 0
        consumer = Consumer({"bootstrap.servers": broker.bootstrap_servers, "group.id": "kept"})
        consumer.assign([TopicPartition("kept", 0, OFFSET_BEGINNING)])  # no group join to wait for
        try:
            deadline = time.monotonic() + 20
            while (msg := consumer.poll(0.5)) is None or msg.error():
                assert time.monotonic() < deadline, "nothing read back from the embedded broker"
            assert msg.value() == b"hello"
        finally:
            consumer.close()


def test_storage_engine_not_built_in_fails_naming_the_missing_feature(tmp_path: Path) -> None:
    broker = EmbeddedBroker(log_path=tmp_path / "tansu.log", storage_engine=f"sqlite://{tmp_path}/t.db")
    with pytest.raises(BrokerError, match=r"storage sqlite://.*FeatureNotEnabled.*libsql"):
        broker.start()
    assert broker.pid is None
