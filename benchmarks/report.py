"""What a benchmark run shows: targets with PASS/FAIL, tables on stdout, JSON, one PNG for the README."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

LABELS = {
    "passthrough": "confluent-kafka passthrough (ceiling)",
    "sklearn": "confluent-kafka + sklearn per msg",
    "faust": "Faust agent, iterate only",
    "worker": "stream-tagger worker",
    "worker-split": "stream-tagger worker + feedback-worker",
}
SHORT = {
    "passthrough": "passthrough\n(ceiling)",
    "sklearn": "sklearn\nper msg",
    "faust": "Faust agent\niterate only",
    "worker": "stream-tagger\nworker",
    "worker-split": "worker +\nfeedback-worker",
}
COLORS = {
    "passthrough": "tab:gray",
    "sklearn": "tab:orange",
    "faust": "tab:purple",
    "worker": "tab:blue",
    "worker-split": "tab:green",
}


def _load(results: dict, kind: str, label: str) -> dict:
    loads = results["pipelines"].get(kind, {}).get("loads", [])
    return next((entry for entry in loads if entry.get("label") == label), {})


def _rate(results: dict, kind: str) -> float:
    return results["pipelines"].get(kind, {}).get("saturation", {}).get("events_per_s", math.nan)


def check_targets(results: dict) -> list[dict[str, Any]]:
    """The issue's targets, for our worker alone and beside the feedback worker a deployment runs."""
    sklearn = _rate(results, "sklearn")
    targets = []
    for kind in ("worker", "worker-split"):
        if kind not in results["pipelines"]:
            continue
        rate = _rate(results, kind)
        own = results["pipelines"][kind]
        runs = [own["saturation"], *own["loads"]]
        if kind == "worker":
            runs += [*results["sweeps"]["batch_max_size"], *results["sweeps"]["workers"]]
        rows = [
            ("throughput (events/s)", rate, ">=", 20_000.0),
            ("speed-up over the sklearn loop", rate / sklearn if sklearn else math.nan, ">=", 10.0),
            (
                "p99 latency at 1,000/s (ms)",
                _load(results, kind, "1,000/s").get("latency_ms", {}).get("p99", math.nan),
                "<",
                20.0,
            ),
            (
                "p99 latency at 80% of saturation (ms)",
                _load(results, kind, "80% of saturation").get("latency_ms", {}).get("p99", math.nan),
                "<",
                100.0,
            ),
            (
                "peak RSS of any one process (MB)",
                max(r.get("peak_rss_mb", math.nan) for r in runs),
                "<",
                300.0,
            ),
        ]
        targets += [
            {
                "pipeline": kind,
                "target": name,
                "measured": value,
                "rule": f"{op} {limit:g}",
                "pass": bool(value >= limit if op == ">=" else value < limit) and not math.isnan(value),
            }
            for name, value, op, limit in rows
        ]
    return targets


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def print_report(results: dict, console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else 150)
    meta = results["meta"]
    m = meta["machine"]
    console.print(
        f"[bold]stream-tagger benchmarks[/] {meta['date']}  {m['nproc']} cores, "
        f"{m['ram_gib']} GiB, {meta['events']:,} events, {meta['partitions']} partitions, "
        f"{meta['broker']}"
    )

    table = Table(title="Saturation: N events pre-produced, drained as fast as possible")
    for col in (
        "pipeline",
        "events/s",
        "x sklearn",
        "CPU µs/event",
        "cores busy",
        "broker cores",
        "peak RSS MB",
        "note",
    ):
        table.add_column(col, justify="left" if col in ("pipeline", "note") else "right")
    sklearn = _rate(results, "sklearn")
    for kind, entry in results["pipelines"].items():
        sat = entry["saturation"]
        rate = sat.get("events_per_s")
        note = f"time-capped: {sat['delivered']:,} of {sat['sent']:,}" if sat.get("time_capped") else ""
        note = "failed (see the JSON)" if "error" in sat else note or _runs(sat)
        table.add_row(
            LABELS[kind],
            _fmt(rate),
            _fmt(rate / sklearn if rate and sklearn else None, 1),
            _fmt(sat.get("cpu_us_per_event")),
            _fmt(sat.get("cores_busy"), 2),
            _fmt(sat.get("broker_cores_busy"), 2),
            _fmt(sat.get("peak_rss_mb")),
            note,
        )
    console.print(table)

    table = Table(title="Latency at offered loads (ms, output CreateTime - input CreateTime)")
    cols = (
        "pipeline",
        "load",
        "offered/s",
        "delivered",
        "p50",
        "p99",
        "p99.9",
        "p50 first→last 10%",
        "CPU µs/event",
        "broker",
    )
    for col in cols:
        table.add_column(col, justify="left" if col in ("pipeline", "load") else "right")
    for kind, entry in results["pipelines"].items():
        for load in entry["loads"]:
            if load.get("over_capacity") or "error" in load:
                what = "over capacity" if load.get("over_capacity") else "failed (see the JSON)"
                table.add_row(LABELS[kind], load["label"], _fmt(load["offered_per_s"]), what)
                continue
            lat = load.get("latency_ms", {})
            table.add_row(
                LABELS[kind],
                load["label"],
                _fmt(load.get("achieved_offered_per_s")),
                f"{load['delivered']:,}/{load['sent']:,}",
                _fmt(lat.get("p50")),
                _fmt(lat.get("p99")),
                _fmt(lat.get("p99.9")),
                "→".join(_fmt(v) for v in load.get("p50_first_last_tenth_ms", [None, None])),
                _fmt(load.get("cpu_us_per_event")),
                _fmt(load.get("broker_cores_busy"), 2),
            )
    console.print(table)

    table = Table(title="Worker sweeps (saturation)")
    for col in ("configuration", "events/s", "CPU µs/event", "cores busy", "broker cores", "peak RSS MB"):
        table.add_column(col, justify="left" if col == "configuration" else "right")
    sweeps = [(f"batch_max_size={run['batch_max_size']}", run) for run in results["sweeps"]["batch_max_size"]]
    sweeps += [(f"{run['procs']} worker process(es)", run) for run in results["sweeps"]["workers"]]
    for name, run in sweeps:
        table.add_row(
            name,
            _fmt(run.get("events_per_s")),
            _fmt(run.get("cpu_us_per_event")),
            _fmt(run.get("cores_busy"), 2),
            _fmt(run.get("broker_cores_busy"), 2),
            _fmt(run.get("peak_rss_mb")),
        )
    console.print(table)

    table = Table(title="Targets")
    for col in ("pipeline", "target", "measured", "rule", "result"):
        table.add_column(col, justify="left" if col in ("pipeline", "target") else "right")
    for t in results["targets"]:
        verdict = "[green]PASS[/]" if t["pass"] else "[red]FAIL[/]"
        table.add_row(LABELS[t["pipeline"]], t["target"], _fmt(t["measured"], 1), t["rule"], verdict)
    console.print(table)


def write_json(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def write_plot(results: dict, path: Path) -> None:
    """Throughput bars (log scale: the pipelines differ by orders of magnitude) and latency-vs-load curves."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta, m = results["meta"], results["meta"]["machine"]
    fig, (bars, curves) = plt.subplots(1, 2, figsize=(13, 5.2))
    fig.suptitle(
        f"stream-tagger benchmarks, {meta['date'][:10]}: {m['nproc']} cores, "
        f"{m['ram_gib']:g} GiB RAM, embedded Tansu broker, {meta['events']:,} events, "
        f"{meta['partitions']} partitions\n(1-min load average at start: "
        f"{m['load_avg_at_start'][0]:.1f}; the machine may be shared)"
    )

    names, rates, colors = [], [], []
    for kind, entry in results["pipelines"].items():
        names.append(SHORT[kind])
        rates.append(entry["saturation"].get("events_per_s", 0.0))
        colors.append(COLORS[kind])
    for run in results["sweeps"]["batch_max_size"]:
        names.append(f"worker\nbatch {run['batch_max_size']}")
        rates.append(run.get("events_per_s", 0.0))
        colors.append("tab:cyan")
    for run in results["sweeps"]["workers"][1:]:
        names.append(f"worker\n{run['procs']} processes")
        rates.append(run.get("events_per_s", 0.0))
        colors.append("tab:cyan")
    positions = range(len(names))
    bars.bar(positions, rates, color=colors)
    bars.set_xticks(list(positions), names, fontsize=7, rotation=35, ha="right")
    bars.set_yscale("log")
    bars.set_ylabel("events/s at saturation (log)")
    bars.axhline(20_000, color="tab:red", linestyle=":", label="target 20,000/s")
    for x, rate in zip(positions, rates, strict=True):
        bars.text(x, rate, f"{rate:,.0f}", ha="center", va="bottom", fontsize=7)
    bars.legend(fontsize=8)
    bars.set_title("Throughput")

    for kind, entry in results["pipelines"].items():
        points = sorted(
            (load["achieved_offered_per_s"], load["latency_ms"])
            for load in entry["loads"]
            if "latency_ms" in load
        )
        if not points:
            continue
        xs = [x for x, _ in points]
        curves.plot(
            xs, [lat["p99"] for _, lat in points], marker="o", color=COLORS[kind], label=f"{LABELS[kind]} p99"
        )
        curves.plot(
            xs,
            [lat["p50"] for _, lat in points],
            marker=".",
            linestyle="--",
            color=COLORS[kind],
            label=f"{LABELS[kind]} p50",
        )
    curves.axhline(20, color="tab:red", linestyle=":", linewidth=1)
    curves.axhline(100, color="tab:red", linestyle=":", linewidth=1)
    curves.set_xscale("log")
    curves.set_yscale("symlog", linthresh=1.0)  # ms resolution: a p50 of 0 ms must still show
    curves.set_ylim(bottom=0)
    curves.set_xlabel("offered load, events/s (log)")
    curves.set_ylabel("end-to-end latency, ms (log above 1 ms)")
    curves.set_title("Latency vs offered load (red: 20 ms and 100 ms targets)")
    curves.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def _runs(sat: dict) -> str:
    """"median of 3: 17,100-23,000" when the rate is the median of several runs."""
    runs = sat.get("runs_events_per_s", [])
    return f"median of {len(runs)}: {_fmt(min(runs))}-{_fmt(max(runs))}" if len(runs) > 1 else ""


def write_markdown(results: dict, path: Path) -> None:
    """The same figures as the tables, in Markdown, for pasting into the README."""
    meta, m = results["meta"], results["meta"]["machine"]
    sklearn = _rate(results, "sklearn")
    lines = [
        f"Run {meta['date']}, {m['nproc']} cores, {m['ram_gib']:g} GiB RAM, {meta['events']:,} events, "
        f"{meta['partitions']} partitions, 1-min load average at start {m['load_avg_at_start'][0]:.1f}.",
        "",
    ]
    rows = []
    for kind, entry in results["pipelines"].items():
        sat = entry["saturation"]
        rate = sat.get("events_per_s")
        rows.append(
            [
                LABELS[kind],
                _fmt(rate),
                _fmt(rate / sklearn if rate and sklearn else None, 1),
                _fmt(sat.get("cpu_us_per_event")),
                _fmt(sat.get("peak_rss_mb")),
                _runs(sat),
            ]
        )
    lines += _md_table(
        ["pipeline", "events/s (saturation)", "x sklearn loop", "CPU µs/event", "peak RSS MB", "runs"], rows
    )
    rows = []
    for kind, entry in results["pipelines"].items():
        for load in entry["loads"]:
            lat = load.get("latency_ms")
            if lat is None:
                what = "over capacity" if load.get("over_capacity") else "failed"
                rows.append([LABELS[kind], load["label"], what, "", "", "", ""])
                continue
            rows.append(
                [
                    LABELS[kind],
                    load["label"],
                    _fmt(load.get("achieved_offered_per_s")),
                    _fmt(lat["p50"]),
                    _fmt(lat["p99"]),
                    _fmt(lat["p99.9"]),
                    " → ".join(_fmt(v) for v in load.get("p50_first_last_tenth_ms", [None, None])),
                ]
            )
    header = ["pipeline", "offered load", "events/s", "p50 ms", "p99 ms", "p99.9 ms", "p50 first → last 10%"]
    lines += _md_table(header, rows)
    rows = [
        [
            f"batch_max_size={r['batch_max_size']}",
            _fmt(r.get("events_per_s")),
            _fmt(r.get("cpu_us_per_event")),
        ]
        for r in results["sweeps"]["batch_max_size"]
    ]
    rows += [
        [f"{r['procs']} worker process(es)", _fmt(r.get("events_per_s")), _fmt(r.get("cpu_us_per_event"))]
        for r in results["sweeps"]["workers"]
    ]
    lines += _md_table(["worker configuration", "events/s", "CPU µs/event"], rows)
    rows = [
        [
            LABELS[t["pipeline"]],
            t["target"],
            _fmt(t["measured"], 1),
            t["rule"],
            "PASS" if t["pass"] else "FAIL",
        ]
        for t in results["targets"]
    ]
    lines += _md_table(["pipeline", "target", "measured", "rule", "result"], rows)
    path.write_text("\n".join(lines))
