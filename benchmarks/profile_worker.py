"""Where the worker's time goes: py-spy attached to it in two situations (``run.py --profile``).

1. ``saturation``: draining a pre-produced backlog, on-CPU samples: what it burns CPU on when busy.
2. ``gil-1000``: at 1,000 events/s offered, ``--gil`` samples (only the thread holding the GIL): who keeps
   the hot-path thread waiting, which is what latency at low load is made of.

Writes ``profile-worker-<view>.speedscope.json`` (open at https://www.speedscope.app) and
``profile-worker.md``: per thread, samples grouped by the package of the innermost frame, and the
worker's own functions by inclusive share. py-spy sees Python threads only: time inside a C extension
(onnxruntime, librdkafka, msgspec) is charged to the Python frame that called it, and librdkafka's own
threads are not seen.
"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from harness import Sink, _cpu_seconds, produce_bulk, produce_paced

SAMPLE_RATE_HZ = 100
# The longest a view records: the paced one lasts this long; the backlog one stops once it is drained.
PROFILE_SECONDS = 30
LOW_LOAD_PER_S = 1_000.0
# Most specific first: a third-party file also lives under /lib/python3.x/.
_PACKAGE = (
    re.compile(r"site-packages/([A-Za-z0-9_]+)"),
    re.compile(r"/(stream_tagger)/"),
    re.compile(r"/lib/python3\.\d+/([A-Za-z0-9_]+)"),
)


#: Where a sample of the hot path or the scoring thread goes, by the worker's frames on its stack; the
#: first match wins. Time in a C extension counts in the Python frame that called it.
CATEGORIES = (
    ("featuriser (compiled kernels)", ("Predictor.featurize",)),
    ("ONNX graph (onnxruntime)", ("Predictor.run_graph",)),
    ("decode and validate, per event (Pipeline.prepare)", ("Pipeline.prepare",)),
    ("route, observers, encode, per event (Pipeline.finish)", ("Pipeline.finish",)),
    ("produce the outputs (librdkafka produce())", ("HotPath._produce",)),
    ("metrics of acked batches", ("HotPath._record_acked",)),
    ("wait for acks, store offsets (librdkafka flush())", ("HotPath._finish_pending",)),
    ("wait for the scoring thread", ("Future.result",)),
)
#: A sample whose innermost frame is the loop itself is in consume() (C, with the GIL released).
CONSUME = ("consume (librdkafka consume())", "HotPath.run")
HOT_THREADS = ("hot-path", "scoring")


def package_of(path: str) -> str:
    """``onnxruntime``, ``confluent_kafka``, ``stream_tagger``, ``asyncio`` ... from a frame's file."""
    for pattern in _PACKAGE:
        match = pattern.search(path)
        if match:
            return match.group(1)
    return path or "?"


def _thread_name(name: str) -> str:
    """A thread named after its model folder, without the scratch folder the benchmark copied it to."""
    return re.sub(r"/[^\s\"]*/(models/)", r"\1", name)


def _frame(frame: dict[str, Any]) -> str:
    return f"{frame['name']} ({package_of(frame['file'])}/{Path(frame['file']).name})"


def summarize(speedscope: dict[str, Any], title: str, seconds: float, top: int = 10) -> str:
    """Markdown, per Python thread: its share of the ``seconds`` recorded, self time by package, and the
    heaviest frames by inclusive share (frames on every sample, the thread's entry points, left out)."""
    frames = speedscope["shared"]["frames"]
    lines = [f"## {title}", ""]
    total = sum(len(p["samples"]) for p in speedscope["profiles"])
    for profile in sorted(speedscope["profiles"], key=lambda p: -len(p["samples"])):
        samples = [stack for stack in profile["samples"] if stack]
        n = len(samples)
        if n < total * 0.02:
            continue
        self_by_package = Counter(package_of(frames[stack[-1]]["file"]) for stack in samples)
        inclusive: Counter[str] = Counter()
        for stack in samples:
            inclusive.update({_frame(frames[i]) for i in stack})  # one count per function, whatever the line
        heavy = [(name, c) for name, c in inclusive.most_common() if c < 0.95 * n][:top]
        lines += [
            f"### {_thread_name(profile['name'])}: {n / (seconds * SAMPLE_RATE_HZ):.0%} of the "
            f"{seconds:.1f} s recorded",
            "",
            "| innermost frame's package | share |",
            "|---|---|",
            *(f"| {pkg} | {count / n:.0%} |" for pkg, count in self_by_package.most_common(top)),
            "",
            "| frame (inclusive) | share |",
            "|---|---|",
            *(f"| {name} | {count / n:.0%} |" for name, count in heavy),
            "",
        ]
    return "\n".join(lines)


def _category(names: list[str]) -> str:
    """``names``: a sample's frames, outermost first."""
    present = set(names)
    for label, frames in CATEGORIES:
        if present.intersection(frames):
            return label
    return CONSUME[0] if names and names[-1] == CONSUME[1] else "other"


def where_time_goes(speedscope: dict[str, Any], events: int, cpu_seconds: float) -> str:
    """Markdown: the samples of the hot-path and scoring threads by category, as shares of each thread
    and as µs per event (samples x sampling interval / events). The worker's CPU per event, from /proc
    over the same window, is the reference: what it has beyond both threads' samples is librdkafka's own
    threads and the rest of the process. On-CPU samples include time a thread was runnable but waiting
    for a core, so on a loaded machine the shares hold better than the µs."""
    frames = speedscope["shared"]["frames"]
    per_thread: dict[str, Counter[str]] = {t: Counter() for t in HOT_THREADS}
    for profile in speedscope["profiles"]:
        thread = next((t for t in HOT_THREADS if t in profile["name"]), None)
        if thread is None:
            continue
        for stack in profile["samples"]:
            if stack:
                per_thread[thread][_category([_frame(frames[i]).split(" (")[0] for i in stack])] += 1
    both = sum(per_thread.values(), Counter())
    us = 1e6 / SAMPLE_RATE_HZ / max(1, events)  # µs per event that one sample stands for
    sampled = sum(both.values()) * us
    rows = [
        f"| {label} | "
        + " | ".join(f"{per_thread[t][label] / max(1, sum(per_thread[t].values())):.0%}" for t in HOT_THREADS)
        + f" | {count * us:.1f} |"
        for label, count in both.most_common()
    ]
    cpu = cpu_seconds * 1e6 / max(1, events)
    return "\n".join(
        [
            "### Where the time goes: the hot-path and scoring threads",
            "",
            "| work | share of hot-path thread | share of scoring thread | µs per event |",
            "|---|---|---|---|",
            *rows,
            f"| both threads, sampled | | | {sampled:.1f} |",
            f"| the worker's CPU (/proc), all threads | | | {cpu:.1f} |",
            "",
        ]
    )


def _record(
    pyspy: str,
    pid: int,
    target: Path,
    started: Callable[[], object],
    until: Callable[[], object],
    *extra: str,
) -> tuple[float, bool]:
    """py-spy on ``pid``: ``started()`` once it samples, then ``until()`` (at most ``PROFILE_SECONDS``).
    Returns the seconds recorded and whether ``until()`` finished (did not return False).

    Attaching takes a moment: a SIGINT before py-spy samples would kill it before it writes anything,
    and the time and events before then have no samples."""
    record = [
        pyspy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(PROFILE_SECONDS),
        "-r",
        str(SAMPLE_RATE_HZ),
    ]
    record += ["-f", "speedscope", "-o", str(target), *extra]
    spy = subprocess.Popen(record, stdout=subprocess.PIPE, text=True)
    try:
        assert spy.stdout is not None
        for line in spy.stdout:
            print(line, end="", file=sys.stderr)
            if "Sampling process" in line:
                break
        else:
            raise subprocess.CalledProcessError(spy.wait(), record)
        time.sleep(0.05)  # py-spy says it samples just before it handles Ctrl-C
        begin = time.monotonic()
        started()
        finished = until() is not False
        seconds = min(time.monotonic() - begin, PROFILE_SECONDS)
    finally:
        if spy.poll() is None:
            spy.send_signal(signal.SIGINT)  # py-spy stops and writes what it recorded
        try:
            rest, _ = spy.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            spy.kill()
            rest, _ = spy.communicate()
        print(rest, end="", file=sys.stderr)  # its "behind in sampling" warnings and sample count
    if spy.returncode:
        raise subprocess.CalledProcessError(spy.returncode, record)
    return seconds, finished


def _profile_one(bench: Any, pyspy: str, target: Path, rate: float | None) -> tuple[int, float, float]:
    """Start a worker, wait until it is up (imports and model loading stay out of the picture), then
    record it draining a backlog (``rate`` None, on-CPU, until the backlog is out) or under ``rate``
    events/s (GIL holders). Returns the events that came out while recording, the worker's CPU seconds
    meanwhile and the seconds recorded."""
    from run import PARTITIONS, STARTUP_TIMEOUT_S, PipelineFailed, encoded, launch, run_topics

    with run_topics(bench, "worker") as (run_id, topics):
        if rate is None:
            produce_bulk(bench.bootstrap, topics.raw, encoded(bench.mode.events, run_id))
        sink = Sink(bench.bootstrap, topics.outputs, PARTITIONS)
        sink.start()
        processes = launch("worker", bench, topics, f"g-{run_id}")
        try:
            if rate is not None:
                produce_bulk(bench.bootstrap, topics.raw, encoded(PARTITIONS, f"{run_id}w"), PARTITIONS)
            if not sink.wait_for(1, STARTUP_TIMEOUT_S, processes):
                raise PipelineFailed("worker: no output; its log:\n" + "\n".join(processes.stop()))
            pid = processes.procs[0].pid
            before: list[float] = []

            def started() -> None:
                before[:] = [len(sink.seen), _cpu_seconds(pid)]

            if rate is None:
                drained = partial(sink.wait_for, bench.mode.events, PROFILE_SECONDS, processes)
                seconds, finished = _record(pyspy, pid, target, started, drained)
            else:
                events = encoded(int(rate * PROFILE_SECONDS), run_id)
                paced = partial(produce_paced, bench.bootstrap, topics.raw, events, rate)
                seconds, finished = _record(pyspy, pid, target, started, paced, "--gil")
            if not finished:
                raise PipelineFailed(
                    f"worker: the backlog was not out within {PROFILE_SECONDS} s; its log:\n"
                    + "\n".join(processes.stop())
                )
            done, cpu = len(sink.seen) - int(before[0]), _cpu_seconds(pid) - before[1]
        finally:
            sink.stop()
            processes.stop()
    # The worker ran its code and model from the scratch folder, which is gone after the run. Frames keep
    # a leading "/stream_tagger/", which ``package_of`` reads.
    target.write_text(
        target.read_text().replace(f"{bench.scratch}/code", "").replace(f"{bench.scratch}/", "")
    )
    return done, cpu, seconds


def profile(bench: Any, out: Path, about: str) -> None:
    """``about``: one line on what is profiled (broker, code, model, machine load), heading the summary."""
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not pyspy:
        sys.exit("error: py-spy is not installed (pip install -e '.[dev]')")
    views = [
        ("saturation", None, "draining a backlog: on-CPU samples"),
        ("gil-1000", LOW_LOAD_PER_S, f"{LOW_LOAD_PER_S:,.0f} events/s offered: who holds the GIL"),
    ]
    sections = ["# Worker profile (py-spy)", "", about, ""]
    for name, rate, title in views:
        target = out / f"profile-worker-{name}.speedscope.json"
        print(f"profiling the worker: {title}", file=sys.stderr)
        done, cpu, seconds = _profile_one(bench, pyspy, target, rate)
        speedscope = json.loads(target.read_text())
        sections.append(summarize(speedscope, f"{title} ({done:,} events came out while recording)", seconds))
        if rate is None and done:
            sections.append(where_time_goes(speedscope, done, cpu))
    summary = "\n".join(sections)
    (out / "profile-worker.md").write_text(summary + "\n")
    print(summary)
    print(f"\nwrote {out / 'profile-worker.md'} and the speedscope files beside it", file=sys.stderr)
