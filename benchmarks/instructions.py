"""Instructions per event of each step of the worker's pipeline, counted by valgrind's callgrind.

    .venv/bin/python benchmarks/instructions.py [--model models/current] [--events 8192]

Time on this shared machine moves by a third between runs minutes apart; an instruction count does not
(the same code on the same input gives the same count within 1%), so a change to the
CPU work of one step is read here, where a timed A/B run (``run.py --code``) cannot resolve it. What
it does not show is what happens between the two threads and the cores: run.py says that.

The steps are the worker's own objects, built as ``stream-tagger worker`` builds them (every observer
attached), run in one thread on real posts in Kafka messages: decode and dedup (``Pipeline.prepare``),
featurise (``Predictor.featurize``), the ONNX graph with its sparse inputs (``Predictor.run_graph``), then
routing, the observers and encoding (``Pipeline.finish``); at full batches (4,096, what the loop takes
under a backlog) and at 256 (a partial batch under load, where the cost per batch shows); featurise and
the graph take a whole batch per call, where the worker's ``Predictor.predict`` takes 512 posts at a
time (the same instructions per post, bar a call's fixed cost). A child
Python runs under callgrind, counting from start; before each step the parent zeroes the counters and
after it dumps them (``callgrind_control``), so a step's count is its own. PYTHONHASHSEED is fixed
(dict and set layouts repeat from run to run) and the collector is tuned as a worker tunes it.

Instructions are not time: glibc fills and copies large blocks with ``rep stos``/``rep movs``, which
count once per iteration, so a step that zeroes or copies large arrays weighs more here than on a clock.
The Python of the hot-path thread (prepare, finish) counts as it runs.

Writes benchmarks/results/instructions.json and instructions.png; needs valgrind (Debian's
``valgrind``), ~2 minutes.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
BATCH_SIZES = (4_096, 256)
STEPS = (
    ("prepare", "decode and dedup (Pipeline.prepare)"),
    ("featurise", "featurise (Predictor.featurize)"),
    ("graph", "ONNX graph (Predictor.run_graph)"),
    ("finish", "route, observers, encode (Pipeline.finish)"),
)
HOT_PATH_STEPS = ("prepare", "finish")  # the hot-path thread's Python; the others release the GIL
_TOTAL = re.compile(r"^summary:\s*(\d+)", re.MULTILINE)


def child(model: Path, events: int) -> None:
    """Run under callgrind: build the worker's pipeline, then each step when the parent says so."""
    import msgspec
    from confluent_kafka import TIMESTAMP_CREATE_TIME, Message
    from prometheus_client import CollectorRegistry

    from stream_tagger.app import Worker, tune_gc, tune_malloc
    from stream_tagger.metrics import Metrics
    from stream_tagger.model.predictor import Predictor
    from stream_tagger.online.attach import Online
    from stream_tagger.settings import Settings
    from stream_tagger.tools.sources import dataset_events

    settings = Settings(model_dir=model)
    worker = Worker(settings, Predictor.load(model), metrics=Metrics(CollectorRegistry()))
    Online(worker)
    pipeline, predictor = worker.pipeline, worker.predictor

    def messages(n: int, prefix: str) -> list[Message]:
        return [
            Message(
                topic=settings.topic_raw,
                partition=0,
                offset=i,
                key=event.id.encode(),
                value=msgspec.json.encode(event),
                timestamp=(TIMESTAMP_CREATE_TIME, 1_700_000_000_000),
            )
            for i, event in enumerate(dataset_events(n, id_prefix=prefix))
        ]

    pipeline.process(messages(256, "warm"))  # first-call costs (lazy imports, caches) out of the way
    tune_gc()  # the collector and the allocator as a worker runs them
    tune_malloc()

    def step(name: str, size: int, run: Callable[[Any], Any], inputs: list[Any]) -> list[Any]:
        """``run`` over every input between the parent's zeroing and dumping of the counters; nothing else
        runs until the parent has dumped them. Each step starts with the collector's young generation
        empty, so the collections it triggers are its own."""
        gc.collect()
        print(f"ready {name} {size}", flush=True)
        sys.stdin.readline()
        out = [run(item) for item in inputs]
        print("done", flush=True)
        sys.stdin.readline()
        return out

    for size in BATCH_SIZES:
        # Every size gets the same posts (one resampled stream of the dataset, cut into batches) under
        # ids of its own: ids the dedup window remembers would not be scored again.
        stream = messages(batches_of(size, events) * size, f"stream{size}")
        batches = [stream[start : start + size] for start in range(0, len(stream), size)]
        prepared = step("prepare", size, pipeline.prepare, batches)
        features = step("featurise", size, predictor.featurize, [batch.texts for batch in prepared])
        step("graph", size, predictor.run_graph, features)
        for batch in prepared:  # scored again, uncounted, the way finish() expects it
            for task in pipeline.scoring_tasks(batch):
                task()
        step("finish", size, pipeline.finish, prepared)
    print("end", flush=True)


def count(model: Path, events: int, keep: Path | None = None) -> dict[str, dict[str, float]]:
    """Instructions per event of each step at each batch size: {size: {step: count}}; with ``keep``,
    each step's callgrind file is copied there (``callgrind_annotate --inclusive=yes`` reads it)."""
    scratch = Path(tempfile.mkdtemp(prefix="stream-tagger-callgrind-"))
    out_file = scratch / "callgrind.out"
    cmd = [
        "valgrind",
        "--tool=callgrind",
        "--quiet",
        # A file per thread, and only the main thread's counted: under valgrind an idle onnxruntime
        # thread executes instructions (tens of millions per step) that it does not natively.
        "--separate-threads=yes",
        f"--callgrind-out-file={out_file}",
        sys.executable,
        __file__,
        "--child",
        "--model",
        str(model),
        "--events",
        str(events),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO)
    assert proc.stdin is not None and proc.stdout is not None
    results: dict[str, dict[str, float]] = {}
    try:
        while (line := proc.stdout.readline().split()) and line[0] == "ready":
            _, name, size = line
            control("--zero", proc.pid)
            proc.stdin.write("go\n")
            proc.stdin.flush()
            if proc.stdout.readline().strip() != "done":
                raise RuntimeError(f"the child stopped during step {name} at batch {size}")
            dumps = set(scratch.iterdir())
            control(f"--dump={name}-{size}", proc.pid)
            proc.stdin.write("next\n")  # the child goes on only once its counters are read
            proc.stdin.flush()
            (dump,) = [path for path in set(scratch.iterdir()) - dumps if path.name.endswith("-01")]
            total = _TOTAL.search(dump.read_text())
            if keep is not None:
                keep.mkdir(parents=True, exist_ok=True)
                shutil.copy(dump, keep / f"callgrind.{name}-{size}")
            if total is None:
                raise RuntimeError(f"{dump}: no summary line")
            results.setdefault(size, {})[name] = int(total[1]) / (batches_of(int(size), events) * int(size))
            print(f"  {name:<10} batch {size:>5}: {results[size][name]:>10,.0f} instructions per event")
        if proc.wait(timeout=600) != 0:
            raise RuntimeError(f"the child exited {proc.returncode}")
    finally:
        if proc.poll() is None:
            proc.kill()
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def batches_of(size: int, events: int) -> int:
    """How many batches of ``size`` a run of about ``events`` events takes (at least one)."""
    return max(1, events // size)


def control(option: str, pid: int) -> None:
    """Zero or dump the counters of the callgrind run ``pid`` (it answers while blocked on stdin)."""
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=120)


def plot(results: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.4))
    sizes = list(results)
    left = [0.0] * len(sizes)
    for name, label in STEPS:
        widths = [results[size][name] for size in sizes]
        ax.barh([f"batch {int(s):,}" for s in sizes], widths, left=left, label=label)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.set_xlabel("instructions per event (callgrind)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.28), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", type=Path, default=REPO / "models" / "current")
    ap.add_argument("--events", type=int, default=8_192, help="events per batch size (default 8,192)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--keep", type=Path, help="also keep each step's callgrind file in this folder")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.model, args.events)
        return
    for tool in ("valgrind", "callgrind_control"):
        if shutil.which(tool) is None:
            sys.exit(f"error: {tool} not found: install valgrind (Debian: apt-get install valgrind)")
    from stream_tagger.model.versions import resolve

    version = resolve(args.model).name
    print(f"callgrind on model {version}, {args.events:,} events per batch size")
    results = count(args.model, args.events, args.keep)
    import numpy
    import onnxruntime

    valgrind = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    data = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "model_version": version,
        "events_per_batch_size": {str(size): batches_of(size, args.events) * size for size in BATCH_SIZES},
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "python": platform.python_version(),
            "numpy": numpy.__version__,
            "onnxruntime": onnxruntime.__version__,
            "valgrind": valgrind,
        },
        "steps": dict(STEPS),
        "hot_path_steps": list(HOT_PATH_STEPS),
        "instructions_per_event": results,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "instructions.json").write_text(json.dumps(data, indent=1) + "\n")
    plot(results, args.out / "instructions.png")
    print(f"wrote {args.out / 'instructions.json'} and instructions.png")


if __name__ == "__main__":
    main()
