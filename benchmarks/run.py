"""Benchmark: our worker against the pipelines a user would pick instead, side by side in one run.

    .venv/bin/python benchmarks/run.py [--broker kafka|tansu] [--quick] [--events N] [--only ...]
        [--batch-sizes 256,2048] [--profile [--profile-load 40000]] [--report-only]

Everything runs on one broker on loopback: by default Apache Kafka (``stream_tagger.kafka.local_cluster``,
one KRaft node, bounded heap, data on disk), or the embedded Tansu with ``--broker tansu``. Every pipeline
gets the same workload: raw JSON events resampled from the bundled dataset with unique ids, on a fresh
input topic of 4 partitions. Each pipeline runs as its own process(es) and is measured from the outside
(``harness.py``):

- ``passthrough``: a bare confluent-kafka consume -> produce loop, the ceiling of this machine;
- ``quix``: a Quix Streams app passing the JSON through (``quix/app.py``, its own virtualenv);
- ``sklearn``: a confluent-kafka loop calling scikit-learn ``predict_proba`` once per consumed batch
  with a word + character TF-IDF and logistic regression (``baselines.py``);
- ``worker``: ``stream-tagger worker`` as shipped, serving the model ``models/current`` named at start;
- on request (``--only``): ``worker-split`` (the worker beside ``stream-tagger feedback-worker``) and
  ``faust`` (a Faust agent that only iterates its stream).

Measured:

- saturation: N events pre-produced, the pipeline started, events/s from its first output to its last
  as the output reader receives them. The fast pipelines run ``saturation_runs`` times, interleaved round
  by round so that a load change on a shared machine hits each alike; the median is reported. The worker
  also runs as 2 processes in one group, draining 2N, timed from when the group settled with both
  holding partitions (``GroupWatch``). Slow pipelines run once, time-capped;
- the worker's saturation under live load: offered its drain rate open-loop, the rate its outputs come
  out at with the load generator and the reader on the same cores, the median of ``latency_runs``;
- latency of the worker and of the passthrough (as reference) at 1,000 events/s and at 80% of the
  worker's saturation under live load, offered open-loop after a ramp at that rate: end-to-end
  p50/p99/p99.9, the run with the median p99 of ``latency_runs``, interleaved round by round like the
  saturation runs;
- peak RSS of every worker process in every run; the worker's rate as a ratio to Quix and as a share of
  the passthrough, and the targets, PASS or FAIL.

Writes ``benchmarks/results/latest.json`` (with the date, the machine, the versions and the model served),
``latest.png`` and ``latest.md`` and prints the tables. ``--profile`` records the worker with py-spy
instead (``profile_worker.py``); ``--report-only`` redraws everything from ``latest.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
import zipfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import msgspec
from baselines import train_user_model
from confluent_kafka import KafkaException
from harness import (
    CpuSample,
    GroupWatch,
    Processes,
    Sink,
    collector_paused,
    create_topics,
    delete_topics,
    die_with_parent,
    new_producer,
    percentiles,
    produce_bulk,
    produce_paced,
)
from profile_worker import find_pyspy, profile
from report import (
    check_targets,
    print_ab,
    print_report,
    ratios,
    write_ab_markdown,
    write_json,
    write_markdown,
    write_plot,
)

from stream_tagger.kafka.embedded_broker import EmbeddedBroker, free_port
from stream_tagger.model.versions import ModelLoadError, resolve
from stream_tagger.tools.sources import BUNDLED_DATASET, dataset_events

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
QUIX_DIR = REPO / "benchmarks" / "quix"
QUIX_PYTHON = QUIX_DIR / ".venv" / "bin" / "python"
PARTITIONS = 4
# The broker's heap (fixed, see LocalKafka), bounded so that the JVM, two workers and the harness fit
# the 2-core, shared machine together.
KAFKA_HEAP_MB = 512
#: Pipelines run by default, in table order.
PIPELINES = ("passthrough", "quix", "sklearn", "worker")
#: Pipelines run only when named with ``--only``.
OPTIONAL = ("worker-split", "faust")
#: Our worker alone (tagging), and beside `stream-tagger feedback-worker`, which reads every tagged event
#: back (CPU and RSS of both counted). The feedback loop is kept out of the worker process explicitly.
OURS = ("worker", "worker-split")
#: Time-capped, run once: far slower than the rest, they would take minutes to drain N events.
SLOW = ("sklearn", "faust")
#: Measured at offered loads as well: the worker, and the passthrough as what the transport alone costs.
LATENCY = ("worker", "worker-split", "passthrough")
#: Warm-up events per partition before a paced run: the pipeline has joined and loaded when they are out.
WARMUP_PER_PARTITION = 25
STARTUP_TIMEOUT_S = 120.0
# Up to this offered rate the harness's reader also reads the input topic (the floor): above it, reading
# twice the messages would take CPU from the pipeline on a 2-core machine.
FLOOR_MAX_RATE = 2_000.0
#: ``--profile``'s third view: a load the worker keeps up with only just on this 2-core machine.
PROFILE_LOAD_PER_S = 40_000.0
SESSION_TIMEOUT_MS = 6_000  # Tansu's group join waits about half of it (see tests/conftest.py)


@dataclass(frozen=True)
class Mode:
    """How long and how wide a run is: the full run, or ``--quick`` to check the harness in minutes."""

    events: int
    load_seconds: float  # duration of each paced run, measured
    ramp_seconds: float  # offered at the run's rate before the measured events, not measured
    slow_seconds: float  # cap on a saturation run of a slow pipeline
    cap_seconds: float  # cap on any other saturation run: throughput is counted on what came out by then
    # Saturation runs of the fast pipelines, the median reported: on this shared VM single runs of one
    # build spread by ±15% within minutes.
    saturation_runs: int
    latency_runs: int = 1  # runs at each offered load, round by round; the median by p99 is reported
    fixed_loads: tuple[float, ...] = (1_000.0,)
    worker_fractions: tuple[float, ...] = (0.8,)


FULL = Mode(
    events=200_000,
    load_seconds=20.0,
    ramp_seconds=5.0,
    slow_seconds=30.0,
    cap_seconds=120.0,
    saturation_runs=5,
    latency_runs=3,
)
QUICK = Mode(
    events=30_000, load_seconds=5.0, ramp_seconds=1.0, slow_seconds=10.0, cap_seconds=30.0, saturation_runs=1
)


@dataclass
class Bench:
    """What every run shares: the broker, a scratch folder, the user's model, the model we serve."""

    bootstrap: str
    broker_pid: int | None
    scratch: Path
    user_model: Path
    code: Code | None  # what the workers run unless a run names other code (A/B runs)
    mode: Mode
    _seq: Iterator[int] = field(default_factory=itertools.count)

    def run_id(self, kind: str) -> str:
        return f"{kind}{next(self._seq)}-{uuid.uuid4().hex[:6]}"


@dataclass(frozen=True)
class RunTopics:
    raw: str
    outputs: tuple[str, ...]  # where the pipeline writes one message (or more) per input key
    extra: tuple[str, ...] = ()  # topics the pipeline needs to exist but does not answer on

    @property
    def all(self) -> list[str]:
        return [self.raw, *self.outputs, *self.extra]


def topics_for(kind: str, run_id: str) -> RunTopics:
    if kind in OURS:
        return RunTopics(
            f"{run_id}-raw",
            (f"{run_id}-tagged", f"{run_id}-review", f"{run_id}-dlq"),
            (f"{run_id}-feedback", f"{run_id}-shadow"),
        )
    return RunTopics(f"{run_id}-raw", (f"{run_id}-out",))


def worker_env(
    code: Code | None, bench: Bench, topics: RunTopics, group: str, batch: int | None
) -> dict[str, str]:
    if code is None:
        raise ValueError("no code to run: prepare_code() makes it when a worker is selected")
    tagged, review, dlq = topics.outputs
    feedback, shadow = topics.extra
    env = {
        "STREAM_TAGGER_BOOTSTRAP_SERVERS": bench.bootstrap,
        "STREAM_TAGGER_CONSUMER_GROUP": group,
        "STREAM_TAGGER_TOPIC_RAW": topics.raw,
        "STREAM_TAGGER_TOPIC_TAGGED": tagged,
        "STREAM_TAGGER_TOPIC_REVIEW": review,
        "STREAM_TAGGER_TOPIC_DEAD_LETTER": dlq,
        "STREAM_TAGGER_TOPIC_FEEDBACK": feedback,
        "STREAM_TAGGER_TOPIC_SHADOW_DISAGREEMENTS": shadow,
        "STREAM_TAGGER_PARTITIONS": str(PARTITIONS),
        # One broker: the durable defaults (3 replicas, 2 in sync) cannot be met, for Faust's own topics.
        "STREAM_TAGGER_REPLICATION_FACTOR": "1",
        "STREAM_TAGGER_MIN_INSYNC_REPLICAS": "1",
        "STREAM_TAGGER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "STREAM_TAGGER_HEARTBEAT_INTERVAL_MS": "500",
        "STREAM_TAGGER_MODEL_DIR": str(code.model_dir),
        "STREAM_TAGGER_WEB_HOST": "127.0.0.1",
        "STREAM_TAGGER_WEB_PORT": str(free_port()),
        "STREAM_TAGGER_LOG_LEVEL": "WARNING",
        "STREAM_TAGGER_FEEDBACK_IN_WORKER": "false",
        **code.env,
    }
    if batch is not None:
        env["STREAM_TAGGER_BATCH_MAX_SIZE"] = str(batch)
    return env


def commands_for(
    kind: str, bench: Bench, topics: RunTopics, group: str, seconds: float, procs: int
) -> list[list[str]]:
    """One command per process: ``procs`` copies of the pipeline, plus the feedback worker beside ours."""
    if kind in OURS:
        cli = str(Path(sys.executable).parent / "stream-tagger")
        return [[cli, "worker"]] * procs + ([[cli, "feedback-worker"]] if kind == "worker-split" else [])
    common = ["--bootstrap", bench.bootstrap, "--input", topics.raw, "--output", topics.outputs[0]]
    if kind == "quix":
        app = [str(QUIX_PYTHON), str(QUIX_DIR / "app.py"), *common, "--group", group]
        return [[*app, "--state-dir", str(bench.scratch / f"quix-state-{group}-{i}")] for i in range(procs)]
    cmd = [sys.executable, str(REPO / "benchmarks" / "baselines.py"), kind, *common]
    cmd += ["--group", group, "--seconds", str(seconds)]
    return [[*cmd, "--model", str(bench.user_model)] if kind == "sklearn" else cmd] * procs


def launch(
    kind: str,
    bench: Bench,
    topics: RunTopics,
    group: str,
    *,
    procs: int = 1,
    batch: int | None = None,
    seconds: float = 600.0,
    wrap: list[str] | None = None,
    code: Code | None = None,
) -> Processes:
    """Start ``procs`` processes of one pipeline in one consumer group, each logging to the scratch folder.
    Workers run ``code``, or the bench's."""
    started, logs, ports = [], [], []
    for i, command in enumerate(commands_for(kind, bench, topics, group, seconds, procs)):
        # Each worker gets its own env: its own free web port.
        own = worker_env(code or bench.code, bench, topics, group, batch) if kind in OURS else {}
        if own and command[-1] == "worker":
            ports.append(int(own["STREAM_TAGGER_WEB_PORT"]))
        env = {**os.environ, **own}
        log = bench.scratch / f"{group}-{i}.log"
        with log.open("wb") as out:
            started.append(
                subprocess.Popen(
                    [*(wrap or []), *command],
                    cwd=REPO,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    preexec_fn=die_with_parent,
                )
            )
        logs.append(log)
    return Processes(started, logs, bench.broker_pid, web_ports=ports)


def encoded(n: int, prefix: str) -> list[tuple[bytes, bytes]]:
    return [(e.id.encode(), msgspec.json.encode(e)) for e in dataset_events(n, id_prefix=prefix)]


@contextmanager
def run_topics(bench: Bench, kind: str) -> Iterator[tuple[str, RunTopics]]:
    """Fresh topics for one run, deleted after it; after Ctrl-C the broker goes down with them instead."""
    run_id = bench.run_id(kind)
    topics = topics_for(kind, run_id)
    create_topics(bench.bootstrap, topics.all, PARTITIONS)
    try:
        yield run_id, topics
    except Exception:
        delete_topics(bench.bootstrap, topics.all)
        raise
    delete_topics(bench.bootstrap, topics.all)


class PipelineFailed(RuntimeError):
    """A pipeline did not start or died; carries the end of its log."""


def _fail(kind: str, what: str, processes: Processes) -> PipelineFailed:
    """The first line says what the log ended with (a traceback's last line names the exception)."""
    logs = processes.stop()
    last = next((line for log in logs for line in reversed(log.splitlines()) if line.strip()), "(empty log)")
    return PipelineFailed(f"{kind}: {what}: {last.strip()}; end of its log:\n" + "\n---\n".join(logs))


_LIVE_MODEL = re.compile(r'^stream_tagger_model_info\{(?=[^}]*role="live")[^}]*version="([^"]+)"', re.M)
_BATCHES = re.compile(r"^stream_tagger_batch_size_(count|sum) (\S+)$", re.M)


@dataclass
class WorkerView:
    """What the workers of a run say of themselves on /metrics, asked while they run."""

    served: list[str]  # the model version each serves, whatever was asked of them
    batches: float = 0.0  # micro-batches taken, by all of them
    batched_events: float = 0.0  # events in those batches (the warm-up's included)

    def summary(self) -> dict[str, Any]:
        """The run's fields: the versions and, once a batch was taken, the mean events per batch (how far
        the loop was from full batches: the same rate can be met by few large ones or many small)."""
        fields: dict[str, Any] = {"model_served": self.served}
        if self.batches:
            fields["events_per_batch"] = round(self.batched_events / self.batches, 1)
        return fields


def worker_view(processes: Processes) -> WorkerView:
    """``WorkerView`` from every worker of the run (``stream_tagger_model_info``, ``..._batch_size``)."""
    view = WorkerView([])
    for port in processes.web_ports:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                text = response.read().decode()
        except OSError:
            view.served.append("(no answer from /metrics)")
            continue
        view.served += _LIVE_MODEL.findall(text)
        totals = dict(_BATCHES.findall(text))
        view.batches += float(totals.get("count", 0))
        view.batched_events += float(totals.get("sum", 0))
    view.served = sorted(set(view.served))
    return view


def cpu_figures(cpu: CpuSample, events: int) -> dict[str, float]:
    """CPU per event of the pipeline over a window, and how the cores were shared in it."""
    sampled_s = max(cpu.wall, 1e-3)  # the samples around the window: the CPU figures' own span
    return {
        "cpu_us_per_event": round(cpu.pipeline / max(events, 1) * 1e6, 1),
        "cores_busy": round(cpu.pipeline / sampled_s, 2),
        # Who else had the cores: at a paced load the load generator and the reader work too, and what
        # is left idle is the headroom the pipeline had.
        "broker_cores_busy": round(cpu.broker / sampled_s, 2),
        "harness_cores_busy": round(cpu.harness / sampled_s, 2),
        "idle_cores": round(cpu.idle / sampled_s, 2),
    }


def summarize(
    kind: str,
    sent: dict[bytes, int],
    sink: Sink,
    processes: Processes,
    window_start: float | None,
    view: WorkerView,
    settled: float | None = None,
) -> dict:
    """Throughput, latency and CPU of one run, from the harness's timestamps and the process samples.
    ``settled``: when a group of several processes had every member working (``GroupWatch``); the rate
    and the CPU are then counted from there, and how much of the run came before is recorded."""
    received, latency, created = [], [], []
    for key, t_in in sent.items():
        hit = sink.seen.get(key)
        if hit is not None:
            received.append(hit[1])
            latency.append(hit[1] * 1000 - t_in)
            created.append(hit[0] - t_in)
    delivered = len(received)
    result: dict[str, Any] = {
        "sent": len(sent),
        "delivered": delivered,
        "peak_rss_mb": round(processes.peak_rss_mb, 1),
    }
    if kind in OURS:
        result |= view.summary()
    if delivered < 2:
        return result
    first, last = min(received), max(received)
    # Events out after the window opened (the rate), and events its CPU was spent on.
    after, covered = delivered - 1, delivered
    if settled is not None and first < settled < last:
        joining = sum(1 for t in received if t <= settled)
        result |= {
            "join_s": round(settled - first, 2),
            "events_during_join": joining,
            "events_per_s_from_first_output": round((delivered - 1) / max(last - first, 1e-3), 1),
        }
        first, after = settled, delivered - joining
        covered = after  # the CPU window opens at ``settled`` too
    span = max(last - first, 1e-3)
    start = first if window_start is None else window_start
    result |= {
        "events_per_s": round(after / span, 1),
        **cpu_figures(processes.cpu_between(start, last), covered),
        "latency_ms": {k: round(v, 1) for k, v in percentiles(latency).items()},
        # p50 of the first and of the last tenth sent: a rise means the pipeline fell behind the offered
        # rate during the run (a queue grew), not that each event got slower.
        "p50_first_last_tenth_ms": [
            round(percentiles(latency[: max(1, delivered // 10)])["p50"], 1),
            round(percentiles(latency[-max(1, delivered // 10) :])["p50"], 1),
        ],
    }
    if kind != "quix":  # Quix stamps its outputs with the input's timestamp: that difference is 0
        result["latency_created_ms"] = percentiles(created)
    return result


def saturation(
    bench: Bench,
    kind: str,
    *,
    procs: int = 1,
    batch: int | None = None,
    seconds: float | None = None,
    wrap: list[str] | None = None,
    code: Code | None = None,
) -> dict:
    """N events per process pre-produced, then the pipeline started: how fast does it drain them? (Each
    process as much as one alone: several are timed from their group's join, which takes a share of N.)"""
    n, limit = bench.mode.events * procs, seconds or bench.mode.cap_seconds
    load = os.getloadavg()[0]
    with run_topics(bench, kind) as (run_id, topics):
        sent = produce_bulk(bench.bootstrap, topics.raw, encoded(n, run_id))
        sink = Sink(bench.bootstrap, topics.outputs, PARTITIONS, expect=sent)
        sink.start()
        group, seconds = f"g-{run_id}", limit + 60
        with collector_paused():  # from before the pipeline starts: the collection itself is never timed
            processes = launch(
                kind, bench, topics, group, procs=procs, batch=batch, seconds=seconds, wrap=wrap, code=code
            )
            # Several processes: when their group settled (started after them: none joins that fast).
            watch = GroupWatch(bench.bootstrap, group, procs) if procs > 1 else None
            if watch is not None:
                watch.start()
            try:
                if not sink.wait_for(1, STARTUP_TIMEOUT_S, processes):
                    raise _fail(kind, "no output", processes)
                sink.wait_for(n, limit, processes)
                view = worker_view(processes)
            finally:
                sink.stop()
                processes.stop()
                if watch is not None:
                    watch.stop()
    settled = watch.settled_at if watch is not None else None
    result = summarize(kind, sent, sink, processes, None, view, settled)
    if watch is not None and "join_s" not in result:
        # Not seen settling within the drain (or the broker cannot say): timed from the first output.
        result |= {"join_s": None} | ({"group_watch_error": watch.error} if watch.error else {})
    for latency in ("latency_ms", "latency_created_ms", "p50_first_last_tenth_ms"):
        result.pop(latency, None)  # pre-produced events queue behind each other: not a latency
    return {
        "pipeline": kind,
        "procs": procs,
        "batch_max_size": batch,
        "time_capped": result["delivered"] < n,
        "load_avg_1min_before": round(load, 2),
        **result,
    }


def _events_per_s(run: dict) -> float | None:
    return run.get("events_per_s")


def _p99(run: dict) -> float | None:
    return run.get("latency_ms", {}).get("p99")


def median_of(
    runs: list[dict], value: Callable[[dict], float | None] = _events_per_s, field: str = "runs_events_per_s"
) -> dict:
    """The median run by ``value`` (events/s of saturation runs, p99 of paced ones; of an even number, the
    upper one), every run's value in ``field``, and the highest peak RSS of them all (the memory target
    must hold in every run). Failed runs are counted in ``failed_runs``."""
    valued = [(v, r) for r in runs if (v := value(r)) is not None]
    if not valued:
        return runs[-1]
    good = [r for _, r in sorted(valued, key=lambda pair: pair[0])]
    median = good[len(good) // 2]
    out = {
        **median,
        field: [v for v, _ in valued],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in good),
    }
    if len(good) < len(runs):
        out["failed_runs"] = len(runs) - len(good)
    if "model_served" in median:
        out["model_served"] = sorted({v for r in good for v in r.get("model_served", [])})
    return out


def paced(bench: Bench, kind: str, rate: float, code: Code | None = None) -> dict:
    """The pipeline running and warm, then events offered at ``rate``/s: the latency a user would see.
    The first ``ramp_seconds`` of the rate are not measured: a pipeline idle a moment before takes them to
    reach its steady state (their latency is kept apart, ``ramp_latency_ms``). At low rates the reader
    also reads the input topic: the harness's floor, which no pipeline beats."""
    # Every rate runs for load_seconds: a run cut at a number of events would last a few seconds at high
    # rates, too short to show whether the pipeline keeps up.
    n = max(100, int(rate * bench.mode.load_seconds))
    load = os.getloadavg()[0]
    with run_topics(bench, kind) as (run_id, topics):
        warm = encoded(WARMUP_PER_PARTITION * PARTITIONS, f"{run_id}w")
        ramp = encoded(int(rate * bench.mode.ramp_seconds), f"{run_id}r")
        events = encoded(n, run_id)
        floor = topics.raw if rate <= FLOOR_MAX_RATE else None
        expect = [key for key, _ in itertools.chain(warm, ramp, events)]
        sink = Sink(bench.bootstrap, topics.outputs, PARTITIONS, floor_topic=floor, expect=expect)
        sink.start()
        processes = launch(kind, bench, topics, f"g-{run_id}", seconds=STARTUP_TIMEOUT_S + 120, code=code)
        try:
            producer = new_producer(bench.bootstrap)  # warmed up too: connected, metadata known
            produce_bulk(bench.bootstrap, topics.raw, warm, PARTITIONS, producer)
            if not sink.wait_for(len(warm), STARTUP_TIMEOUT_S, processes):
                raise _fail(kind, "warm-up events did not come out", processes)
            with collector_paused():
                # One paced stream: the ramp's events first, then the measured ones without a pause.
                sent, achieved = produce_paced(bench.bootstrap, topics.raw, ramp + events, rate, producer)
                sink.wait_for(len(expect), 30.0, processes)
            view = worker_view(processes)
        finally:
            sink.stop()
            processes.stop()
    measured = {key: sent[key] for key, _ in events}
    start = min(measured.values()) / 1000  # the window opens with the first measured event's CreateTime
    result = summarize(kind, measured, sink, processes, start, view)
    result.pop("events_per_s", None)  # the offered rate, not the pipeline's
    # Outputs while the measured events were being sent, per second: the offered rate when the pipeline
    # keeps up, the most it takes while the generator and the reader run beside it when it does not.
    end = max(measured.values()) / 1000
    out = sum(1 for hit in sink.seen.values() if hit is not None and start <= hit[1] <= end)
    result["out_per_s"] = round(out / max(end - start, 1e-3), 1)
    # The same window's CPU (the figures above run on until the last output, a backlog's drain included).
    result["out_window"] = cpu_figures(processes.cpu_between(start, end), out)
    ramped = [hit[1] * 1000 - sent[key] for key, _ in ramp if (hit := sink.seen.get(key)) is not None]
    if ramped:  # the ramp's own latency: how far from steady the pipeline started
        result["ramp_latency_ms"] = {k: round(v, 1) for k, v in percentiles(ramped).items()}
    if floor:
        arrived = [hit[1] * 1000 - t_in for key, t_in in measured.items() if (hit := sink.floor.get(key))]
        result["floor_ms"] = {k: round(v, 1) for k, v in percentiles(arrived).items()}
    return {
        "pipeline": kind,
        "offered_per_s": round(rate, 1),
        "achieved_offered_per_s": round(achieved, 1),
        "load_avg_1min_before": round(load, 2),
        **result,
    }


def in_turn(items: list[T], round_: int) -> list[T]:
    """``items`` in order in even rounds, reversed in odd ones: run by run, neither side always goes first."""
    return items if round_ % 2 == 0 else items[::-1]


def _out_per_s(run: dict) -> float | None:
    return run.get("out_per_s")


def _live_rate(live: dict, log: Callable[[str], None]) -> float | None:
    """The rate the latency loads' shares are taken of, or None (logged) when no live run gave one."""
    rate = live.get("out_per_s")
    if not rate:
        log("worker: no saturation under live load, so no load that is a share of it")
    return rate


def under_load(
    bench: Bench, rate: float, codes: Sequence[Code | None], log: Callable[[str], None]
) -> list[dict]:
    """Saturation under live load, per code (None: the run's own): the worker offered ``rate`` (its drain
    rate, more than it takes with the load generator and the reader on the same cores) for a paced run,
    ``latency_runs`` times, interleaved with the order alternating; the median run of each by the rate
    its outputs came out at (``out_per_s``). What a latency target's share of saturation is taken of: a
    drain has the cores to itself, a paced run shares them (decision 029)."""
    runs: list[list[dict]] = [[] for _ in codes]
    total = bench.mode.latency_runs
    for round_ in range(total):
        for i, code in in_turn(list(enumerate(codes)), round_):
            name = "worker" if code is None else f"worker@{code.label}"
            log(f"{name}: saturation under live load ({rate:,.0f}/s offered), run {round_ + 1} of {total}")
            run = partial(paced, bench, "worker", rate, code)
            runs[i].append(guarded(log, name, run, offered_per_s=rate))
    return [median_of(code_runs, _out_per_s, "runs_out_per_s") for code_runs in runs]


def parse_loads(text: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``--loads``: the fixed rates and the shares of the worker's saturation, e.g. ``1000,80%``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    try:
        fixed = tuple(float(item) for item in items if not item.endswith("%"))
        shares = tuple(float(item[:-1]) / 100 for item in items if item.endswith("%"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: not rates or shares like 1000,80% ({exc})") from exc
    if not items or not all(0 < value < math.inf for value in fixed + shares):
        raise argparse.ArgumentTypeError(f"{text!r}: give positive rates or shares, like 1000,80%")
    labels = [*map(_rate_label, fixed), *map(_share_label, shares)]
    if len(set(labels)) < len(labels):  # runs are filed by label: two loads of one label would merge
        raise argparse.ArgumentTypeError(f"{text!r}: two loads of the same label ({', '.join(labels)})")
    return fixed, shares


def _profile_rate(text: str) -> float:
    """``--profile-load``: events/s, at least one (the view records 30 s of events) and finite."""
    try:
        rate = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: not a rate in events/s") from exc
    if not 1 <= rate < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r}: give a rate of at least 1 event/s")
    return rate


def loads_for(mode: Mode, worker_rate: float | None) -> list[tuple[str, float]]:
    """The offered loads: the fixed ones, and fractions of the worker's saturation when it is known."""
    fixed = [(_rate_label(r), r) for r in mode.fixed_loads]
    if not worker_rate:
        return fixed
    return fixed + [(_share_label(f), f * worker_rate) for f in mode.worker_fractions]


def _rate_label(rate: float) -> str:
    return f"{rate:,.0f}/s"


def _share_label(share: float) -> str:
    return f"{share:.0%} of worker saturation under live load"


def guarded(log: Callable[[str], None], what: str, run: Callable[[], dict], **base: Any) -> dict:
    """A failed run (a pipeline that crashed or never answered) is recorded, not the end of the benchmark."""
    try:
        return run()
    except (RuntimeError, KafkaException) as exc:
        log(f"{what} FAILED: {str(exc).splitlines()[0]}")
        return {**base, "error": str(exc)}


@dataclass(frozen=True)
class Entry:
    """One line of the saturation rounds: a pipeline, with how many processes."""

    name: str
    kind: str
    procs: int = 1


def run_all(bench: Bench, only: list[str], batch_sizes: list[int], log: Callable[[str], None]) -> dict:
    results: dict[str, Any] = {
        "pipelines": {kind: {"saturation": {}, "loads": []} for kind in only},
        "sweeps": {"batch_max_size": [], "workers": []},
    }
    fast = [Entry(kind, kind) for kind in only if kind not in SLOW]
    if "worker" in only:
        fast.append(Entry("worker x2", "worker", procs=2))
    rounds: dict[str, list[dict]] = {e.name: [] for e in fast}
    total = bench.mode.saturation_runs
    for i, entry in enumerate(e for _ in range(total) for e in fast):
        log(f"{entry.name}: saturation, run {i // len(fast) + 1} of {total}")
        run = partial(saturation, bench, entry.kind, procs=entry.procs)
        rounds[entry.name].append(guarded(log, entry.name, run, pipeline=entry.kind, procs=entry.procs))
    for entry in fast:
        median = median_of(rounds[entry.name])
        if entry.procs == 1:
            results["pipelines"][entry.kind]["saturation"] = median
        else:
            results["sweeps"]["workers"].append(median)
    results["rounds"] = {name: [r.get("events_per_s") for r in runs] for name, runs in rounds.items()}
    for kind in (k for k in only if k in SLOW):
        log(f"{kind}: saturation (capped at {bench.mode.slow_seconds:.0f} s)")
        run = partial(saturation, bench, kind, seconds=bench.mode.slow_seconds)
        results["pipelines"][kind]["saturation"] = guarded(log, kind, run, pipeline=kind, procs=1)
    if "worker" in only:
        results["sweeps"]["workers"].insert(0, results["pipelines"]["worker"]["saturation"])
    worker_rate = results["pipelines"].get("worker", {}).get("saturation", {}).get("events_per_s")
    live_rate = None
    if worker_rate and bench.mode.worker_fractions:
        [live] = under_load(bench, worker_rate, [None], log)
        results["pipelines"]["worker"]["live_saturation"] = live
        live_rate = _live_rate(live, log)
    offered = [
        (kind, label, rate)
        for kind in LATENCY
        if kind in only
        for label, rate in loads_for(bench.mode, live_rate)
    ]
    over = {  # a load over what the pipeline drained (when a drain measured it) is not run
        (kind, label)
        for kind, label, rate in offered
        if rate > (results["pipelines"][kind]["saturation"].get("events_per_s") or math.inf) * 1.02
    }
    for kind, label in sorted(over):
        log(f"{kind}: {label} is over its capacity, skipped")
    paced_runs: dict[tuple[str, str], list[dict]] = {(kind, label): [] for kind, label, _ in offered}
    total = bench.mode.latency_runs
    for round_ in range(total):  # round by round, as the saturation runs: a load change hits each alike
        for kind, label, rate in offered:
            if (kind, label) in over:
                continue
            log(f"{kind}: offered {label} ({rate:,.0f}/s), run {round_ + 1} of {total}")
            run = guarded(log, f"{kind} at {label}", partial(paced, bench, kind, rate), offered_per_s=rate)
            paced_runs[(kind, label)].append(run)
    for kind, label, rate in offered:
        if (kind, label) in over:
            entry = {"pipeline": kind, "offered_per_s": round(rate, 1), "over_capacity": True}
        else:
            entry = median_of(paced_runs[(kind, label)], _p99, "runs_p99_ms")
        results["pipelines"][kind]["loads"].append({"label": label, **entry})
    for batch in batch_sizes:
        log(f"worker: batch_max_size={batch}")
        run = guarded(
            log, "sweep", partial(saturation, bench, "worker", batch=batch), procs=1, batch_max_size=batch
        )
        results["sweeps"]["batch_max_size"].append(run)
    return results


def warm_up(bench: Bench, log: Callable[[str], None]) -> None:
    """One unrecorded drain by the bare passthrough before anything is measured. A JVM broker started
    moments ago spends much of a core compiling its own code (at 1,000 events/s, 0.85 cores in its first
    15 s, ~0.2 after 30 s): unwarmed, whatever runs first meets that, and in an A/B run it is always the
    baseline's first saturation run."""
    log("warming up the broker: one drain by the passthrough, not recorded")
    saturation(bench, "passthrough")


def run_ab(bench: Bench, codes: list[Code], log: Callable[[str], None]) -> dict:
    """The worker at each of ``codes``, interleaved run by run so that the shared machine's load hits
    each alike: drain rounds, then each variant's saturation under live load (offered the fastest
    variant's drain rate), then rounds of the offered loads. The order within a round alternates (A B,
    then B A) so that neither side always runs first. Every variant is offered the same rates: the
    mode's fixed loads and its shares of the first variant's (the baseline's) saturation under live load
    (1,000/s and 80%, unless ``--loads`` says otherwise)."""
    mode, labels = bench.mode, [code.label for code in codes]
    results: dict[str, Any] = {"variants": labels, "saturation": {}, "rounds": {}, "loads": []}

    runs: dict[str, list[dict]] = {label: [] for label in labels}
    for round_ in range(mode.saturation_runs):
        for code in in_turn(codes, round_):
            log(f"worker@{code.label}: saturation, run {round_ + 1} of {mode.saturation_runs}")
            run = partial(saturation, bench, "worker", code=code)
            runs[code.label].append(guarded(log, code.label, run, pipeline="worker", procs=1))
    for label in labels:
        results["saturation"][label] = median_of(runs[label])
        results["rounds"][label] = [r.get("events_per_s") for r in runs[label]]
    # Every variant is offered the fastest drain, so that a faster variant is not capped by a slower one.
    drains = [rate for label in labels if (rate := results["saturation"][label].get("events_per_s"))]
    live_rate = None
    if drains and mode.worker_fractions:
        live = under_load(bench, max(drains), codes, log)
        results["live_saturation"] = dict(zip(labels, live, strict=True))
        live_rate = _live_rate(live[0], log)
    for label, rate in loads_for(mode, live_rate):
        entry: dict[str, Any] = {"label": label, "offered_per_s": round(rate, 1), "runs": {}}
        for round_ in range(mode.latency_runs):
            for code in in_turn(codes, round_):
                log(f"worker@{code.label}: {label} ({rate:,.0f}/s), run {round_ + 1} of {mode.latency_runs}")
                run = partial(paced, bench, "worker", rate, code)
                run = guarded(log, code.label, run, offered_per_s=rate)
                entry["runs"].setdefault(code.label, []).append(run)
        results["loads"].append(entry)
    return results


def _cpu_model() -> str:
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024**2, 1),
        "kernel": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "load_avg_at_start": [round(v, 2) for v in os.getloadavg()],
    }


def _quix_version() -> str | None:
    try:
        out = subprocess.run(
            [str(QUIX_PYTHON), "-c", "import quixstreams; print(quixstreams.__version__)"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip()


def versions(broker: str) -> dict[str, Any]:
    import confluent_kafka

    found: dict[str, Any] = {
        "confluent_kafka": metadata.version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "scikit_learn": metadata.version("scikit-learn"),
        "onnxruntime": metadata.version("onnxruntime"),
        "quixstreams": _quix_version(),
    }
    if broker == "kafka":
        from stream_tagger.kafka.local_cluster import kafka_version

        found["kafka"] = kafka_version()
        java = subprocess.run(["java", "-version"], capture_output=True, text=True, check=False)
        found["java"] = (java.stderr or java.stdout).splitlines()[0] if java.returncode == 0 else None
    return found


def _git(*args: str) -> str:
    out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
    return out.stdout.strip()


@dataclass(frozen=True)
class Code:
    """What the workers run: the environment that points them at their code, and the model they serve."""

    label: str  # as given to --code: the revision, with its settings if any
    env: dict[str, str]
    model_dir: Path
    record: dict[str, Any]  # what the JSON says about it


def _extract(commit: str, paths: list[str], into: Path) -> None:
    archive = subprocess.run(["git", "archive", commit, *paths], cwd=REPO, capture_output=True, check=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def parse_code(spec: str) -> tuple[str, dict[str, str]]:
    """``REV`` or ``REV+NAME=VALUE+...``: a revision and the settings its workers run with, NAME being a
    setting's name without ``STREAM_TAGGER_`` (``worktree+linger_ms=0``)."""
    rev, *pairs = spec.split("+")
    settings = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            sys.exit(f"error: --code {spec!r}: {pair!r} is not NAME=VALUE")
        settings[f"STREAM_TAGGER_{name.upper()}"] = value
    return rev, settings


def prepare_code(spec: str, scratch: Path) -> Code:
    """The workers' code and model, copied into ``scratch``: ``rev``'s ``stream_tagger`` (with the schemas it
    reads) and the model version its ``models/current`` names, out of git; or, for ``worktree``, the
    package and schemas as they are now (tracked or not) and a copy of the version ``models/current``
    names. A copy, because the work tree is shared: an edit made there during the run would be measured
    or stop a worker mid-run, and a promotion may change or delete the served version between two runs.
    Builds the kernels for that code as an install does (``_build_kernels``)."""
    rev, settings = parse_code(spec)
    scratch.mkdir()
    models, root = scratch / "models", scratch / "code"
    models.mkdir()
    root.mkdir()
    if rev == "worktree":
        try:
            version = resolve(REPO / "models" / "current")
        except ModelLoadError as exc:
            sys.exit(f"error: {exc}; train a model first (stream-tagger train)")
        shutil.copytree(version, models / version.name)
        ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "*.c")
        for part in ("stream_tagger", "schemas"):
            shutil.copytree(REPO / part, root / part, ignore=ignore)
        for part in BUILD_FILES:
            shutil.copy2(REPO / part, root / part)
        version_name = version.name
        modified = bool(_git("status", "--porcelain", "stream_tagger", "schemas", "models"))
        record = {"source": "work tree", "commit": _git("rev-parse", "HEAD"), "modified": modified}
    else:
        commit = _git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
        if not commit:
            sys.exit(f"error: --code {rev!r} names no commit")
        version_name = _git("show", f"{commit}:models/current")
        if not version_name:
            sys.exit(f"error: {rev} has no models/current")
        build_files = _git("ls-tree", "--name-only", commit, *BUILD_FILES).split()
        _extract(commit, ["stream_tagger", "schemas", *build_files], root)
        _extract(commit, [f"models/{version_name}"], scratch)
        record = {"source": f"git {rev}", "commit": commit, "modified": False}
    env = {"PYTHONPATH": str(root), **settings}  # ahead of the editable install, which maps to the work tree
    _build_kernels(root, scratch, env)
    return Code(spec, env, models / version_name, {**record, "settings": settings, "model": version_name})


# What the package's own build reads, beside the package: it compiles the kernels (Cython) at install.
BUILD_FILES = ("pyproject.toml", "setup.py", "README.md")


def _build_kernels(root: Path, scratch: Path, env: dict[str, str]) -> None:
    """The kernels of the code in ``root``, compiled as bootstrap's install compiles them (with this
    environment's locked Cython and setuptools, no build isolation): a wheel of that code, whose
    extension modules go next to their sources. Revisions whose build has no extensions (no
    ``setup.py``) built theirs with numba's ``stream-tagger compile`` instead."""
    if not (root / "setup.py").exists():
        # Run from the scratch folder: a working directory of the repo would put its stream_tagger first.
        cli = str(Path(sys.executable).parent / "stream-tagger")
        subprocess.run([cli, "compile"], check=True, cwd=scratch, env={**os.environ, **env})
        return
    wheels = scratch / "wheel"
    pip_wheel = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation"]
    pip_wheel += ["--wheel-dir", str(wheels)]
    subprocess.run([*pip_wheel, str(root)], check=True, cwd=scratch)
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as built:
        built.extractall(root, [name for name in built.namelist() if name.endswith(".so")])


class LoadWatch(threading.Thread):
    """The 1-min load average every few seconds: the machine is shared, so the run says how loaded."""

    def __init__(self, interval: float = 5.0) -> None:
        super().__init__(daemon=True, name="load-watch")
        self.samples: list[float] = []
        self._interval = interval
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append(os.getloadavg()[0])
            self._halt.wait(self._interval)

    def stop(self) -> dict[str, float]:
        self._halt.set()
        self.join(self._interval + 1)
        ordered = sorted(self.samples) or [os.getloadavg()[0]]
        return {
            "min": round(ordered[0], 2),
            "median": round(ordered[len(ordered) // 2], 2),
            "max": round(ordered[-1], 2),
        }


@contextmanager
def running_broker(kind: str, scratch: Path) -> Iterator[tuple[str, int | None, str]]:
    """(bootstrap servers, broker pid, what it is) of a broker started for this run and stopped after it,
    whatever happens in between."""
    if kind == "tansu":
        with EmbeddedBroker(log_path=scratch / "tansu.log") as tansu:
            yield tansu.bootstrap_servers, tansu.pid, "embedded Tansu (in memory), loopback"
        return
    from stream_tagger.kafka.local_cluster import (
        KafkaNotInstalled,
        LocalKafka,
        installed_classpath,
        kafka_version,
    )

    try:
        installed_classpath()
    except KafkaNotInstalled as exc:
        sys.exit(f"error: {exc}")
    with LocalKafka(scratch / "kafka", brokers=1, heap_mb=KAFKA_HEAP_MB, partitions=PARTITIONS) as kafka:
        what = (
            f"Apache Kafka {kafka_version()} (KRaft, 1 node, {KAFKA_HEAP_MB} MB heap fixed, data on disk), "
            "loopback"
        )
        yield kafka.bootstrap_servers, kafka.nodes[0].pid, what


def publish(results: dict, out: Path) -> None:
    results["ratios"] = ratios(results)
    results["targets"] = check_targets(results)
    print_report(results)
    write_json(results, out / "latest.json")
    write_plot(results, out / "latest.png")
    write_markdown(results, out / "latest.md")


def publish_ab(results: dict, out: Path) -> None:
    """An A/B run goes to ``ab.json`` and ``ab.md``: it never replaces the full run's ``latest`` files."""
    print_ab(results)
    write_json(results, out / "ab.json")
    write_ab_markdown(results, out / "ab.md")


def _interrupt(_signum: int, _frame: object) -> None:
    # SIGTERM unwinds like Ctrl-C, so every `finally` stops the pipelines and the broker it started.
    raise KeyboardInterrupt


def check_setup(only: list[str]) -> None:
    """Exits saying what to install when a selected pipeline cannot run."""
    if "quix" in only and not QUIX_PYTHON.exists():
        sys.exit(
            "error: the Quix Streams peer needs its own virtualenv (it pins confluent-kafka < 2.13):\n"
            f"  python3.11 -m venv {QUIX_DIR.relative_to(REPO)}/.venv\n"
            f"  {QUIX_DIR.relative_to(REPO)}/.venv/bin/pip install -r "
            f"{QUIX_DIR.relative_to(REPO)}/requirements.txt\n"
            "or leave it out: --only passthrough,sklearn,worker"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description="Throughput and latency of the worker against its peers.")
    parser.add_argument("--broker", choices=("kafka", "tansu"), default="kafka", help="default: kafka")
    parser.add_argument("--events", type=int, help="events per saturation run (200,000; quick: 30,000)")
    parser.add_argument("--quick", action="store_true", help="small N, one run each: checks the harness")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker under load instead")
    parser.add_argument(
        "--profile-load",
        type=_profile_rate,
        help="events/s of --profile's third view: partial batches near saturation (default 40,000)",
    )
    parser.add_argument("--report-only", action="store_true", help="redraw tables and plot from latest.json")
    parser.add_argument(
        "--only",
        default=",".join(PIPELINES),
        help=f"comma-separated pipelines, of {', '.join((*PIPELINES, *OPTIONAL))} (default: %(default)s)",
    )
    parser.add_argument(
        "--batch-sizes", default="", help="also sweep the worker's batch_max_size, e.g. 256,2048"
    )
    parser.add_argument(
        "--code",
        default="HEAD",
        help="the worker's code: a git revision (default: HEAD) or 'worktree' for the files as they are, "
        "optionally with settings (worktree+linger_ms=0); several, comma-separated (HEAD,worktree), run "
        "an A/B comparison of the worker alone, interleaved run by run, ratios to the first",
    )
    parser.add_argument("--rounds", type=int, help="saturation runs per pipeline (5; quick: 1)")
    parser.add_argument("--latency-rounds", type=int, help="runs at each offered load (3; quick: 1)")
    parser.add_argument("--load-seconds", type=float, help="length of each paced run (20 s; quick: 5 s)")
    parser.add_argument(
        "--loads",
        type=parse_loads,
        help="offered loads, comma-separated: events/s, or a share of the worker's saturation (80%%); "
        "default 1000,80%%. A fixed rate compares A/B runs made on other days at the same load",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json/latest.png go")
    args = parser.parse_args()
    if args.report_only:
        publish(json.loads((args.out / "latest.json").read_text()), args.out)
        return
    only = [k for k in (*PIPELINES, *OPTIONAL) if k in args.only.split(",")]
    unknown = set(args.only.split(",")) - set(only)
    if unknown:
        parser.error(f"unknown pipelines: {', '.join(sorted(unknown))}")
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]
    mode = QUICK if args.quick else FULL
    chosen = {
        "events": args.events,
        "saturation_runs": args.rounds,
        "latency_runs": args.latency_rounds,
        "load_seconds": args.load_seconds,
    }
    mode = Mode(**{**mode.__dict__, **{k: v for k, v in chosen.items() if v}})
    if args.loads:
        mode = replace(mode, fixed_loads=args.loads[0], worker_fractions=args.loads[1])
    specs = args.code.split(",")
    ab = len(specs) > 1
    if ab and (args.profile or batch_sizes):
        parser.error("an A/B run (several --code) measures the worker alone: no --profile or --batch-sizes")
    if args.profile_load is not None and not args.profile:
        parser.error("--profile-load sets the rate of a --profile view")
    if args.loads and not ab:
        # A full run's report judges the targets at 1,000/s and 80% of saturation.
        parser.error("--loads is for A/B runs (several --code)")
    if len(set(specs)) < len(specs):
        # Runs are filed by their --code label: two equal ones would be merged into one variant.
        parser.error(f"--code {args.code}: each variant must differ (add +setting=value to one)")
    check_setup([] if args.profile or ab else only)
    pyspy = find_pyspy() if args.profile else None
    workers = ab or args.profile or bool(set(OURS) & set(only)) or bool(batch_sizes)
    args.out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _interrupt)
    began, host, watch = datetime.now(UTC), machine(), LoadWatch()
    watch.start()

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg} (load {os.getloadavg()[0]:.1f})", file=sys.stderr)

    with tempfile.TemporaryDirectory(prefix="stream-tagger-bench-") as tmp:
        scratch = Path(tmp)
        codes = [prepare_code(spec, scratch / f"code-{i}") for i, spec in enumerate(specs)] if workers else []
        code = codes[0] if codes else None
        log(f"starting the broker ({args.broker})")
        with running_broker(args.broker, scratch) as (bootstrap, broker_pid, broker_text):
            bench = Bench(
                bootstrap,
                broker_pid,
                scratch,
                scratch / "user-model.pkl",
                code,
                mode,
            )
            warm_up(bench, log)
            if args.profile:
                assert code is not None and pyspy is not None  # prepare_code() ran: a profile needs a worker
                about = (
                    f"{datetime.now(UTC).isoformat(timespec='seconds')}, {broker_text}; worker code "
                    f"{code.record['source']} {code.record['commit'][:10]}, model {code.model_dir.name}; "
                    f"{host['cores']} cores ({host['cpu']}), 1-min load average {os.getloadavg()[0]:.1f} "
                    f"at start; {mode.events:,} events queued for the saturation view."
                )
                profile(bench, args.out, about, args.profile_load or PROFILE_LOAD_PER_S, pyspy)
                return
            if ab:
                results = {"ab": run_ab(bench, codes, log)}
            elif "sklearn" in only:
                log("training the user's scikit-learn model")
                train_user_model(BUNDLED_DATASET, bench.user_model)
            if not ab:
                results = run_all(bench, only, batch_sizes, log)
    host["load_avg_at_end"] = [round(v, 2) for v in os.getloadavg()]
    host["load_avg_1min_during"] = watch.stop()
    results["meta"] = {
        "date": began.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(UTC) - began).total_seconds()),
        "quick": args.quick,
        "events": mode.events,
        "saturation_runs": mode.saturation_runs,
        "latency_runs": mode.latency_runs,
        "load_seconds": mode.load_seconds,
        "ramp_seconds": mode.ramp_seconds,
        "partitions": PARTITIONS,
        "broker": broker_text,
        "machine": host,
        "versions": versions(args.broker),
        "model_version": code.model_dir.name if code else None,
        "code": code.record if code else {},
        "codes": {c.label: c.record for c in codes},
        "latency": "end-to-end: wall time the harness's reader (assign(), no group) received the output "
        "minus the input's CreateTime (stamped by the load generator at produce()), ms; "
        "latency_created_ms: the output's CreateTime (stamped by the pipeline's producer) minus the input's",
        "throughput": "distinct input keys out, from the first output received to the last; several "
        "processes from when their consumer group settled with every member holding partitions",
    }
    if ab:
        publish_ab(results, args.out)
    else:
        publish(results, args.out)


if __name__ == "__main__":
    main()
