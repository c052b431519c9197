"""/healthz, /ready and /metrics of both processes in every phase, and SIGTERM at any of them.

The HTTP server answers from the process's first second, before the model loads and while the broker
does not answer; /ready waits for partitions. Faust's own web server (and its table views) is off.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from stream_tagger.kafka.embedded_broker import free_port
from stream_tagger.settings import Settings
from tests.conftest import MODELS
from tests.integration.helpers import WORKER_COMMAND, WorkerProcess

pytestmark = pytest.mark.integration

COMMANDS = {
    "worker": WORKER_COMMAND,
    "feedback-worker": [WORKER_COMMAND[0], "feedback-worker"],
}


def unreachable_broker() -> Settings:
    """Settings whose broker address is a closed port: the start-up waits for it, and nothing else."""
    return Settings(
        bootstrap_servers=f"127.0.0.1:{free_port()}",
        model_dir=MODELS / "current",
        broker_retry_seconds=0.5,
        web_port=free_port(),
    )


def wait_for_answer(process: WorkerProcess, path: str, timeout: float = 30.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        status, body = process.get(path)
        if status:
            return status, body
        assert process.alive, process.output()[-3000:]
        assert time.monotonic() < deadline, f"nothing answered {path} within {timeout:.0f}s"
        time.sleep(0.05)


@pytest.mark.parametrize("command", COMMANDS)
def test_healthz_answers_while_the_broker_is_unreachable_and_sigterm_exits_0(
    command: str, tmp_path: Path
) -> None:
    with WorkerProcess(unreachable_broker(), tmp_path / "out.log", COMMANDS[command]) as process:
        status, body = wait_for_answer(process, "/healthz")
        # Up before the first attempt to reach the broker ends (its metadata request waits seconds).
        assert "Kafka broker unreachable" not in process.output()
        assert status == 200 and body.endswith(": alive"), body
        process.wait_for_output("Kafka broker unreachable at 127.0.0.1:")
        assert process.get("/healthz") == (200, "waiting for broker: alive")
        assert process.get("/ready") == (503, "not ready: waiting for broker")
        assert "process_resident_memory_bytes" in process.get("/metrics")[1]
        assert process.terminate() == 0
    assert "SIGTERM while waiting for broker: stopped before start-up finished" in process.output()
    assert "Traceback" not in process.output()


def test_the_broker_wait_limit_ends_the_start_up_in_one_line_and_exit_1(tmp_path: Path) -> None:
    settings = unreachable_broker().model_copy(update={"broker_wait_limit_seconds": 2.0})
    process = WorkerProcess(settings, tmp_path / "out.log").start()
    assert process.wait_exit(60) == 1
    errors = [line for line in process.output().splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "no Kafka broker answered at 127.0.0.1:" in errors[0], process.output()
    assert "within 2s" in errors[0]
    assert "Traceback" not in process.output()


def test_ready_only_once_partitions_are_assigned_with_the_phase_in_healthz(
    settings: Settings, tmp_path: Path
) -> None:
    settings = settings.model_copy(update={"log_format": "json"})
    seen: list[tuple[str, int]] = []  # (healthz body, /ready status asked just before) in order
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        wait_for_answer(worker, "/healthz")
        deadline = time.monotonic() + 90
        while not seen or seen[-1][1] != 200:
            assert worker.alive and time.monotonic() < deadline, worker.output()[-3000:]
            ready = worker.get("/ready")[0]
            seen.append((worker.get("/healthz")[1], ready))
            time.sleep(0.05)
        assert worker.get("/ready") == (200, f"model loaded, {settings.partitions} partition(s) assigned")
        assert worker.metric("stream_tagger_kafka_assigned_partitions") == settings.partitions
        assert worker.metric("stream_tagger_kafka_rebalances_total", {"event": "assigned"}) >= 1
        assert worker.get("/table")[0] == 404  # Faust's views are not served
        assert worker.terminate() == 0
    phases = [body.split(":")[0] for body, _ in seen]
    assert {"joining", "running"} <= set(phases), phases
    assert all(phase == "running" for phase, (_, ready) in zip(phases, seen, strict=True) if ready == 200)
    assert all(ready == 503 for phase, (_, ready) in zip(phases, seen, strict=True) if phase != "running")
    # Every line of the run, Faust's and librdkafka's included, is one JSON object.
    records = [json.loads(line) for line in worker.output().splitlines() if line.strip()]
    assert {"stream_tagger.worker", "stream_tagger.worker.hot_path"} <= {r["logger"] for r in records}
    assert any(r["logger"].startswith(("faust", "mode")) for r in records)
    assert any(r["message"].startswith("worker up: ") for r in records)


def test_the_feedback_worker_exports_its_own_metrics_and_serves_no_table(
    settings: Settings, tmp_path: Path
) -> None:
    with WorkerProcess(settings, tmp_path / "feedback.log", COMMANDS["feedback-worker"]) as feedback:
        feedback.wait_ready()
        assert feedback.get("/healthz") == (200, "running: ok")
        body = feedback.get("/metrics")[1]
        assert "# TYPE stream_tagger_feedback_total counter" in body
        assert "# TYPE process_open_fds gauge" in body
        assert "stream_tagger_events_processed_total" not in body  # the worker's, not its own
        for path in ("/table", "/table/predictions", "/router", "/"):
            assert feedback.get(path)[0] == 404, path
        assert feedback.terminate() == 0
    assert "feedback worker up: " in feedback.output()
