"""Waiting for the broker and creating missing topics: the worker's first contact with Kafka.

librdkafka clients never fail on a missing broker, they retry silently forever. At start the worker
therefore asks for metadata with a short timeout in a loop, logging the address it cannot reach each
time, so that "broker down" reads as such in the log and the worker carries on the moment it is up.
The pause between attempts doubles up to ``broker_retry_max_seconds``; with
``broker_wait_limit_seconds`` the wait ends in ``BrokerWaitExpired`` after that long.

A broker that answers but refuses the client (a certificate it does not trust or that names another
host, a client certificate it refuses, wrong SASL credentials) is no reason to wait: librdkafka would
retry it forever too, so it is reported at once as ``BrokerRefused``, one line saying why.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Collection, Iterable, Mapping

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from stream_tagger.kafka.config import admin_config
from stream_tagger.settings import Settings

log = logging.getLogger(__name__)

_METADATA_TIMEOUT_S = 3.0
# How often a metadata request is retried within its timeout, to see a refusal as soon as it comes.
_REFUSAL_CHECK_S = 0.5
# "sasl_ssl://127.0.0.1:9093/bootstrap: " before librdkafka's reason, " (after 12ms in state X)" after.
_BROKER_PREFIX = re.compile(r"^\S+://\S+?: ")
_TIMING_SUFFIX = re.compile(r" \(after \d+ms in state \w+\)$")


# What to check when the broker refuses to create a topic; the durable defaults (3 replicas,
# min.insync.replicas 2) on a smaller cluster are the usual cause.
_REPLICAS_HINT = (
    "; set STREAM_TAGGER_REPLICATION_FACTOR and STREAM_TAGGER_MIN_INSYNC_REPLICAS for this cluster"
)
_CREATE_HINTS = {
    KafkaError.INVALID_REPLICATION_FACTOR: _REPLICAS_HINT,
    KafkaError.INVALID_CONFIG: _REPLICAS_HINT,
    KafkaError.POLICY_VIOLATION: _REPLICAS_HINT,
    KafkaError.TOPIC_EXCEPTION: "; see the STREAM_TAGGER_TOPIC_* settings",
    KafkaError.INVALID_PARTITIONS: "; see STREAM_TAGGER_PARTITIONS",
}


class BrokerWaitExpired(Exception):
    """No broker answered within ``broker_wait_limit_seconds``."""


class TopicsMismatch(Exception):
    """Existing topics that do not fit the settings (``check_feedback_partitions``)."""


class BrokerRefused(Exception):
    """A broker answered but refused this client: TLS (its certificate not trusted or naming another
    host, our certificate refused) or SASL (credentials, token). Retrying cannot help."""


def _refusal(error: KafkaError) -> bool:
    if error.code() in (KafkaError._AUTHENTICATION, KafkaError._SSL):
        return True
    # A broker that refuses the client's certificate (or its absence) closes the TLS session with an
    # alert, which librdkafka reports as a transport failure.
    return error.code() == KafkaError._TRANSPORT and "SSL routines" in error.str()


def _refused(settings: Settings, error: KafkaError) -> BrokerRefused:
    reason = _TIMING_SUFFIX.sub("", _BROKER_PREFIX.sub("", error.str()))
    if error.code() == KafkaError._AUTHENTICATION:
        hint = (
            "STREAM_TAGGER_OAUTH_*"
            if settings.sasl_mechanism == "OAUTHBEARER"
            else "STREAM_TAGGER_SASL_USERNAME and STREAM_TAGGER_SASL_PASSWORD"
        )
    else:
        hint = "STREAM_TAGGER_SSL_CA_FILE, STREAM_TAGGER_SSL_CERT_FILE and STREAM_TAGGER_SSL_KEY_FILE"
    return BrokerRefused(
        f"the Kafka broker at {settings.bootstrap_servers} refused this client: {reason} (check {hint})"
    )


def broker_topics(settings: Settings, timeout: float) -> dict[str, int]:
    """The broker's topic names, each with its partition count. Raises ``BrokerRefused`` as soon as a
    broker refuses the client, and librdkafka's ``KafkaException`` when nothing answered within
    ``timeout`` seconds."""
    refusals: list[KafkaError] = []

    def on_error(error: KafkaError) -> None:
        if _refusal(error):
            refusals.append(error)

    admin = AdminClient(admin_config(settings, on_error))
    deadline = time.monotonic() + timeout
    while True:
        try:
            metadata = admin.list_topics(timeout=min(_REFUSAL_CHECK_S, timeout))
            return {name: len(topic.partitions) for name, topic in metadata.topics.items()}
        except KafkaException:
            admin.poll(0)  # runs error_cb for what librdkafka reported meanwhile
            if refusals:
                raise _refused(settings, refusals[0]) from None
            if time.monotonic() >= deadline:
                raise


def wait_for_broker(settings: Settings, stop: threading.Event | None = None) -> dict[str, int] | None:
    """The broker's topics and their partition counts once it answers; None if ``stop`` was set while
    waiting. Raises ``BrokerRefused`` when it answers but refuses this client, ``BrokerWaitExpired``
    when nothing answered within ``broker_wait_limit_seconds``."""
    stop = stop or threading.Event()
    limit = settings.broker_wait_limit_seconds
    started = time.monotonic()
    pause = settings.broker_retry_seconds
    attempt = 0
    while not stop.is_set():
        try:
            topics = broker_topics(settings, _METADATA_TIMEOUT_S)
        except KafkaException as exc:
            attempt += 1
            reason = exc.args[0].str()
            left = limit - (time.monotonic() - started) if limit is not None else pause
            if left <= 0:
                raise BrokerWaitExpired(
                    f"no Kafka broker answered at {settings.bootstrap_servers} within {limit:g}s "
                    f"({attempt} attempt(s), the last: {reason}); see STREAM_TAGGER_BROKER_WAIT_LIMIT_SECONDS"
                ) from None
            wait = min(pause, left)
            log.warning(
                "Kafka broker unreachable at %s (%s); retrying in %.1fs (attempt %d)",
                settings.bootstrap_servers,
                reason,
                wait,
                attempt,
            )
            stop.wait(wait)
            pause = min(pause * 2, max(settings.broker_retry_max_seconds, settings.broker_retry_seconds))
            continue
        if attempt:
            log.info("Kafka broker at %s is up", settings.bootstrap_servers)
        return topics
    return None


def check_feedback_partitions(
    settings: Settings, existing: Mapping[str, int], changelogs: Iterable[str]
) -> None:
    """The feedback join writes each event's table entry to the changelog partition of the event's
    own partition, so the tagged and feedback topics and the join's ``changelogs`` must all have
    ``STREAM_TAGGER_PARTITIONS`` partitions: an event of a partition a changelog lacks fails in Faust's
    producer, outside any handler, and again at every restart. Topics not created yet are created
    with that count."""
    for topic in (settings.topic_tagged, settings.topic_feedback, *changelogs):
        count = existing.get(topic)
        if count is not None and count != settings.partitions:
            raise TopicsMismatch(
                f"topic {topic} has {count} partitions, but STREAM_TAGGER_PARTITIONS is "
                f"{settings.partitions}: the feedback join needs the tagged and feedback topics and its "
                "tables' changelogs to have STREAM_TAGGER_PARTITIONS partitions each"
            )


def ensure_topics(settings: Settings, existing: Collection[str]) -> list[str]:
    """Create the configured topics that do not exist yet; returns the names created.

    Two workers starting together may both try: "already exists" counts as success. Any other refusal
    of the broker is ``BrokerRefused``, one line naming the topic and, where it helps, the settings.
    """
    admin = AdminClient(admin_config(settings))
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
            error = exc.args[0]
            if error.code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise BrokerRefused(
                f"cannot create topic {name}: {error.str()}{_CREATE_HINTS.get(error.code(), '')}"
            ) from exc
    if created:
        log.info(
            "created topics %s with %d partitions, replication factor %d%s",
            ", ".join(created),
            settings.partitions,
            settings.replication_factor,
            f", min.insync.replicas {settings.min_insync_replicas}" if config else "",
        )
    return created
