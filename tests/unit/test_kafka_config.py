"""The hot path's librdkafka configuration is accepted by librdkafka at the settings' bounds."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaException, Producer

from stream_tagger.kafka.config import consumer_config, producer_config
from stream_tagger.settings import Settings

FLOORS = {
    "consumer_prefetch_kbytes": 64,
    "consumer_prefetch_messages": 1,
    "fetch_queue_backoff_ms": 1,
    "fetch_max_kbytes": 1_024,
    "fetch_partition_max_kbytes": 16,
}


@pytest.mark.parametrize("overrides", [{}, FLOORS], ids=["defaults", "floors"])
def test_librdkafka_accepts_the_clients_configuration(overrides: dict[str, int]) -> None:
    settings = Settings(bootstrap_servers="127.0.0.1:1", **overrides)
    Consumer(consumer_config(settings)).close()  # no broker needed: librdkafka validates on creation
    Producer(producer_config(settings, lambda _error, _message: None))


def test_a_fetch_size_under_librdkafkas_message_size_is_refused_by_it() -> None:
    """Why ``fetch_max_kbytes`` has a floor of 1,024."""
    settings = Settings(bootstrap_servers="127.0.0.1:1").model_copy(update={"fetch_max_kbytes": 512})
    with pytest.raises(KafkaException, match=r"fetch\.max\.bytes"):
        Consumer(consumer_config(settings))
