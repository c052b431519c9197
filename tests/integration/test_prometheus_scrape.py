"""A real Prometheus scrapes a real worker: what an operator's PromQL sees after N events.

The unit tests prove the names in deploy/ match the worker's registry; this proves the exposition
itself is scrapeable by Prometheus and that the counts add up (every input counted once, every
processed input in the latency histogram) once the data went through Prometheus's own parser.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from stream_tagger.kafka.embedded_broker import free_port
from stream_tagger.settings import Settings
from tests.integration.helpers import WorkerProcess, produce, valid_events
from tests.unit.deploy_support import require_tool

pytestmark = pytest.mark.integration

EVENTS = 200


@contextmanager
def running_prometheus(binary: str, target: str, workdir: Path) -> Iterator[str]:
    """Prometheus scraping ``target`` every second, with its own config and storage; yields its URL."""
    config = workdir / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "stream-tagger", "static_configs": [{"targets": [target]}]}],
            }
        )
    )
    address = f"127.0.0.1:{free_port()}"
    with (workdir / "prometheus.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address={address}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield f"http://{address}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def instant_query(base: str, expr: str) -> list[dict]:
    """Result vector of a PromQL instant query; [] while Prometheus is still starting."""
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}"
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body = json.load(response)
    except OSError:
        return []
    assert body["status"] == "success", body
    return body["data"]["result"]


def scalar_when(base: str, expr: str, done: float, timeout: float = 30.0) -> float:
    """Value of a one-element query once it equals ``done`` (scrapes lag); the last value seen otherwise."""
    value = float("nan")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = instant_query(base, expr)
        if result:
            value = float(result[0]["value"][1])
            if value == done:
                break
        time.sleep(0.25)
    return value


def test_prometheus_scrapes_the_worker_after_n_events(settings: Settings, tmp_path: Path) -> None:
    binary = require_tool("prometheus")
    worker = WorkerProcess(settings, tmp_path / "worker.log")  # picks its web port now
    # Prometheus first: its start-up (about 5 s before the first scrape) overlaps the worker's.
    with (
        running_prometheus(binary, f"127.0.0.1:{worker.settings.web_port}", tmp_path) as prometheus,
        worker,
    ):
        worker.wait_ready()
        produce(settings, valid_events(EVENTS, "scrape"))
        worker.wait_processed(EVENTS)
        processed = scalar_when(prometheus, "sum(stream_tagger_events_processed_total)", EVENTS)
        latency_count = scalar_when(prometheus, "sum(stream_tagger_end_to_end_latency_seconds_count)", EVENTS)
        p99 = instant_query(
            prometheus,
            "histogram_quantile(0.99, sum by (le) (stream_tagger_end_to_end_latency_seconds_bucket))",
        )
        up = instant_query(prometheus, 'up{job="stream-tagger"}')

    assert processed == EVENTS
    assert latency_count == EVENTS
    assert 0 < float(p99[0]["value"][1]) < 10, "p99 must fall inside the histogram's finite buckets"
    assert up[0]["value"][1] == "1"
