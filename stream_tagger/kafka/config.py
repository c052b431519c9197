"""librdkafka configuration of the hot path's consumer and producer: the delivery guarantees live here.

At-least-once comes from three settings working together: offsets are stored by hand
(``enable.auto.offset.store=false``) only after the broker acked every output of a batch, and the
auto-committer only ever commits stored offsets; the producer is idempotent with ``acks=all``, so
its own retries never duplicate or reorder an output.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from stream_tagger.settings import Settings

# librdkafka's own log lines (every failed connection attempt, say) go through logging instead of raw
# stderr, so a command can report the one line that matters. Every client of the package uses it.
KAFKA_LOG = logging.getLogger("stream_tagger.librdkafka")


def consumer_config(
    settings: Settings,
    on_stats: Callable[[str], None] | None = None,
    on_error: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    conf: dict[str, Any] = {
        **settings.kafka_common(),
        "group.id": settings.consumer_group,
        "enable.auto.commit": True,
        "auto.commit.interval.ms": 1_000,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": settings.session_timeout_ms,
        "heartbeat.interval.ms": settings.heartbeat_interval_ms,
        "fetch.wait.max.ms": settings.fetch_wait_max_ms,
        "queued.max.messages.kbytes": settings.consumer_prefetch_kbytes,
        "queued.min.messages": settings.consumer_prefetch_messages,
        "fetch.queue.backoff.ms": settings.fetch_queue_backoff_ms,
        "fetch.max.bytes": settings.fetch_max_kbytes * 1024,
        "max.partition.fetch.bytes": settings.fetch_partition_max_kbytes * 1024,
        "logger": KAFKA_LOG,
    }
    if settings.processing_guarantee == "exactly_once":
        # Offsets are committed inside each batch's transaction, never by the consumer itself.
        conf["enable.auto.commit"] = False
        conf["isolation.level"] = "read_committed"
    if on_stats is not None:
        conf["statistics.interval.ms"] = settings.lag_interval_ms
        conf["stats_cb"] = on_stats
    if on_error is not None:
        conf["error_cb"] = on_error
    return conf


def producer_config(
    settings: Settings, on_delivery: Callable[[Any, Any], None], on_error: Callable[[Any], None] | None = None
) -> dict[str, Any]:
    conf: dict[str, Any] = {
        **settings.kafka_common(),
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": settings.linger_ms,
        "message.timeout.ms": settings.delivery_timeout_ms,
        "on_delivery": on_delivery,
        # Success is known from flush() returning with no error reported; a Python callback per
        # acked output would cost ~1 µs each on the hot path.
        "delivery.report.only.error": True,
        "logger": KAFKA_LOG,
    }
    if settings.processing_guarantee == "exactly_once":
        own_id = f"{settings.consumer_group}-{uuid.uuid4().hex}"
        conf["transactional.id"] = settings.transactional_id or own_id
        conf["transaction.timeout.ms"] = settings.transaction_timeout_ms
        # librdkafka refuses a message timeout longer than the transaction's.
        conf["message.timeout.ms"] = min(settings.delivery_timeout_ms, settings.transaction_timeout_ms)
    if on_error is not None:
        conf["error_cb"] = on_error
    return conf
