"""The committed corpus of nasty messages, sent to a live worker on Apache Kafka among valid posts: the
worker keeps running, every message ends as a tagged event or a dead letter, and a restart finds nothing
left to choke on."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import KafkaError

from stream_tagger.events import DeadLetter
from stream_tagger.settings import Settings
from stream_tagger.tools.produce import make_producer
from stream_tagger.worker.decode import DEAD_LETTER_MAX_KEY_BYTES
from tests.integration.helpers import WorkerProcess, committed_total, drain, has_keys, produce, valid_events

pytestmark = pytest.mark.integration

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "raw"


def test_the_nasty_corpus_among_valid_posts_gets_one_outcome_each_and_the_worker_lives(
    settings: Settings, tmp_path: Path
) -> None:
    nasty = [(f"nasty-{path.stem}".encode(), path.read_bytes()) for path in sorted(CORPUS.iterdir())]
    valid = valid_events(2_000, prefix="ok")
    mixed = valid + nasty
    random.Random(7).shuffle(mixed)
    produce(settings, mixed)

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        worker.wait_processed(len(mixed), timeout=120)
        assert worker.get("/healthz")[0] == 200
        internal = worker.metric("stream_tagger_dead_letters_total", {"reason": "internal_error"})
        assert worker.terminate() == 0
    assert internal == 0

    # A nasty message that is still a valid post (odd text, an id at the length limit) is tagged under
    # its own id; the rest are dead letters under their message key. Each comes out exactly once.
    valid_keys = {key for key, _ in valid}
    tagged = drain(settings, settings.topic_tagged, has_keys(len(valid)), timeout=30)
    letters = drain(settings, settings.topic_dead_letter, lambda seen: len(seen) >= 1, timeout=30)
    tagged_nasty = sum(len(values) for key, values in tagged.items() if key not in valid_keys)
    dead = [msgspec.json.decode(value, type=DeadLetter) for values in letters.values() for value in values]
    assert all(len(tagged[key]) == 1 for key in valid_keys)
    assert not [letter for letter in dead if letter.reason == "internal_error"]
    assert len(dead) + tagged_nasty == len(nasty), (len(dead), tagged_nasty, len(nasty))
    assert committed_total(settings) == len(mixed)

    # Restarted on the same group: nothing left to read, nothing to choke on. A post sent to each
    # partition after the restart is read after anything left there: once all are tagged, the worker
    # has read all it was going to, and it read only them.
    with WorkerProcess(settings, tmp_path / "again.log") as again:
        again.wait_ready()
        producer, failed = make_producer(settings), []

        def delivered(error: KafkaError | None, _message: object) -> None:
            if error is not None:
                failed.append(error)

        markers = valid_events(settings.partitions, prefix="again")
        for partition, (key, value) in enumerate(markers):
            producer.produce(settings.topic_raw, value, key, partition=partition, on_delivery=delivered)
        assert producer.flush(30) == 0 and not failed, failed
        drain(settings, settings.topic_tagged, lambda seen: all(key in seen for key, _ in markers))
        consumed = again.metric("stream_tagger_events_consumed_total", {"topic": settings.topic_raw})
        assert again.terminate() == 0
    assert consumed == len(markers)


def test_a_bad_message_with_a_key_near_the_brokers_limit_is_dead_lettered_and_the_worker_lives(
    settings: Settings, tmp_path: Path
) -> None:
    # The broker takes a 600 kB key; a dead letter keyed by it, carrying it in base64 too, would be
    # refused by the worker's producer on every restart.
    key = b"k" * 600_000
    items = [*valid_events(20, prefix="ok"), (key, b"not json")]
    produce(settings, items)

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        worker.wait_processed(len(items), timeout=60)
        assert worker.terminate() == 0

    letters = drain(settings, settings.topic_dead_letter, has_keys(1), timeout=30)
    [(record_key, [value])] = letters.items()
    assert record_key == b"sha256:" + hashlib.sha256(key).hexdigest().encode()
    letter = msgspec.json.decode(value, type=DeadLetter)
    assert (letter.reason, letter.original) == ("not_json", b"not json")
    assert letter.original_key == key[:DEAD_LETTER_MAX_KEY_BYTES]
    assert committed_total(settings) == len(items)
