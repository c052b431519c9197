"""What a benchmark run shows: ratios, targets with PASS/FAIL, tables on stdout, JSON, Markdown, one PNG."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

LABELS = {
    "passthrough": "confluent-kafka passthrough (ceiling)",
    "quix": "Quix Streams passthrough (JSON in, JSON out)",
    "sklearn": "confluent-kafka + scikit-learn per batch",
    "worker": "stream-tagger worker",
    "worker x2": "stream-tagger worker, 2 processes",
    "worker live": "stream-tagger worker, under live load (offered its drain rate)",
    "worker-split": "stream-tagger worker + feedback-worker",
    "faust": "Faust agent, iterate only",
}
SHORT = {
    "passthrough": "confluent-kafka\npassthrough",
    "quix": "Quix Streams\npassthrough",
    "sklearn": "scikit-learn\nper batch",
    "worker": "stream-tagger\nworker",
    "worker x2": "stream-tagger\nworker x2",
    "worker-split": "worker +\nfeedback-worker",
    "faust": "Faust agent\niterate only",
}
COLORS = {
    "passthrough": "tab:gray",
    "quix": "tab:purple",
    "sklearn": "tab:orange",
    "worker": "tab:blue",
    "worker x2": "tab:cyan",
    "worker-split": "tab:green",
    "faust": "tab:brown",
}
LOAD_LATENCY_TARGETS_MS = (("1,000/s", 20.0), ("80% of worker saturation under live load", 100.0))
RSS_TARGET_MB = 300.0
QUIX_RATIO_TARGET = 1.0


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def saturations(results: dict) -> dict[str, dict]:
    """Every saturation line of the run, in table order: the pipelines, then the worker as 2 processes."""
    lines = {kind: entry.get("saturation") or {} for kind, entry in results["pipelines"].items()}
    two = [run for run in results["sweeps"]["workers"] if run.get("procs") == 2]
    if two:
        lines["worker x2"] = two[0]
    return lines


def _rate(results: dict, kind: str) -> float | None:
    return saturations(results).get(kind, {}).get("events_per_s")


def ratios(results: dict) -> dict[str, Any]:
    """The worker's rate against the Quix Streams passthrough, the bare confluent-kafka ceiling and the
    scikit-learn loop, from the medians; and worker / Quix run by run (each pair ran back to back)."""
    worker, two, quix = _rate(results, "worker"), _rate(results, "worker x2"), _rate(results, "quix")
    ceiling, sklearn = _rate(results, "passthrough"), _rate(results, "sklearn")
    rounds = results.get("rounds", {})
    pairs = zip(rounds.get("worker", []), rounds.get("quix", []), strict=False)
    return {
        "worker_over_quix": _ratio(worker, quix),
        "worker_over_quix_per_run": [_ratio(w, q) for w, q in pairs],
        "worker_share_of_ceiling": _ratio(worker, ceiling),
        "worker_over_sklearn": _ratio(worker, sklearn),
        "worker_2procs_over_quix": _ratio(two, quix),
        "worker_2procs_share_of_ceiling": _ratio(two, ceiling),
        "quix_share_of_ceiling": _ratio(quix, ceiling),
    }


def _load(results: dict, kind: str, label: str) -> dict:
    loads = results["pipelines"].get(kind, {}).get("loads", [])
    return next((entry for entry in loads if entry.get("label") == label), {})


def worker_runs(results: dict) -> list[dict]:
    """Every run of a worker process: its saturation runs (RSS: the highest), loads and sweeps."""
    own = results["pipelines"].get("worker", {})
    return [
        own.get("saturation") or {},
        own.get("live_saturation") or {},
        *own.get("loads", []),
        *(r for s in results["sweeps"].values() for r in s),
    ]


def check_targets(results: dict) -> list[dict[str, Any]]:
    """The targets for the worker as shipped (docs/benchmarks.md)."""
    if "worker" not in results["pipelines"]:
        return []
    rows = [
        (
            f"p99 end-to-end latency at {label} (ms)",
            _load(results, "worker", label).get("latency_ms", {}).get("p99"),
            "<",
            limit,
        )
        for label, limit in LOAD_LATENCY_TARGETS_MS
    ]
    rss = [r["peak_rss_mb"] for r in worker_runs(results) if r.get("peak_rss_mb")]
    rows += [
        ("peak RSS of a worker process, any run (MB)", max(rss, default=None), "<", RSS_TARGET_MB),
        (
            "events/s as a ratio to the Quix Streams passthrough",
            ratios(results)["worker_over_quix"],
            ">=",
            1.0,
        ),
    ]
    return [
        {
            "pipeline": "worker",
            "target": name,
            "measured": value,
            "rule": f"{op} {limit:g}",
            "pass": value is not None
            and not math.isnan(value)
            and (value >= limit if op == ">=" else value < limit),
        }
        for name, value, op, limit in rows
    ]


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:,.{digits}f}"


def _x(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _runs(sat: dict) -> str:
    """ "median of 3: 17,100-23,000" when the rate is the median of several runs, or what went wrong."""
    if "error" in sat:
        return "failed (see the JSON)"
    if sat.get("time_capped"):
        return f"time-capped: {sat['delivered']:,} of {sat['sent']:,} out"
    runs = sat.get("runs_events_per_s", [])
    note = f"median of {len(runs)}: {_fmt(min(runs))}-{_fmt(max(runs))}" if len(runs) > 1 else "one run"
    if "join_s" in sat:  # several processes: timed from when all of them held partitions (GroupWatch)
        if sat["join_s"] is None:
            note += "; the group not seen settling: timed from the first output"
        else:
            joined = f"{sat['join_s']:.1f} s after the first output, {sat['events_during_join']:,} events"
            note += f"; timed from the group's join ({joined})"
    return note + _failed(sat)


def _live(live: dict) -> str:
    """The worker's saturation under live load; "≥" when its outputs kept up with what it was offered,
    which then bounds it from below."""
    rate, offered = live.get("out_per_s"), live.get("achieved_offered_per_s")
    if rate is None:
        return "-"
    return ("≥ " if offered and rate >= 0.98 * offered else "") + _fmt(rate)


def _live_runs(live: dict) -> str:
    """An A/B variant's saturation under live load and each run's, or why there is none."""
    if not live:
        return "-"
    if "error" in live or live.get("out_per_s") is None:
        return "failed (see the JSON)"
    return f"{_live(live)} ({_list(live.get('runs_out_per_s', []))}){_failed(live)}"


def share_line(results: dict) -> str | None:
    """What the latency target's share of saturation came to in this run, against the drain rate, and
    each run's p99 there: the margin the PASS or FAIL has."""
    worker = results["pipelines"].get("worker", {})
    drain = (worker.get("saturation") or {}).get("events_per_s")
    load = _load(results, "worker", LOAD_LATENCY_TARGETS_MS[1][0])
    rate, runs = load.get("offered_per_s"), load.get("runs_p99_ms")
    if not (drain and rate and runs and "live_saturation" in worker):
        return None
    return (
        f"The 80% load offered {_fmt(rate)} events/s, 80% of the worker's saturation under live load, "
        f"{rate / drain:.0%} of its drain rate; p99 of each run there: {_list(runs, 1)} ms."
    )


def _failed(entry: dict) -> str:
    return f", {entry['failed_runs']} failed" if entry.get("failed_runs") else ""


def _tick(label: str) -> str:
    """A load's label short enough for the space under its bars."""
    return label.replace(" of worker saturation under live load", " of live\nsaturation")


def ramp(meta: dict) -> str:
    """The ramp before a paced run's measured events, if the run had one (decision 029)."""
    return f" (after a {meta['ramp_seconds']:g} s ramp)" if meta.get("ramp_seconds") else ""


def headline(results: dict) -> list[str]:
    """Date, machine, broker, versions and the model served, in two lines."""
    meta = results["meta"]
    m, v, code = meta["machine"], meta.get("versions", {}), meta.get("code") or {}
    during = m.get("load_avg_1min_during") or {}
    load = f"1-min load average {m['load_avg_at_start'][0]:.1f} at start"
    if during:
        load += f", {during['median']:.1f} median ({during['min']:.1f}-{during['max']:.1f}) during the run"
    run = "quick run (checks the harness, not figures to quote)" if meta.get("quick") else "full run"
    minutes = meta["duration_s"] / 60
    return [
        f"{run} of {meta['date']}, {minutes:.0f} min; {meta['events']:,} events per saturation run and "
        f"process{ramp(meta) and ', paced runs' + ramp(meta)}, {meta['partitions']} input partitions; "
        f"broker: {meta['broker']}; "
        f"model {meta.get('model_version')}; worker code: {code.get('source')} {code.get('commit', '')[:10]}"
        + (" plus uncommitted changes" if code.get("modified") else ""),
        f"machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']:g} GiB RAM, {m['kernel']}, "
        f"Python {m['python']}; {load}; confluent-kafka {v.get('confluent_kafka')} "
        f"(librdkafka {v.get('librdkafka')}), Quix Streams {v.get('quixstreams')}, "
        f"scikit-learn {v.get('scikit_learn')}, onnxruntime {v.get('onnxruntime')}",
    ]


def saturation_rows(results: dict) -> list[list[str]]:
    quix, ceiling = _rate(results, "quix"), _rate(results, "passthrough")
    rows = []
    for kind, sat in saturations(results).items():
        rate = sat.get("events_per_s")
        rows.append(
            [
                LABELS.get(kind, kind),
                _fmt(rate),
                _x(_ratio(rate, quix)),
                _pct(_ratio(rate, ceiling)),
                _fmt(sat.get("cpu_us_per_event")),
                _fmt(sat.get("cores_busy"), 2),
                _fmt(sat.get("broker_cores_busy"), 2),
                _fmt(sat.get("peak_rss_mb")),
                _runs(sat),
            ]
        )
    live = results["pipelines"].get("worker", {}).get("live_saturation")
    if live:
        # Not a drain, so not beside the other rows' ratios: the share of saturation the latency loads take.
        window = live.get("out_window") or {}
        rows.append(
            [
                LABELS["worker live"],
                _live(live),
                "-",
                "-",
                _fmt(window.get("cpu_us_per_event")),
                _fmt(window.get("cores_busy"), 2),
                _fmt(window.get("broker_cores_busy"), 2),
                _fmt(live.get("peak_rss_mb")),
                _runs({**live, "runs_events_per_s": live.get("runs_out_per_s", [])})
                + f"; {_fmt(live.get('offered_per_s'))}/s offered",
            ]
        )
    return rows


SATURATION_HEADER = [
    "pipeline",
    "events/s",
    "x Quix",
    "of ceiling",
    "CPU µs/event",
    "cores busy",
    "broker cores",
    "peak RSS MB",
    "runs",
]
LATENCY_HEADER = [
    "pipeline",
    "offered load",
    "events/s",
    "delivered",
    "p50 ms",
    "p99 ms",
    "p99.9 ms",
    "p99 in pipeline ms",
    "p50 first → last 10%",
    "harness floor p50 / p99 ms",
    "CPU µs/event",
    "events per batch",
    "cores: pipeline / broker / harness / idle",
    "runs (p99 ms)",
]


RATIO_HEADER = ["", "ratio", ""]
SWEEP_HEADER = ["configuration", "events/s", "CPU µs/event", "peak RSS MB"]
TARGET_HEADER = ["pipeline", "target", "measured", "rule", "result"]


def _floor(load: dict) -> str:
    """The harness's own floor in a paced run (input topic read back, no pipeline in between), if measured."""
    floor = load.get("floor_ms")
    return f"{_fmt(floor['p50'], 1)} / {_fmt(floor['p99'], 1)}" if floor else "-"


def latency_rows(results: dict) -> list[list[str]]:
    rows = []
    for kind, entry in results["pipelines"].items():
        for load in entry.get("loads", []):
            if load.get("over_capacity") or "error" in load:
                what = "over capacity" if load.get("over_capacity") else "failed (see the JSON)"
                rows.append(
                    [LABELS.get(kind, kind), load["label"], _fmt(load["offered_per_s"]), what, *[""] * 10]
                )
                continue
            lat = load.get("latency_ms", {})
            rows.append(
                [
                    LABELS.get(kind, kind),
                    load["label"],
                    _fmt(load.get("achieved_offered_per_s")),
                    f"{load['delivered']:,}/{load['sent']:,}",
                    _fmt(lat.get("p50"), 1),
                    _fmt(lat.get("p99"), 1),
                    _fmt(lat.get("p99.9"), 1),
                    _fmt(load.get("latency_created_ms", {}).get("p99")),
                    " → ".join(_fmt(v, 1) for v in load.get("p50_first_last_tenth_ms", [None, None])),
                    _floor(load),
                    _fmt(load.get("cpu_us_per_event")),
                    _fmt(load.get("events_per_batch")),
                    _cores(load),
                    _p99_runs(load),
                ]
            )
    return rows


CORES = ("cores_busy", "broker_cores_busy", "harness_cores_busy", "idle_cores")


def _cores(run: dict) -> str:
    """How the machine's cores were shared during a run; "-" for results recorded before the harness and
    the idle time were sampled."""
    shares = [run.get(key) for key in CORES]
    return "-" if None in shares else " / ".join(_fmt(v, 2) for v in shares)


def _p99_runs(load: dict) -> str:
    """ "median of 3: 17.1, 18.7, 25.0" when the run shown is the median of several (by p99)."""
    runs = load.get("runs_p99_ms", [])
    note = f"median of {len(runs)}: {_list(runs, 1)}" if len(runs) > 1 else "one run"
    return note + _failed(load)


def ratio_rows(results: dict) -> list[list[str]]:
    r = results.get("ratios") or ratios(results)
    per_run = ", ".join(_x(x) for x in r.get("worker_over_quix_per_run", []))
    return [
        ["worker / Quix Streams passthrough", _x(r.get("worker_over_quix")), f"run by run: {per_run or '-'}"],
        [
            "worker / confluent-kafka passthrough (share of the ceiling)",
            _pct(r.get("worker_share_of_ceiling")),
            "",
        ],
        ["worker / scikit-learn per batch", _x(r.get("worker_over_sklearn")), ""],
        ["worker, 2 processes / Quix Streams passthrough", _x(r.get("worker_2procs_over_quix")), ""],
        [
            "worker, 2 processes / confluent-kafka passthrough",
            _pct(r.get("worker_2procs_share_of_ceiling")),
            "",
        ],
        ["Quix Streams / confluent-kafka passthrough", _pct(r.get("quix_share_of_ceiling")), ""],
    ]


def sweep_rows(results: dict) -> list[list[str]]:
    return [
        [
            f"batch_max_size={run['batch_max_size']}",
            _fmt(run.get("events_per_s")),
            _fmt(run.get("cpu_us_per_event")),
            _fmt(run.get("peak_rss_mb")),
        ]
        for run in results["sweeps"]["batch_max_size"]
    ]


def target_rows(results: dict) -> list[list[str]]:
    return [
        [
            LABELS.get(t["pipeline"], t["pipeline"]),
            t["target"],
            _fmt(t["measured"], 2 if t["rule"].startswith(">=") else 1),
            t["rule"],
            "PASS" if t["pass"] else "FAIL",
        ]
        for t in results["targets"]
    ]


def _rich_table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    table = Table(title=title)
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 or col in ("offered load", "runs", "") else "right")
    for row in rows:
        table.add_row(*row)
    return table


def print_report(results: dict, console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else 160)
    for line in headline(results):
        console.print(line, highlight=False)
    console.print(
        _rich_table(
            "Saturation: N events pre-produced, drained as fast as possible",
            SATURATION_HEADER,
            saturation_rows(results),
        )
    )
    console.print(_rich_table("Ratios (medians)", RATIO_HEADER, ratio_rows(results)))
    console.print(
        _rich_table(
            "End-to-end latency at offered loads (ms, output received - input CreateTime)",
            LATENCY_HEADER,
            latency_rows(results),
        )
    )
    if results["sweeps"]["batch_max_size"]:
        console.print(_rich_table("Worker batch sweep (saturation)", SWEEP_HEADER, sweep_rows(results)))
    targets = [
        [*row[:-1], f"[green]{row[-1]}[/]" if row[-1] == "PASS" else f"[red]{row[-1]}[/]"]
        for row in target_rows(results)
    ]
    console.print(_rich_table("Targets", TARGET_HEADER, targets))


def write_json(results: dict, path: Path) -> None:
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")


def write_plot(results: dict, path: Path) -> None:
    """Throughput bars (log scale: the pipelines differ by orders of magnitude) and latency at each load."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, NullFormatter

    meta, m = results["meta"], results["meta"]["machine"]
    fig, (bars, lat) = plt.subplots(1, 2, figsize=(13, 5.4), gridspec_kw={"width_ratios": [3, 2]})
    fig.suptitle(
        f"stream-tagger benchmarks, {meta['date'][:10]}: {meta['broker'].split(' (')[0]}, {m['cores']} cores "
        f"({m['cpu']}), model {meta.get('model_version')}\n{meta['events']:,} events, {meta['partitions']} "
        f"partitions; 1-min load average at start {m['load_avg_at_start'][0]:.1f} (the machine is shared)",
        fontsize=10,
    )
    lines = saturations(results)
    names = [SHORT.get(k, k) for k in lines]
    rates = [sat.get("events_per_s") or 0.0 for sat in lines.values()]
    positions = range(len(names))
    bars.bar(positions, rates, color=[COLORS.get(k, "tab:gray") for k in lines])
    bars.set_xticks(list(positions), names, fontsize=8)
    bars.set_yscale("log")
    bars.set_ylim(bottom=min((r for r in rates if r > 0), default=1.0) / 3)
    bars.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    bars.set_ylabel("events/s at saturation (log)")
    quix = _rate(results, "quix")
    if quix:
        bars.axhline(quix, color="tab:purple", linestyle=":", label="Quix Streams passthrough")
        bars.legend(fontsize=8)
    for x, rate in zip(positions, rates, strict=True):
        bars.text(x, rate, f"{rate:,.0f}", ha="center", va="bottom", fontsize=8)
    bars.set_title("Throughput")

    groups = [
        (kind, load)
        for kind, e in results["pipelines"].items()
        for load in e["loads"]
        if "latency_ms" in load
    ]
    width = 0.38
    for i, (kind, load) in enumerate(groups):
        for j, point in enumerate(("p50", "p99")):
            value = load["latency_ms"][point]
            lat.bar(
                i + (j - 0.5) * width,
                value,
                width,
                color=COLORS.get(kind, "tab:gray"),
                alpha=0.55 if point == "p50" else 1.0,
            )
            lat.text(
                i + (j - 0.5) * width, value, f"{point}\n{value:,.0f}", ha="center", va="bottom", fontsize=7
            )
    for label, limit in LOAD_LATENCY_TARGETS_MS:
        lat.axhline(limit, color="tab:red", linestyle=":", linewidth=1)
        lat.text(
            -0.5,
            limit,
            f"target at {label}: {limit:g} ms",
            ha="left",
            va="bottom",
            fontsize=7,
            color="tab:red",
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1},
        )
    lat.set_xticks(
        range(len(groups)),
        [f"{SHORT.get(k, k)}\n{_tick(load['label'])}" for k, load in groups],
        fontsize=7,
    )
    lat.set_yscale("log")
    tallest = max((load["latency_ms"]["p99"] for _, load in groups), default=100.0)
    lat.set_ylim(1.0, max(tallest, 100.0) * 4)  # room for the labels above the bars
    lat.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    lat.yaxis.set_minor_formatter(NullFormatter())
    lat.set_ylabel("end-to-end latency, ms (log)")
    lat.set_title("Latency at offered loads (light: p50, dark: p99)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _md_table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return []
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
    ]


def write_markdown(results: dict, path: Path) -> None:
    """The same figures as the tables, in Markdown."""
    lines = [*(line + "." for line in headline(results)), ""]
    lines += _md_table(SATURATION_HEADER, saturation_rows(results))
    lines += _md_table(RATIO_HEADER, ratio_rows(results))
    lines += _md_table(LATENCY_HEADER, latency_rows(results))
    if results["sweeps"]["batch_max_size"]:
        lines += _md_table(SWEEP_HEADER, sweep_rows(results))
    lines += _md_table(TARGET_HEADER, target_rows(results))
    path.write_text("\n".join(lines))


def _median(values: list[float]) -> float | None:
    ordered = sorted(v for v in values if v is not None and not math.isnan(v))
    if not ordered:
        return None
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def _list(values: list[float | None], digits: int = 0) -> str:
    return ", ".join(_fmt(v, digits) for v in values)


AB_SATURATION_HEADER = [
    "code",
    "events/s",
    "x first",
    "x first, run by run",
    "under live load (runs)",
    "CPU µs/event",
    "cores busy",
    "peak RSS MB",
    "runs (events/s)",
]
AB_LATENCY_HEADER = [
    "offered load",
    "code",
    "p50",
    "p99",
    "p99.9",
    "p99 in pipeline",
    "p50 last 10%",
    "harness floor p50 / p99",
    "events per batch",
    "cores: pipeline / broker / harness / idle",
    "x first (p99)",
    "runs (p99)",
]


def ab_saturation_rows(results: dict) -> list[list[str]]:
    """Per variant: the median rate, its ratio to the first variant's, and the ratio round by round (the
    two ran back to back, so a load change on the machine hits both)."""
    ab = results["ab"]
    first = ab["variants"][0]
    base = ab["saturation"][first].get("events_per_s")
    rows = []
    for label in ab["variants"]:
        sat = ab["saturation"][label]
        paired = [_ratio(r, b) for r, b in zip(ab["rounds"][label], ab["rounds"][first], strict=True)]
        live = ab.get("live_saturation", {}).get(label, {})
        rows.append(
            [
                label,
                _fmt(sat.get("events_per_s")),
                _x(_ratio(sat.get("events_per_s"), base)),
                f"{_x(_median(paired))} ({', '.join(_x(p) for p in paired)})",
                _live_runs(live),
                _fmt(sat.get("cpu_us_per_event"), 1),
                _fmt(sat.get("cores_busy"), 2),
                _fmt(sat.get("peak_rss_mb")),
                _list(ab["rounds"][label]),
            ]
        )
    return rows


def ab_latency_rows(results: dict) -> list[list[str]]:
    """Per offered load and variant: the median over rounds of each percentile."""
    ab = results["ab"]
    rows = []
    for load in ab["loads"]:
        base = None
        for label in ab["variants"]:
            runs = [r for r in load["runs"].get(label, []) if "latency_ms" in r]

            def med(get: Any, runs: list[dict] = runs) -> float | None:
                return _median([get(r) for r in runs])

            p99 = med(lambda r: r["latency_ms"]["p99"])
            base = p99 if base is None and label == ab["variants"][0] else base
            rows.append(
                [
                    f"{load['label']} ({load['offered_per_s']:,.0f}/s)",
                    label,
                    _fmt(med(lambda r: r["latency_ms"]["p50"]), 1),
                    _fmt(p99, 1),
                    _fmt(med(lambda r: r["latency_ms"]["p99.9"]), 1),
                    _fmt(med(lambda r: r.get("latency_created_ms", {}).get("p99")), 1),
                    _fmt(med(lambda r: r["p50_first_last_tenth_ms"][1]), 1),
                    _floor({"floor_ms": {p: med(lambda r, p=p: r["floor_ms"][p]) for p in ("p50", "p99")}})
                    if all("floor_ms" in r for r in runs) and runs
                    else "-",
                    _fmt(med(lambda r: r.get("events_per_batch"))),
                    _cores({key: med(lambda r, key=key: r.get(key)) for key in CORES}),
                    _x(_ratio(p99, base)),
                    _list([r["latency_ms"]["p99"] for r in runs], 1),
                ]
            )
    return rows


def ab_headline(results: dict) -> list[str]:
    meta = results["meta"]
    m, codes = meta["machine"], meta.get("codes", {})
    during = m.get("load_avg_1min_during") or {}
    # Each variant serves the model its own revision names.
    named = "; ".join(
        f"{label} = {c['source']} {c['commit'][:10]}"
        + (" with changes" * bool(c.get("modified")))
        + f", model {c.get('model', 'not recorded')}"
        for label, c in codes.items()
    )
    load = f"1-min load average {m['load_avg_at_start'][0]:.1f} at start"
    if during:
        load += f", {during['median']:.1f} median ({during['min']:.1f}-{during['max']:.1f}) during"
    return [
        f"A/B run of {meta['date']}, {meta['duration_s'] / 60:.0f} min: {named}; interleaved run by run, "
        f"{meta['saturation_runs']} saturation runs of {meta['events']:,} events and "
        f"{meta.get('latency_runs', 1)} runs of {meta['load_seconds']:g} s per offered load"
        f"{ramp(meta)}, medians; "
        f"broker: {meta['broker']}",
        f"machine: {m['cpu']}, {m['cores']} cores; {load}",
    ]


def print_ab(results: dict, console: Console | None = None) -> None:
    console = console or Console(width=None if Console().is_terminal else 200)
    for line in ab_headline(results):
        console.print(line, highlight=False)
    console.print(_rich_table("A/B saturation", AB_SATURATION_HEADER, ab_saturation_rows(results)))
    console.print(_rich_table("A/B end-to-end latency (ms)", AB_LATENCY_HEADER, ab_latency_rows(results)))


def write_ab_markdown(results: dict, path: Path) -> None:
    lines = [*(line + "." for line in ab_headline(results)), ""]
    lines += _md_table(AB_SATURATION_HEADER, ab_saturation_rows(results))
    lines += _md_table(AB_LATENCY_HEADER, ab_latency_rows(results))
    path.write_text("\n".join(lines))
