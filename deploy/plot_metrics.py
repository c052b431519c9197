"""Plot a running worker's metrics over time into one PNG, without Prometheus or Grafana.

For the README (docs/img/) and for a quick look at a demo run: scrape ``/metrics`` every
``--interval`` seconds for ``--seconds`` seconds, then draw throughput by outcome, end-to-end and
inference latency percentiles, and the confidence distribution per tag. Quantiles are computed from
the histogram buckets the way PromQL's ``histogram_quantile`` does, so the picture matches what the
Grafana dashboard shows for the same run.

    .venv/bin/python deploy/plot_metrics.py --url http://127.0.0.1:6066/metrics --seconds 60
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter
from prometheus_client.parser import text_string_to_metric_families

PREFIX = "stream_tagger_"
QUANTILES = (0.5, 0.95, 0.99)
OUTCOME_COLOURS = {"tagged": "tab:green", "review": "tab:orange", "dead_letter": "tab:red"}


@dataclass(frozen=True)
class Snapshot:
    """One scrape: sample (name, sorted label pairs) -> value."""

    at: float
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]

    def select(self, name: str, **match: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {
            labels: value
            for (sample, labels), value in self.samples.items()
            if sample == name and all((k, v) in labels for k, v in match.items())
        }


def parse(text: str, at: float) -> Snapshot:
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    return Snapshot(at, samples)


def scrape(url: str) -> Snapshot:
    with urllib.request.urlopen(url, timeout=5) as response:
        return parse(response.read().decode(), time.time())


def collect(url: str, seconds: float, interval: float) -> list[Snapshot]:
    snapshots = [scrape(url)]
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(interval)
        snapshots.append(scrape(url))
    return snapshots


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """PromQL's estimate: linear interpolation inside the bucket holding rank ``q * total``."""
    ordered = sorted(buckets)
    total = ordered[-1][1] if ordered else 0.0
    if total <= 0:
        return math.nan
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / max(
                count - lower_count, 1e-12
            )
        lower_bound, lower_count = bound, count
    return lower_bound


def bucket_deltas(earlier: Snapshot, later: Snapshot, name: str, **match: str) -> list[tuple[float, float]]:
    """Cumulative bucket counts added between two scrapes, summed over every other label."""
    totals: dict[float, float] = defaultdict(float)
    before = earlier.select(name, **match)
    for labels, value in later.select(name, **match).items():
        totals[float(dict(labels)["le"])] += value - before.get(labels, 0.0)
    return sorted(totals.items())


def counter_rates(snapshots: Sequence[Snapshot], name: str, by: str) -> dict[str, list[tuple[float, float]]]:
    """Per-second increase of a counter between consecutive scrapes, per value of label ``by``."""
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for earlier, later in itertools.pairwise(snapshots):
        elapsed = later.at - earlier.at
        before = earlier.select(name)
        for labels, value in later.select(name).items():
            key = dict(labels).get(by, "")
            series[key].append((later.at - snapshots[0].at, (value - before.get(labels, 0.0)) / elapsed))
    return dict(series)


def quantile_series(
    snapshots: Sequence[Snapshot], name: str, window: int = 3
) -> dict[float, list[tuple[float, float]]]:
    """p50/p95/p99 over a sliding window of ``window`` scrape intervals (like rate(...[window]))."""
    out: dict[float, list[tuple[float, float]]] = {q: [] for q in QUANTILES}
    for i in range(1, len(snapshots)):
        deltas = bucket_deltas(snapshots[max(0, i - window)], snapshots[i], name)
        for q in QUANTILES:
            value = histogram_quantile(q, deltas)
            if not math.isnan(value):
                out[q].append((snapshots[i].at - snapshots[0].at, value * 1000))
    return out


def plain_log_ticks(ax: plt.Axes) -> None:
    """Label a log axis 20, 50, 100 (not 2x10^1, and not every minor tick): read as ms and counts."""
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    ax.yaxis.set_minor_formatter(
        FuncFormatter(lambda value, _pos: f"{value:g}" if f"{value:e}"[0] in "25" else "")
    )


def legend(ax: plt.Axes, where: str = "upper right") -> None:
    """A legend only where something was drawn: an idle worker has no latency series yet."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc=where, fontsize=8)


def plot(snapshots: Sequence[Snapshot], out: Path, title: str) -> None:
    fig, axes = plt.subplots(2, 2, figsize=(12, 7.5), constrained_layout=True)
    fig.suptitle(title, fontsize=13)

    ax = axes[0][0]
    for outcome, points in sorted(
        counter_rates(snapshots, PREFIX + "events_processed_total", "outcome").items()
    ):
        ax.plot(*zip(*points, strict=True), label=outcome, color=OUTCOME_COLOURS.get(outcome))
    ax.set(title="Throughput by outcome", xlabel="seconds", ylabel="events/s")
    legend(ax)

    for ax, metric, label in (
        (axes[0][1], "end_to_end_latency_seconds", "End-to-end latency (Kafka timestamp → ack)"),
        (axes[1][0], "inference_seconds", "Inference latency per micro-batch"),
    ):
        for q, points in quantile_series(snapshots, PREFIX + metric + "_bucket").items():
            if points:
                ax.plot(*zip(*points, strict=True), label=f"p{round(q * 100)}")
        # log scale: p50 and p99 are often an order of magnitude apart
        ax.set(title=label, xlabel="seconds", ylabel="ms (log scale)", yscale="log")
        plain_log_ticks(ax)
        legend(ax)
    axes[0][1].axhline(100, color="tab:red", linestyle="--", linewidth=1, label="budget 100 ms")
    legend(axes[0][1])

    ax = axes[1][1]
    last = snapshots[-1]
    tags = sorted({dict(labels)["tag"] for labels in last.select(PREFIX + "confidence_bucket")})
    width = 0.8 / max(len(tags), 1)
    for i, tag in enumerate(tags):
        cumulative = bucket_deltas(snapshots[0], last, PREFIX + "confidence_bucket", tag=tag)
        bounds = [b for b, _ in cumulative if not math.isinf(b)]
        counts = [c for b, c in cumulative if not math.isinf(b)]
        per_bucket = [c - p for c, p in zip(counts, [0.0, *counts[:-1]], strict=True)]
        positions = [j + i * width for j in range(len(bounds))]
        ax.bar(positions, per_bucket, width=width, label=tag)
        ax.set_xticks(
            [j + 0.4 - width / 2 for j in range(len(bounds))], [f"≤{b:g}" for b in bounds], fontsize=7
        )
    if not tags:
        ax.text(0.5, 0.5, "no confidence observations yet", ha="center", va="center", transform=ax.transAxes)
    # log scale: the few low-confidence posts (the ones sent to review) would be invisible otherwise
    ax.set(
        title="Top-1 confidence per tag", xlabel="confidence bucket (upper bound)", ylabel="posts (log scale)"
    )
    ax.set_yscale("log")
    plain_log_ticks(ax)
    legend(ax, "upper left")

    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:6066/metrics")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=Path("docs/img/demo-metrics.png"))
    parser.add_argument("--title", default="stream-tagger: a demo run")
    args = parser.parse_args(argv)
    plot(collect(args.url, args.seconds, args.interval), args.out, args.title)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
