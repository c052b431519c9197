"""`stream-tagger demo` end to end, as a user runs it: a subprocess with its own broker, worker and
feedback worker."""

from __future__ import annotations

import csv
import os
import queue
import signal
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path

import msgspec
import pytest

from stream_tagger.tools.demo import DemoSummary
from tests.conftest import DATASET, MODELS

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("stream-tagger"))


def small_dataset(path: Path, rows: int) -> Path:
    with DATASET.open(newline="", encoding="utf-8") as src:
        header_and_rows = [row for _, row in zip(range(rows + 1), csv.reader(src), strict=False)]
    with path.open("w", newline="", encoding="utf-8") as dst:
        csv.writer(dst).writerows(header_and_rows)
    return path


def lines_of(stream: object) -> queue.Queue[str]:
    """The stream's lines, read in a thread so the test can wait with a timeout."""
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        for line in stream:  # type: ignore[attr-defined]
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return lines


def wait_for_line(lines: queue.Queue[str], text: str, timeout: float = 120.0) -> list[str]:
    seen: list[str] = []
    while True:
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            output = "".join(seen)
            raise AssertionError(f"{text!r} not printed within {timeout}s; output:\n{output}") from None
        seen.append(line)
        if text in line:
            return seen


def test_demo_accounts_for_every_event_and_leaves_no_process_behind(tmp_path: Path) -> None:
    summary_path = tmp_path / "summary.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAM_TAGGER_")}
    env |= {
        "STREAM_TAGGER_MODEL_DIR": str(MODELS / "current"),
        "STREAM_TAGGER_WEB_PORT": "0",
        "COLUMNS": "200",
    }
    data = small_dataset(tmp_path / "small.csv", 30)
    command = [
        CLI,
        "demo",
        "--events",
        "60",
        "--rate",
        "0",
        "--data",
        str(data),
        "--summary-json",
        str(summary_path),
        "--keep-running",
    ]
    proc = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    try:
        output = wait_for_line(lines_of(proc.stderr), "Ctrl-C stops them all")
        urls = [line.split("metrics ")[1].strip() for line in output if "metrics http" in line]
        worker_url, feedback_url = urls
        with urllib.request.urlopen(worker_url, timeout=5) as response:
            assert b"stream_tagger_events_processed_total" in response.read()
        # The feedback loop's own process answers on its own port.
        assert feedback_url != worker_url
        with urllib.request.urlopen(feedback_url, timeout=5) as response:
            assert b"stream_tagger_feedback_total" in response.read()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0, "".join(output)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    summary = msgspec.json.decode(summary_path.read_bytes(), type=DemoSummary)
    assert summary.produced == 60
    assert summary.missing == 0
    assert summary.tagged + summary.review + summary.dead_letter == summary.produced
    assert summary.dead_letter == 5, "one malformed event per dead-letter reason"
    assert summary.accounted
    for pid in (summary.broker_pid, summary.worker_pid, summary.feedback_worker_pid):
        assert pid is not None
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
