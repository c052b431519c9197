"""Where the worker's time goes: py-spy records it draining a pre-produced backlog (``run.py --profile``).

Writes ``profile-worker.speedscope.json`` (open it at https://www.speedscope.app) and
``profile-worker.md``, a summary per thread: on-CPU samples grouped by the package of the innermost
frame (what burns the CPU), and the worker's own functions by inclusive share (which step of the hot
path it burns for). py-spy sees Python threads only: time inside a C extension (onnxruntime,
librdkafka, msgspec) is charged to the Python frame that called it, librdkafka's own threads are not seen.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from harness import Sink, produce_bulk

SAMPLE_RATE_HZ = 100
# Once the backlog is drained the worker idles, and py-spy records no idle samples.
PROFILE_SECONDS = 30
# Most specific first: a third-party file also lives under /lib/python3.x/.
_PACKAGE = (
    re.compile(r"site-packages/([A-Za-z0-9_]+)"),
    re.compile(r"/(stream_tagger)/"),
    re.compile(r"/lib/python3\.\d+/([A-Za-z0-9_]+)"),
)


def package_of(path: str) -> str:
    """``onnxruntime``, ``confluent_kafka``, ``stream_tagger``, ``asyncio`` ... from a frame's file."""
    for pattern in _PACKAGE:
        match = pattern.search(path)
        if match:
            return match.group(1)
    return path or "?"


def summarize(speedscope: dict[str, Any], top: int = 12) -> str:
    """Markdown: per Python thread, self time by package and inclusive time of stream_tagger functions."""
    frames = speedscope["shared"]["frames"]
    lines = ["# Worker profile (py-spy, on-CPU samples of Python threads)", ""]
    total = sum(len(p["samples"]) for p in speedscope["profiles"])
    for profile in sorted(speedscope["profiles"], key=lambda p: -len(p["samples"])):
        samples = profile["samples"]
        if len(samples) < total * 0.02:
            continue
        self_by_package: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        for stack in samples:
            if not stack:
                continue
            self_by_package[package_of(frames[stack[-1]]["file"])] += 1
            for name in {
                f"{frames[i]['name']} ({Path(frames[i]['file']).name})"
                for i in stack
                if "/stream_tagger/" in frames[i]["file"]
            }:
                inclusive[name] += 1
        n = len(samples)
        lines += [
            f"## {profile['name']}: {n} samples ({n / total:.0%} of all)",
            "",
            "| innermost frame's package | share |",
            "|---|---|",
        ]
        lines += [f"| {pkg} | {count / n:.0%} |" for pkg, count in self_by_package.most_common(top)]
        lines += ["", "| stream_tagger function (inclusive) | share |", "|---|---|"]
        lines += [f"| {name} | {count / n:.0%} |" for name, count in inclusive.most_common(top)]
        lines.append("")
    return "\n".join(lines)


def profile(bench: Any, out: Path) -> None:
    from run import PARTITIONS, STARTUP_TIMEOUT_S, PipelineFailed, encoded, launch, run_topics

    pyspy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not pyspy:
        sys.exit("error: py-spy is not installed (pip install -e '.[dev]')")
    target = out / "profile-worker.speedscope.json"
    n = bench.mode.events
    with run_topics(bench, "worker") as (run_id, topics):
        produce_bulk(bench.bootstrap, topics.raw, encoded(n, run_id))
        sink = Sink(bench.bootstrap, topics.outputs, PARTITIONS)
        sink.start()
        processes = launch("worker", bench, topics, f"g-{run_id}")
        try:
            if not sink.wait_for(1, STARTUP_TIMEOUT_S, processes):
                raise PipelineFailed("worker: no output; its log:\n" + "\n".join(processes.stop()))
            # Attached once the worker is up, so imports and model loading stay out of the picture.
            first = len(sink.seen)
            record = [
                pyspy,
                "record",
                "--pid",
                str(processes.procs[0].pid),
                "--duration",
                str(PROFILE_SECONDS),
                "-r",
                str(SAMPLE_RATE_HZ),
                "-f",
                "speedscope",
                "-o",
                str(target),
            ]
            subprocess.run(record, check=True, timeout=PROFILE_SECONDS + 60)
            print(f"profiled while {len(sink.seen) - first:,} events came out", file=sys.stderr)
        finally:
            sink.stop()
            processes.stop()
    summary = summarize(json.loads(target.read_text()))
    (out / "profile-worker.md").write_text(summary + "\n")
    print(summary)
    print(f"\nwrote {target} and {out / 'profile-worker.md'}", file=sys.stderr)
