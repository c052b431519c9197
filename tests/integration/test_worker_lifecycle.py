"""Start-up and shutdown: broker not up yet, unusable model, graceful SIGTERM."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from stream_tagger.kafka.local_cluster import LocalKafka
from stream_tagger.model.versions import MODEL_FILE, resolve
from stream_tagger.settings import Settings
from tests.conftest import start_kafka
from tests.integration.helpers import (
    WorkerProcess,
    committed_total,
    drain,
    has_keys,
    produce,
    read_all,
    valid_events,
)

pytestmark = pytest.mark.integration


def test_worker_waits_for_the_broker_and_connects_when_it_comes_up(
    new_kafka: Callable[[int], LocalKafka], settings: Settings, tmp_path: Path
) -> None:
    kafka = new_kafka(1)  # its address is known; it is not started yet
    address = kafka.bootstrap_servers
    settings = settings.model_copy(update={"bootstrap_servers": address, "broker_retry_seconds": 0.5})
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_for_output(f"Kafka broker unreachable at {address}")
        start_kafka(kafka)
        worker.wait_ready()
        events = valid_events(50, prefix="late")
        produce(settings, events)
        tagged = drain(settings, settings.topic_tagged, has_keys(len(events)))
        assert set(tagged) == {key for key, _ in events}
        assert worker.terminate() == 0
    assert f"Kafka broker at {address} is up" in worker.output()


def test_missing_model_stops_start_up_naming_the_path(settings: Settings, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    worker = WorkerProcess(
        settings.model_copy(update={"model_dir": missing}), tmp_path / "worker.log"
    ).start()
    assert worker.wait_exit() != 0
    assert str(missing) in worker.output().replace("\n", "")


def test_corrupt_model_stops_start_up_naming_the_file(settings: Settings, tmp_path: Path) -> None:
    version = tmp_path / "broken"
    shutil.copytree(resolve(settings.model_dir), version)
    (version / MODEL_FILE).write_bytes(b"this is not an onnx graph")
    worker = WorkerProcess(
        settings.model_copy(update={"model_dir": version}), tmp_path / "worker.log"
    ).start()
    assert worker.wait_exit() != 0
    assert str(version / MODEL_FILE) in worker.output().replace("\n", "")


def test_sigterm_finishes_the_in_flight_batch_commits_and_exits_0(settings: Settings, tmp_path: Path) -> None:
    events = valid_events(20_000, prefix="term")
    produce(settings, events)
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        worker.wait_processed(1_000)
        assert worker.terminate() == 0
    assert "hot path stopped after committing its last batch" in worker.output()
    # Exactly the inputs whose outputs were published are committed: nothing in flight was dropped,
    # nothing published is left uncommitted to be re-processed.
    published = read_all(settings, settings.topic_tagged)
    assert 1_000 <= len(published) == committed_total(settings)
    assert all(len(values) == 1 for values in published.values())


def test_outputs_the_broker_never_acks_stop_the_hot_path_loudly(
    new_kafka: Callable[[int], LocalKafka], settings: Settings, tmp_path: Path
) -> None:
    """Never skip an unacked output. (The process then exits 1, but only after Faust's own consumer
    gives up on the dead broker, ~60 s; the test stops at the loud stop and the failed /healthz.)"""
    kafka = start_kafka(new_kafka(1))
    # One event per batch, a broker round trip each: the backlog lasts tens of seconds, so the worker
    # is still producing when the broker dies; in full batches it can tag all of it before the kill.
    settings = settings.model_copy(
        update={
            "bootstrap_servers": kafka.bootstrap_servers,
            "delivery_timeout_ms": 1_000,
            "batch_max_size": 1,
        }
    )
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        produce(settings, valid_events(20_000, prefix="lost"))
        worker.wait_processed(500)
        kafka.kill(1)  # prefetched events keep the hot path producing into the void
        worker.wait_for_output("not acknowledged by the broker", timeout=60)
        status, body = worker.get("/healthz")
        assert (status, body) == (503, "stopping: hot path failed (the log says why)")
        worker.kill()
    assert "offsets are not committed and will be re-processed" in worker.output()
