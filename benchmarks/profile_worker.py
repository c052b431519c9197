"""Where the worker's time goes: py-spy attached to it in three situations (``run.py --profile``).

1. ``saturation``: draining a pre-produced backlog, active samples (on a core or waiting for one): what
   it burns CPU on when busy.
2. ``gil-1000``: at 1,000 events/s offered, ``--gil`` samples (only the thread holding the GIL): who keeps
   the hot-path thread waiting, which is what latency at low load is made of.
3. ``load``: at ``run.py --profile-load`` events/s offered (default 40,000), ``--idle`` samples (every
   thread, busy or not): the partial batches of a loop that keeps up only just, where the latency near
   saturation is made. Its table shares each thread's wall time out by what it was doing or waiting on
   (new input, the other thread, the broker's acks); the thread table says how much of it was spent
   waiting for a core.

Writes ``profile-worker-<view>.speedscope.json`` (open at https://www.speedscope.app) and
``profile-worker.md``: per thread, samples grouped by the package of the innermost frame, and the
worker's own functions by inclusive share. py-spy sees Python threads only: time inside a C extension
(onnxruntime, librdkafka, msgspec) is charged to the Python frame that called it, and librdkafka's own
threads are not seen.

How busy each thread was comes from the kernel, not from the samples: py-spy counts a thread that is
runnable but waiting for a core as active, so on a machine with more runnable threads than cores its
shares read as "on CPU" what is queueing. ``/proc/<pid>/task/<tid>/schedstat`` splits the window into
on a core, waiting for one, and asleep (I/O, a lock, the GIL); ``/proc/stat`` and each process's CPU
say who else took the cores meanwhile (the broker, the harness). py-spy runs ``--nonblocking``: by
default it stops the process for every sample, which slowed the drain by a fifth to a third.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from harness import Sink, _cpu_seconds, machine_times, produce_bulk, produce_paced

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
#: A sample whose innermost frame is one of these is on that function's own lines or in C code called
#: from them. The loop's are mostly consume() (librdkafka, the GIL released) and the freeing of the
#: batch published before (its messages and records, when the loop lets go of it); the pool worker's are
#: mostly its wait for the next chunk (seen in ``--idle`` samples only).
INNERMOST = {
    "HotPath.run": "consume (librdkafka consume()), and freeing the batch before",
    "_worker": "between chunks (the scoring thread waiting for one)",
}
HOT_THREADS = ("hot-path", "scoring")
#: Which threads py-spy samples, as its option: those on a core or waiting for one, the one holding the
#: GIL, or all of them.
ACTIVE, GIL, IDLE = "", "--gil", "--idle"
#: How py-spy names a thread's profile: its thread id and Python name.
_PROFILE_NAME = re.compile(r'Thread (\d+) "(.*)"')


def thread_times(pid: int) -> dict[int, tuple[str, float, float]]:
    """Per thread of ``pid``: (kernel name, seconds on a core, seconds runnable but waiting for one)."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as comm, open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                on_cpu, waiting = (int(v) / 1e9 for v in f.read().split()[:2])
                out[int(tid)] = (comm.read().strip(), on_cpu, waiting)
        except OSError:  # the thread ended
            continue
    return out


@dataclass
class Window:
    """What the kernel says of the worker's threads and of the machine over the window recorded. A thread
    that ended during the window is left out; one that started during it counts as asleep before."""

    pid: int
    others: dict[str, int]  # other processes sharing the cores, by what they are (the broker, ...)
    seconds: float = 0.0
    threads: dict[int, tuple[str, float, float]] = field(default_factory=dict)
    machine: tuple[float, float, float] = (0.0, 0.0, 0.0)
    processes: dict[str, float] = field(default_factory=dict)
    _began: float = 0.0

    def start(self) -> None:
        self.threads, self.machine = thread_times(self.pid), machine_times()
        self.processes = {name: _cpu_seconds(pid) for name, pid in self._all().items()}
        self._began = time.monotonic()

    def stop(self) -> None:
        """From now on the fields hold what happened between ``start`` and now."""
        self.seconds = time.monotonic() - self._began
        before = self.threads
        self.threads = {}
        for tid, (name, on_cpu, waiting) in thread_times(self.pid).items():
            _, on_cpu_before, waiting_before = before.get(tid, (name, 0.0, 0.0))  # 0: a thread started since
            self.threads[tid] = (name, on_cpu - on_cpu_before, waiting - waiting_before)
        self.machine = tuple(now - then for now, then in zip(machine_times(), self.machine, strict=True))
        self.processes = {name: _cpu_seconds(pid) - self.processes[name] for name, pid in self._all().items()}

    def _all(self) -> dict[str, int]:
        return {"worker": self.pid, **self.others}

    def describe(self, names: dict[int, str]) -> str:
        """Markdown: the machine's cores by process, and per busy thread of the worker where its time
        went. ``names``: Python's thread names by thread id (py-spy's), else the kernel's is shown."""
        cores = os.cpu_count() or 1
        busy, idle, stolen = self.machine
        known = sum(self.processes.values())
        lines = [
            f"**Cores over the {self.seconds:.1f} s** ({cores} cores): busy {busy / self.seconds:.2f}, idle "
            f"{idle / self.seconds:.2f}, stolen by the hypervisor {stolen / self.seconds:.2f}; "
            + ", ".join(f"{name} {cpu / self.seconds:.2f}" for name, cpu in self.processes.items())
            + f", everything else {max(busy - known, 0.0) / self.seconds:.2f}.",
            "",
            "| worker thread | on a core | waiting for a core | asleep (I/O, locks, the GIL) |",
            "|---|---|---|---|",
        ]
        for tid, (name, on_cpu, waiting) in sorted(self.threads.items(), key=lambda t: -t[1][1]):
            if on_cpu + waiting < 0.02 * self.seconds:
                continue
            asleep = max(self.seconds - on_cpu - waiting, 0.0)
            lines.append(
                f"| {_thread_name(names.get(tid, f'{name} ({tid})'))} | {on_cpu / self.seconds:.0%} | "
                f"{waiting / self.seconds:.0%} | {asleep / self.seconds:.0%} |"
            )
        return "\n".join([*lines, ""])


def python_thread_names(speedscope: dict[str, Any]) -> dict[int, str]:
    """Thread id -> Python thread name, from py-spy's profile names (``Thread 123 "hot-path"``)."""
    names = {}
    for profile in speedscope["profiles"]:
        match = _PROFILE_NAME.match(profile["name"])
        if match:
            names[int(match.group(1))] = match.group(2)
    return names


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


def summarize(
    speedscope: dict[str, Any], title: str, window: Window, top: int = 10, idle: bool = False
) -> str:
    """Markdown: where the cores went over the ``window`` (kernel figures), then per Python thread its
    samples, self time by package, and the heaviest frames by inclusive share (frames on every sample,
    the thread's entry points, left out). ``idle``: every thread was sampled, busy or not, so only the
    hot-path and scoring threads are shown (the others spend the window waiting)."""
    frames = speedscope["shared"]["frames"]
    lines = [f"## {title}", "", window.describe(python_thread_names(speedscope))]
    total = sum(len(p["samples"]) for p in speedscope["profiles"])
    for profile in sorted(speedscope["profiles"], key=lambda p: -len(p["samples"])):
        samples = [stack for stack in profile["samples"] if stack]
        n = len(samples)
        if n < total * 0.02 or (idle and not any(t in profile["name"] for t in HOT_THREADS)):
            continue
        self_by_package = Counter(package_of(frames[stack[-1]]["file"]) for stack in samples)
        inclusive: Counter[str] = Counter()
        for stack in samples:
            inclusive.update({_frame(frames[i]) for i in stack})  # one count per function, whatever the line
        heavy = [(name, c) for name, c in inclusive.most_common() if c < 0.95 * n][:top]
        lines += [
            f"### {_thread_name(profile['name'])}: {n:,} samples",
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
    return INNERMOST.get(names[-1], "other") if names else "other"


def _by_category(speedscope: dict[str, Any]) -> list[tuple[str, int | None, Counter[str]]]:
    """Per profile of the hot-path or scoring thread: which of the two it is, its thread id (None when
    py-spy named it otherwise) and its samples by category."""
    frames = speedscope["shared"]["frames"]
    out = []
    for profile in speedscope["profiles"]:
        thread = next((t for t in HOT_THREADS if t in profile["name"]), None)
        if thread is None:
            continue
        match = _PROFILE_NAME.match(profile["name"])
        counts = Counter(
            _category([_frame(frames[i]).split(" (")[0] for i in stack])
            for stack in profile["samples"]
            if stack
        )
        out.append((thread, int(match.group(1)) if match else None, counts))
    return out


def where_time_goes(speedscope: dict[str, Any], events: int, window: Window) -> str:
    """Markdown: the samples of the hot-path and scoring threads by category, as shares of each thread,
    and as µs per event: each thread's seconds on a core (the kernel's, over the window) shared out as
    its samples are. Samples alone would also count the time a thread waited for a core. The worker's
    CPU per event, from /proc over the same window, is the reference: what it has beyond both threads is
    librdkafka's own threads and the rest of the process."""
    per_thread: dict[str, Counter[str]] = {t: Counter() for t in HOT_THREADS}
    on_cpu = dict.fromkeys(HOT_THREADS, 0.0)
    missing: list[str] = []  # threads sampled but without kernel times: their µs are not in the table
    for thread, tid, counts in _by_category(speedscope):
        kernel = window.threads.get(tid) if tid is not None else None
        if kernel is None:  # it ended during the window, or py-spy named it otherwise: said under the table
            missing.append(f"{thread} ({tid})")
        else:
            on_cpu[thread] += kernel[1]
        per_thread[thread].update(counts)
    share = _shares(per_thread)
    per_event = 1e6 / max(1, events)
    # Seconds on a core per category: each thread's kernel seconds shared out as its samples are.
    spent = {
        label: sum(share[t].get(label, 0.0) * on_cpu[t] for t in HOT_THREADS)
        for label in {label for t in HOT_THREADS for label in share[t]}
    }
    rows = [
        f"| {label} | "
        + " | ".join(f"{share[t].get(label, 0.0):.0%}" for t in HOT_THREADS)
        + f" | {seconds * per_event:.1f} |"
        for label, seconds in sorted(spent.items(), key=lambda item: (-item[1], item[0]))
    ]
    return "\n".join(
        [
            "### Where the time goes: the hot-path and scoring threads",
            "",
            "| work | share of hot-path thread | share of scoring thread | µs per event |",
            "|---|---|---|---|",
            *rows,
            f"| both threads, on a core | | | {sum(on_cpu.values()) * per_event:.1f} |",
            f"| the worker's CPU (/proc), all threads | | | {window.processes['worker'] * per_event:.1f} |",
            "",
            *(
                f"No kernel times for {name}: its µs per event are missing from the table.\n"
                for name in missing
            ),
        ]
    )


def where_threads_wait(speedscope: dict[str, Any]) -> str:
    """Markdown, for samples of every thread, busy or not (``--idle``): the hot-path and scoring threads'
    samples by category, as shares of each thread's samples, so of its wall time: its work and what it
    waits on (input, the other thread, the broker's acks). A thread runnable but waiting for a core or
    the GIL counts under what it waits to do; the thread table above says how long it waited for a core."""
    per_thread: dict[str, Counter[str]] = {t: Counter() for t in HOT_THREADS}
    for thread, _tid, counts in _by_category(speedscope):
        per_thread[thread].update(counts)
    share = _shares(per_thread)
    labels = sorted(
        {label for t in HOT_THREADS for label in share[t]},
        key=lambda label: -sum(share[t].get(label, 0.0) for t in HOT_THREADS),
    )
    return "\n".join(
        [
            "### Where the wall time goes: the hot-path and scoring threads",
            "",
            "| work, or what the thread waits on | share of hot-path thread | share of scoring thread |",
            "|---|---|---|",
            *(
                f"| {label} | " + " | ".join(f"{share[t].get(label, 0.0):.0%}" for t in HOT_THREADS) + " |"
                for label in labels
            ),
            "",
        ]
    )


def _shares(per_thread: dict[str, Counter[str]]) -> dict[str, dict[str, float]]:
    """Each thread's samples by category as shares of that thread's samples."""
    return {
        t: {label: c / max(1, sum(counts.values())) for label, c in counts.items()}
        for t, counts in per_thread.items()
    }


def _record(
    recording: tuple[str, Path],
    pid: int,
    started: Callable[[], object],
    until: Callable[[], object],
    *extra: str,
) -> bool:
    """py-spy on ``pid`` (``recording``: its executable and the speedscope file it writes):
    ``started()`` once it samples, then ``until()`` (at most ``PROFILE_SECONDS``). Returns whether
    ``until()`` finished (did not return False).

    Attaching takes a moment: a SIGINT before py-spy samples would kill it before it writes anything,
    and the time and events before then have no samples."""
    pyspy, target = recording
    record = [
        pyspy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(PROFILE_SECONDS),
        "-r",
        str(SAMPLE_RATE_HZ),
        "--nonblocking",
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
        started()
        finished = until() is not False
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
    return finished


def _profile_one(
    bench: Any, recording: tuple[str, Path], rate: float | None, samples: str = ACTIVE
) -> tuple[int, Window]:
    """Start a worker, wait until it is up (imports and model loading stay out of the picture), then
    record it (``recording``: py-spy and its output file) draining a backlog
    (``rate`` None, until the backlog is out) or under ``rate`` events/s. ``samples``: py-spy's option
    for which threads it samples (``--gil``, ``--idle``; none: active ones). Returns the events that came
    out while recording and what the kernel says of that window."""
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
            came_out: list[int] = []  # the sink's count when the window starts and when it ends
            others = {"broker": bench.broker_pid, "harness": os.getpid()}
            window = Window(pid, {name: other for name, other in others.items() if other is not None})

            def started() -> None:
                came_out.append(sink.received)
                window.start()

            def until(work: Callable[[], object]) -> object:
                result = work()
                window.stop()
                came_out.append(sink.received)
                return result

            extra = [samples] if samples else []
            if rate is None:
                drained = partial(sink.wait_for, bench.mode.events, PROFILE_SECONDS, processes)
                finished = _record(recording, pid, started, partial(until, drained), *extra)
            else:
                events = encoded(int(rate * PROFILE_SECONDS), run_id)
                paced = partial(produce_paced, bench.bootstrap, topics.raw, events, rate)
                finished = _record(recording, pid, started, partial(until, paced), *extra)
            if not finished:
                raise PipelineFailed(
                    f"worker: the backlog was not out within {PROFILE_SECONDS} s; its log:\n"
                    + "\n".join(processes.stop())
                )
        finally:
            sink.stop()
            processes.stop()
    # The worker ran its code and model from the scratch folder, which is gone after the run. Frames keep
    # a leading "/stream_tagger/", which ``package_of`` reads.
    target = recording[1]
    text = target.read_text()
    target.write_text(text.replace(f"{bench.scratch}/code", "").replace(f"{bench.scratch}/", ""))
    return came_out[1] - came_out[0], window


def find_pyspy() -> str:
    """py-spy's executable (this environment's first); exits saying what to install without it. Asked
    before the broker starts and warms up, not after."""
    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not pyspy:
        sys.exit("error: py-spy is not installed (pip install -e '.[dev]')")
    return pyspy


def profile(bench: Any, out: Path, about: str, load: float, pyspy: str) -> None:
    """``about``: one line on what is profiled (broker, code, model, machine load), heading the summary;
    ``load``: the events/s of the third view; ``pyspy``: its executable (``find_pyspy``)."""
    views = [
        ("saturation", None, ACTIVE, "draining a backlog: active samples"),
        ("gil-1000", LOW_LOAD_PER_S, GIL, f"{LOW_LOAD_PER_S:,.0f} events/s offered: who holds the GIL"),
        ("load", load, IDLE, f"{load:,.0f} events/s offered: every thread, busy or not"),
    ]
    sections = ["# Worker profile (py-spy)", "", about, ""]
    for name, rate, samples, title in views:
        target = out / f"profile-worker-{name}.speedscope.json"
        print(f"profiling the worker: {title}", file=sys.stderr)
        done, window = _profile_one(bench, (pyspy, target), rate, samples)
        speedscope = json.loads(target.read_text())
        heading = f"{title} ({done:,} events came out while recording)"
        sections.append(summarize(speedscope, heading, window, idle=samples == IDLE))
        if samples == IDLE:
            sections.append(where_threads_wait(speedscope))
        elif samples == ACTIVE and done:
            sections.append(where_time_goes(speedscope, done, window))
    summary = "\n".join(sections)
    (out / "profile-worker.md").write_text(summary + "\n")
    print(summary)
    print(f"\nwrote {out / 'profile-worker.md'} and the speedscope files beside it", file=sys.stderr)
