"""processing_guarantee=exactly_once on Apache Kafka: a SIGKILL mid-stream, and a read_committed reader
still sees every id exactly once on the tagged and dead-letter topics."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_tagger.settings import Settings
from tests.integration.helpers import (
    Tally,
    WorkerProcess,
    drain,
    has_keys,
    kill_mid_stream,
    malformed_events,
    pin_model,
    produce,
    read_all,
    valid_events,
)

pytestmark = pytest.mark.integration


def test_sigkill_mid_stream_then_restart_every_id_exactly_once(settings: Settings, tmp_path: Path) -> None:
    settings = pin_model(settings, tmp_path).model_copy(
        update={
            "processing_guarantee": "exactly_once",
            # Both lives share it, so the second aborts the transaction the first left open at once.
            "transactional_id": f"{settings.consumer_group}-worker-0",
            "batch_max_size": 256,  # many transactions before the kill
        }
    )
    events = valid_events(20_000, prefix="eos")
    bad = malformed_events(50, settings)
    produce(settings, [*events, *((key, value) for key, value, _reason in bad)])

    later = kill_mid_stream(settings, tmp_path / "first.log", processed=3_000)
    events += later

    with WorkerProcess(settings, tmp_path / "second.log") as second:
        second.wait_ready()
        drain(settings, settings.topic_tagged, has_keys(len(events)), timeout=120)
        drain(settings, settings.topic_dead_letter, has_keys(len(bad)), timeout=60)
        second.wait_processed(len(later))  # counted once committed, which may trail what the drains saw
        assert second.terminate() == 0

    # read_all is a read_committed reader (librdkafka's default isolation level).
    for topic, sent in (
        (settings.topic_tagged, [key for key, _ in events]),
        (settings.topic_dead_letter, [key for key, _value, _reason in bad]),
    ):
        tally = Tally(frozenset(sent), read_all(settings, topic))
        assert not tally.missing and not tally.unexpected and tally.duplicates == 0, f"{topic}: {tally}"
