"""Benchmark: our worker against the transport ceiling and a per-message scikit-learn loop, in one run.

    .venv/bin/python benchmarks/run.py [--events 200000] [--quick] [--profile] [--report-only]

Everything runs on one embedded Tansu broker on loopback, with the same workload for every pipeline:
raw events resampled from the bundled dataset with unique ids, on an input topic of 4 partitions.
Each pipeline runs as its own process(es) and is measured from the outside (see ``harness.py``): the
baselines of ``baselines.py``, our worker as shipped (tagging only), and the worker beside the
feedback worker that a deployment runs with it.

- saturation: N events pre-produced, the pipeline started, events/s from its first output to its last;
- fixed offered loads (1,000/s, 5,000/s, 80% and 100% of the saturation rate), produced while the pipeline
  runs: end-to-end latency p50/p99/p99.9;
- sweeps of our worker: micro-batch size, and 1 vs 2 worker processes in one group.

Writes ``benchmarks/results/latest.json``, ``latest.png`` and ``latest.md`` (the tables in Markdown) and
prints the tables and the targets. ``--profile`` instead records the worker with py-spy (see
``profile_worker.py``); ``--report-only`` redraws everything from ``latest.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import msgspec
from baselines import train_user_model
from confluent_kafka import KafkaException
from harness import Processes, Sink, create_topics, delete_topics, percentiles, produce_bulk, produce_paced
from report import check_targets, print_report, write_json, write_markdown, write_plot

from stream_tagger.broker import EmbeddedBroker, free_port
from stream_tagger.sources import BUNDLED_DATASET, dataset_events

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
PARTITIONS = 4
#: Pipelines compared head to head, in table order; ``faust`` is throughput only (it explains a design).
PIPELINES = ("passthrough", "sklearn", "worker", "worker-split")
#: Our worker alone (tagging), and as deployed: beside `stream-tagger feedback-worker`, which reads every
#: tagged event back (CPU and RSS of both counted). The feedback loop is kept out of the worker process
#: explicitly (the default since it was measured holding the GIL 62% of the time at 1,000/s).
OURS = ("worker", "worker-split")
#: Warm-up events per partition before a paced run: the pipeline has joined and loaded when they are out.
WARMUP_PER_PARTITION = 25
STARTUP_TIMEOUT_S = 120.0
SESSION_TIMEOUT_MS = 6_000  # Tansu's group join waits about half of it (see tests/conftest.py)


@dataclass(frozen=True)
class Mode:
    """How long and how wide a run is: the full run, or ``--quick`` to check the harness in a minute."""

    events: int
    load_seconds: float  # duration of each paced run
    slow_seconds: float  # cap on a saturation run of a slow pipeline (the sklearn loop, Faust)
    cap_seconds: float  # cap on any other saturation run: throughput is counted on what came out by then
    batch_sizes: tuple[int, ...]
    # Saturation runs of the fast pipelines, the median reported: on this VM single runs of one build
    # spread 17-23k events/s within ten minutes.
    saturation_runs: int = 3
    fixed_loads: tuple[float, ...] = (1_000.0, 5_000.0)
    saturation_fractions: tuple[float, ...] = (0.8, 1.0)


FULL = Mode(
    events=200_000, load_seconds=10.0, slow_seconds=30.0, cap_seconds=120.0, batch_sizes=(64, 256, 512, 2048)
)
QUICK = Mode(
    events=20_000,
    load_seconds=3.0,
    slow_seconds=8.0,
    cap_seconds=30.0,
    batch_sizes=(64, 512),
    saturation_runs=1,
    saturation_fractions=(0.8,),
)


@dataclass
class Bench:
    """What every run shares: the broker, a scratch folder for logs and the user's model, the mode."""

    bootstrap: str
    broker_pid: int | None
    scratch: Path
    user_model: Path
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


def worker_env(bench: Bench, topics: RunTopics, group: str, batch: int | None) -> dict[str, str]:
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
        "STREAM_TAGGER_SESSION_TIMEOUT_MS": str(SESSION_TIMEOUT_MS),
        "STREAM_TAGGER_HEARTBEAT_INTERVAL_MS": "500",
        "STREAM_TAGGER_MODEL_DIR": str(REPO / "models" / "current"),
        "STREAM_TAGGER_WEB_HOST": "127.0.0.1",
        "STREAM_TAGGER_WEB_PORT": str(free_port()),
        "STREAM_TAGGER_LOG_LEVEL": "WARNING",
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
    cmd = [
        sys.executable,
        str(REPO / "benchmarks" / "baselines.py"),
        kind,
        "--bootstrap",
        bench.bootstrap,
        "--input",
        topics.raw,
        "--output",
        topics.outputs[0],
        "--group",
        group,
        "--seconds",
        str(seconds),
    ]
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
) -> Processes:
    """Start ``procs`` processes of one pipeline in one consumer group, each logging to the scratch folder."""
    started, logs = [], []
    for i, command in enumerate(commands_for(kind, bench, topics, group, seconds, procs)):
        # Each worker gets its own env: its own free web port.
        env = {**os.environ, **(worker_env(bench, topics, group, batch) if kind in OURS else {})}
        if kind in OURS:
            env["STREAM_TAGGER_FEEDBACK_IN_WORKER"] = "false"
        log = bench.scratch / f"{group}-{i}.log"
        with log.open("wb") as out:
            cmd = [*(wrap or []), *command]
            started.append(
                subprocess.Popen(
                    cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                )
            )
        logs.append(log)
    return Processes(started, logs, bench.broker_pid)


def encoded(n: int, prefix: str) -> list[tuple[bytes, bytes]]:
    return [(e.id.encode(), msgspec.json.encode(e)) for e in dataset_events(n, id_prefix=prefix)]


@contextmanager
def run_topics(bench: Bench, kind: str) -> Iterator[tuple[str, RunTopics]]:
    run_id = bench.run_id(kind)
    topics = topics_for(kind, run_id)
    create_topics(bench.bootstrap, topics.all, PARTITIONS)
    try:
        yield run_id, topics
    finally:
        delete_topics(bench.bootstrap, topics.all)


class PipelineFailed(RuntimeError):
    """A pipeline did not start or died; carries the end of its log."""


def _fail(kind: str, what: str, processes: Processes) -> PipelineFailed:
    logs = processes.stop()
    return PipelineFailed(f"{kind}: {what}; end of its log:\n" + "\n---\n".join(logs))


def summarize(sent: dict[bytes, int], sink: Sink, processes: Processes, window_start: float | None) -> dict:
    """Throughput, latency and CPU of one run, from the harness's timestamps and the process samples."""
    out_ts, latency, received = [], [], []
    for key, t_in in sent.items():
        hit = sink.seen.get(key)
        if hit is not None:
            out_ts.append(hit[0])
            latency.append(hit[0] - t_in)
            received.append(hit[1] * 1000 - t_in)
    delivered = len(out_ts)
    result: dict[str, Any] = {
        "sent": len(sent),
        "delivered": delivered,
        "peak_rss_mb": round(processes.peak_rss_mb, 1),
    }
    if delivered < 2:
        return result
    first, last = min(out_ts) / 1000, max(out_ts) / 1000
    span = max(last - first, 1e-3)
    start = first if window_start is None else window_start
    cpu, broker_cpu = processes.cpu_between(start, last)
    busy_s = max(last - start, 1e-3)
    result |= {
        "events_per_s": round((delivered - 1) / span, 1),
        "cpu_us_per_event": round(cpu / delivered * 1e6, 1),
        "cores_busy": round(cpu / busy_s, 2),
        "broker_cores_busy": round(broker_cpu / busy_s, 2),
        "latency_ms": percentiles(latency),
        "latency_received_ms": percentiles(received),
        # p50 of the first and of the last tenth sent: a rise means the pipeline fell behind the offered
        # rate during the run (a queue grew), not that each event got slower.
        "p50_first_last_tenth_ms": [
            percentiles(latency[: max(1, delivered // 10)])["p50"],
            percentiles(latency[-max(1, delivered // 10) :])["p50"],
        ],
    }
    return result


def saturation(
    bench: Bench,
    kind: str,
    *,
    procs: int = 1,
    batch: int | None = None,
    seconds: float | None = None,
    wrap: list[str] | None = None,
) -> dict:
    """N events pre-produced, then the pipeline started: how fast does it drain them?"""
    n, limit = bench.mode.events, seconds or bench.mode.cap_seconds
    with run_topics(bench, kind) as (run_id, topics):
        sent = produce_bulk(bench.bootstrap, topics.raw, encoded(n, run_id))
        sink = Sink(bench.bootstrap, topics.outputs, PARTITIONS)
        sink.start()
        processes = launch(
            kind, bench, topics, f"g-{run_id}", procs=procs, batch=batch, seconds=limit + 60, wrap=wrap
        )
        try:
            if not sink.wait_for(1, STARTUP_TIMEOUT_S, processes):
                raise _fail(kind, "no output", processes)
            sink.wait_for(n, limit, processes)
        finally:
            sink.stop()
            processes.stop()
    result = summarize(sent, sink, processes, None)
    result.pop("latency_ms", None)  # pre-produced events queue behind each other: not a latency
    result.pop("latency_received_ms", None)
    return {
        "pipeline": kind,
        "procs": procs,
        "batch_max_size": batch,
        "time_capped": result["delivered"] < n,
        **result,
    }


def median_saturation(bench: Bench, kind: str) -> dict:
    """``saturation`` run ``saturation_runs`` times: the median run (by events/s), every run's rate, and
    the highest peak RSS of them all (the memory target must hold in every run)."""
    runs = sorted(
        (saturation(bench, kind) for _ in range(bench.mode.saturation_runs)), key=lambda r: r["events_per_s"]
    )
    median = runs[len(runs) // 2]
    return {
        **median,
        "runs_events_per_s": [r["events_per_s"] for r in runs],
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
    }


def paced(bench: Bench, kind: str, rate: float) -> dict:
    """The pipeline running and warm, then events offered at ``rate``/s: the latency a user would see."""
    n = min(bench.mode.events, max(100, int(rate * bench.mode.load_seconds)))
    with run_topics(bench, kind) as (run_id, topics):
        sink = Sink(bench.bootstrap, topics.outputs, PARTITIONS)
        sink.start()
        processes = launch(kind, bench, topics, f"g-{run_id}", seconds=STARTUP_TIMEOUT_S + 120)
        try:
            warm = produce_bulk(
                bench.bootstrap,
                topics.raw,
                encoded(WARMUP_PER_PARTITION * PARTITIONS, f"{run_id}w"),
                PARTITIONS,
            )
            if not sink.wait_for(len(warm), STARTUP_TIMEOUT_S, processes):
                raise _fail(kind, "warm-up events did not come out", processes)
            start = time.time()
            sent, achieved = produce_paced(bench.bootstrap, topics.raw, encoded(n, run_id), rate)
            sink.wait_for(len(warm) + n, 30.0, processes)
        finally:
            sink.stop()
            processes.stop()
    result = summarize(sent, sink, processes, start)
    result.pop("events_per_s", None)  # the offered rate, not the pipeline's
    return {
        "pipeline": kind,
        "offered_per_s": round(rate, 1),
        "achieved_offered_per_s": round(achieved, 1),
        **result,
    }


def loads_for(mode: Mode, saturated: float) -> list[tuple[str, float]]:
    fixed = [(f"{r:,.0f}/s", r) for r in mode.fixed_loads]
    relative = [(f"{f:.0%} of saturation", f * saturated) for f in mode.saturation_fractions]
    return fixed + relative


def guarded(log: Callable[[str], None], what: str, run: Callable[[], dict], **base: Any) -> dict:
    """A failed run (a pipeline that crashed or never answered) is recorded, not the end of the benchmark."""
    try:
        return run()
    except (RuntimeError, KafkaException) as exc:
        log(f"{what} FAILED: {str(exc).splitlines()[0]}")
        return {**base, "error": str(exc)}


def run_all(bench: Bench, only: set[str], log: Callable[[str], None]) -> dict:
    results: dict[str, Any] = {"pipelines": {}, "sweeps": {"batch_max_size": [], "workers": []}}
    for kind in (k for k in (*PIPELINES, "faust") if k in only):
        slow = kind in ("sklearn", "faust")
        log(f"{kind}: saturation")
        measure = (
            partial(saturation, bench, kind, seconds=bench.mode.slow_seconds)
            if slow
            else partial(median_saturation, bench, kind)
        )
        sat = guarded(log, kind, measure, pipeline=kind, procs=1)
        entry: dict[str, Any] = {"saturation": sat, "loads": []}
        results["pipelines"][kind] = entry
        if kind == "faust" or not sat.get("events_per_s"):
            continue
        for label, rate in loads_for(bench.mode, sat["events_per_s"]):
            if rate > sat["events_per_s"] * 1.02:
                log(f"{kind}: {label} is over its capacity, skipped")
                entry["loads"].append(
                    {"pipeline": kind, "label": label, "offered_per_s": round(rate, 1), "over_capacity": True}
                )
                continue
            log(f"{kind}: offered {label} ({rate:,.0f}/s)")
            run = guarded(log, f"{kind} at {label}", partial(paced, bench, kind, rate), offered_per_s=rate)
            entry["loads"].append({"label": label, **run})
    if "worker" not in only:
        return results
    for batch in bench.mode.batch_sizes:
        log(f"worker: batch_max_size={batch}")
        run = guarded(
            log, "sweep", partial(saturation, bench, "worker", batch=batch), procs=1, batch_max_size=batch
        )
        results["sweeps"]["batch_max_size"].append(run)
    results["sweeps"]["workers"].append(results["pipelines"]["worker"]["saturation"])
    log("worker: 2 processes in one group")
    results["sweeps"]["workers"].append(
        guarded(log, "sweep", partial(saturation, bench, "worker", procs=2), procs=2, batch_max_size=None)
    )
    return results


def machine() -> dict[str, Any]:
    with open("/proc/meminfo") as f:
        mem_kb = int(next(line for line in f if line.startswith("MemTotal:")).split()[1])
    return {
        "nproc": os.cpu_count(),
        "ram_gib": round(mem_kb / 1024**2, 1),
        "cpu": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "load_avg_at_start": os.getloadavg(),
    }


def publish(results: dict, out: Path) -> None:
    results["targets"] = check_targets(results)
    print_report(results)
    write_json(results, out / "latest.json")
    write_plot(results, out / "latest.png")
    write_markdown(results, out / "latest.md")


def main() -> None:
    parser = argparse.ArgumentParser(description="Throughput and latency of the worker against baselines.")
    parser.add_argument("--events", type=int, help="events per saturation run (200,000; quick: 20,000)")
    parser.add_argument("--quick", action="store_true", help="small N, short runs: checks the harness")
    parser.add_argument("--profile", action="store_true", help="py-spy the worker under load instead")
    parser.add_argument("--report-only", action="store_true", help="redraw tables and plot from latest.json")
    parser.add_argument(
        "--only",
        default=",".join((*PIPELINES, "faust")),
        help="comma-separated pipelines to run (debugging the harness)",
    )
    parser.add_argument("--out", type=Path, default=RESULTS, help="where latest.json/latest.png go")
    args = parser.parse_args()
    if args.report_only:
        publish(json.loads((args.out / "latest.json").read_text()), args.out)
        return
    mode = QUICK if args.quick else FULL
    if args.events:
        mode = Mode(**{**mode.__dict__, "events": args.events})
    if set(OURS) & set(args.only.split(",")) and not (REPO / "models" / "current").exists():
        sys.exit("error: models/current is missing; train a model first (stream-tagger train)")
    if set(OURS) & set(args.only.split(",")):
        # As a deployment would (bootstrap.sh, the Docker build): without its kernels built ahead of
        # time a worker runs numba's JIT, ~120 MB more resident.
        subprocess.run([str(Path(sys.executable).parent / "stream-tagger"), "compile"], check=True)
    args.out.mkdir(parents=True, exist_ok=True)
    began, host = datetime.now(UTC), machine()
    with (
        tempfile.TemporaryDirectory(prefix="stream-tagger-bench-") as tmp,
        EmbeddedBroker(log_path=Path(tmp) / "tansu.log") as broker,
    ):
        scratch = Path(tmp)
        bench = Bench(broker.bootstrap_servers, broker.pid, scratch, scratch / "user-model.pkl", mode)
        if args.profile:
            from profile_worker import profile

            profile(bench, args.out)
            return
        print("training the user's scikit-learn model ...", file=sys.stderr)
        train_user_model(BUNDLED_DATASET, bench.user_model)

        def log(msg: str) -> None:
            print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr)

        results = run_all(bench, set(args.only.split(",")), log)
    host["load_avg_at_end"] = os.getloadavg()
    results["meta"] = {
        "date": began.isoformat(timespec="seconds"),
        "duration_s": round((datetime.now(UTC) - began).total_seconds()),
        "quick": args.quick,
        "events": mode.events,
        "partitions": PARTITIONS,
        "machine": host,
        "broker": "embedded Tansu (in memory), loopback",
        "latency": "output message CreateTime (stamped by the pipeline's producer at produce()) minus input "
        "CreateTime (stamped by the load generator at produce()), ms resolution; "
        "latency_received_ms: wall time the harness consumed the output minus input CreateTime",
    }
    publish(results, args.out)


if __name__ == "__main__":
    main()
