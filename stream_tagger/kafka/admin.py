"""Waiting for the broker and creating missing topics: the worker's first contact with Kafka.

librdkafka clients never fail on a missing broker, they retry silently forever. At start the worker
therefore asks for metadata with a short timeout in a loop, logging the address it cannot reach each
time, so that "broker down" reads as such in the log and the worker carries on the moment it is up.
"""

from __future__ import annotations

import logging
import threading

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from stream_tagger.kafka.config import KAFKA_LOG
from stream_tagger.settings import Settings

log = logging.getLogger(__name__)

_METADATA_TIMEOUT_S = 3.0


def wait_for_broker(settings: Settings, stop: threading.Event | None = None) -> set[str] | None:
    """The broker's topic names once it answers; None if ``stop`` was set while waiting."""
    stop = stop or threading.Event()
    admin = AdminClient({**settings.kafka_common(), "logger": KAFKA_LOG})
    attempt = 0
    while not stop.is_set():
        try:
            topics = set(admin.list_topics(timeout=_METADATA_TIMEOUT_S).topics)
        except KafkaException as exc:
            attempt += 1
            log.warning(
                "Kafka broker unreachable at %s (%s); retrying in %.0fs (attempt %d)",
                settings.bootstrap_servers,
                exc.args[0].str(),
                settings.broker_retry_seconds,
                attempt,
            )
            stop.wait(settings.broker_retry_seconds)
            continue
        if attempt:
            log.info("Kafka broker at %s is up", settings.bootstrap_servers)
        return topics
    return None


def ensure_topics(settings: Settings, existing: set[str]) -> list[str]:
    """Create the configured topics that do not exist yet; returns the names created.

    Two workers starting together may both try: "already exists" counts as success.
    """
    admin = AdminClient({**settings.kafka_common(), "logger": KAFKA_LOG})
    missing = [name for name in settings.topics() if name not in existing]
    if not missing:
        return []
    config = {}
    if settings.min_insync_replicas is not None:
        config["min.insync.replicas"] = str(settings.min_insync_replicas)
    futures = admin.create_topics(
        [NewTopic(name, settings.partitions, settings.replication_factor, config=config) for name in missing],
        operation_timeout=10,
        request_timeout=15,
    )
    created = []
    for name, future in futures.items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise
    if created:
        log.info("created topics %s with %d partitions, replication factor %d%s", ", ".join(created),
                 settings.partitions, settings.replication_factor,
                 f", min.insync.replicas {settings.min_insync_replicas}" if config else "")
    return created
