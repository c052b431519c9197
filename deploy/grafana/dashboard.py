"""The stream-tagger Grafana dashboard, as code (Grafana Foundation SDK).

Code rather than hand-edited JSON so that queries are written once (the latency quantiles, the share
ratios) and a test can check every expression against the metrics the worker really exports.

Two variables make it portable: ``datasource`` (any Prometheus data source; no uid is written in) and
``job`` (the scrape jobs of the worker and the feedback worker, whatever a deployment calls them):
``query`` adds ``job=~"$job"`` to every series an expression reads.
Run ``python deploy/grafana/dashboard.py`` after a change: it rewrites
``deploy/grafana/dashboards/stream-tagger.json``, which docker-compose provisions into Grafana, and a
test fails while the committed JSON differs from what this file builds.
"""

from __future__ import annotations

import json
import re
import string
from pathlib import Path

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import heatmap, prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

from stream_tagger.settings import APPROVED_TAGS

OUTPUT = Path(__file__).resolve().parent / "dashboards" / "stream-tagger.json"
UID = "stream-tagger"
#: The data source the reader picks (variable ``datasource``).
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid="${datasource}")
#: Exported by the worker and the feedback worker alike (with every reason, before any dead letter):
#: the jobs that have it are the stream-tagger jobs.
JOB_SERIES = "stream_tagger_dead_letters_total"
QUANTILES = (0.5, 0.95, 0.99)
RATE = "[$__rate_interval]"
# A series name the processes export (or Prometheus's `up`), with its matchers if any.
_SERIES = re.compile(r"\b((?:stream_tagger|process|python)_\w+|up)\b(?:\{([^}]*)\})?")


def scoped(expr: str) -> str:
    """``expr`` reading only the series of the jobs selected in the ``job`` variable."""

    def add_job(match: re.Match[str]) -> str:
        name, matchers = match.group(1), match.group(2)
        return f'{name}{{job=~"$job"{", " + matchers if matchers else ""}}}'

    return _SERIES.sub(add_job, expr)


def variables() -> list[dash.DatasourceVariable | dash.QueryVariable]:
    return [
        dash.DatasourceVariable("datasource").label("Data source").type("prometheus"),
        dash.QueryVariable("job")
        .label("Job")
        .description("Scrape jobs of stream-tagger workers and feedback workers.")
        .datasource(DATASOURCE)
        .query(f"label_values({JOB_SERIES}, job)")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .current(model.VariableOption(selected=True, text="All", value="$__all")),
    ]


def query(expr: str, legend: str = "", fmt: PromQueryFormat | None = None) -> prometheus.Dataquery:
    q = prometheus.Dataquery().expr(scoped(expr)).legend_format(legend or "__auto").datasource(DATASOURCE)
    if fmt is not None:
        q = q.format(fmt)
    if fmt is PromQueryFormat.TABLE:
        q = q.instant()
    return q


def quantile_queries(histogram: str, by: str = "", legend_suffix: str = "") -> list[prometheus.Dataquery]:
    """p50/p95/p99 of a histogram, summed over every label except ``by``."""
    keep = f"le, {by}" if by else "le"
    return [
        query(
            f"histogram_quantile({q}, sum by ({keep}) (rate({histogram}_bucket{RATE})))",
            f"p{round(q * 100)}{legend_suffix}",
        )
        for q in QUANTILES
    ]


def ratio(numerator: str, denominator: str) -> str:
    return f"sum(rate({numerator}{RATE})) / sum(rate({denominator}{RATE}))"


def thresholds(*steps: tuple[float | None, str]) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(model.ThresholdsMode.ABSOLUTE)
        .steps([model.Threshold(value=value, color=color) for value, color in steps])
    )


def hide_columns(*names: str) -> model.DataTransformerConfig:
    """Instant-query tables carry Time (and Value) columns that mean nothing to a reader."""
    return model.DataTransformerConfig(
        id_val="organize", options={"excludeByName": dict.fromkeys(names, True)}
    )


def graph(
    title: str, description: str, unit: str, targets: list[prometheus.Dataquery], width: int = 8
) -> timeseries.Panel:
    return (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .unit(unit)
        .targets(targets)
        .height(8)
        .span(width)
        .legend(
            common_b.VizLegendOptions()
            .show_legend(True)
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
        )
    )


def with_limit_line(panel: timeseries.Panel, limit: float) -> timeseries.Panel:
    """Draw the alert threshold on the graph so a reader sees the margin, not just the value."""
    return panel.thresholds(thresholds((None, "green"), (limit, "red"))).thresholds_style(
        common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED)
    )


def flow_row(d: dash.Dashboard) -> None:
    d.with_row(dash.Row("Flow"))
    d.with_panel(
        stat.Panel()
        .title("Processes up")
        .description("Scrape targets of the selected jobs that answer.")
        .datasource(DATASOURCE)
        .with_target(query("sum(up)", "up"))
        .thresholds(thresholds((None, "red"), (1, "green")))
        .height(8)
        .span(3)
    )
    d.with_panel(
        stat.Panel()
        .title("Since last acked batch")
        .description(
            "Seconds since the broker acked the last batch; grows while the worker is stalled or idle."
        )
        .datasource(DATASOURCE)
        .with_target(query("time() - max(stream_tagger_last_processed_timestamp_seconds)", "age"))
        .unit("s")
        .thresholds(thresholds((None, "green"), (60, "red")))
        .height(8)
        .span(3)
    )
    d.with_panel(
        graph(
            "Throughput by outcome",
            "Inputs per second by their one outcome, counted after the broker acked the output.",
            "ops",
            [
                query(f"sum by (outcome) (rate(stream_tagger_events_processed_total{RATE}))", "{{outcome}}"),
                query(f"sum(rate(stream_tagger_events_consumed_total{RATE}))", "consumed"),
            ],
            width=9,
        ).stacking(common_b.StackingConfig().mode(common.StackingMode.NONE))
    )
    d.with_panel(
        graph(
            "Consumer lag",
            "End offset minus committed offset per partition. Alert: growing and above 1000 for 10 min.",
            "short",
            [query("sum by (topic, partition) (stream_tagger_consumer_lag)", "{{topic}}[{{partition}}]")],
            width=9,
        )
    )
    d.with_panel(
        with_limit_line(
            graph(
                "Review share",
                "Scored posts under the confidence threshold, sent to human review. Alert above 30%.",
                "percentunit",
                [
                    query(
                        ratio(
                            'stream_tagger_events_processed_total{outcome="review"}',
                            'stream_tagger_events_processed_total{outcome=~"tagged|review"}',
                        ),
                        "review share",
                    )
                ],
            ),
            0.3,
        ).min(0)
    )
    d.with_panel(
        graph(
            "Dead letters by reason",
            "Malformed inputs per second by reason; the dead-letter topic holds the messages.",
            "ops",
            [query(f"sum by (reason) (rate(stream_tagger_dead_letters_total{RATE}))", "{{reason}}")],
        ).draw_style(common.GraphDrawStyle.BARS)
    )
    d.with_panel(
        graph(
            "Duplicates and feedback",
            "Posts flagged as duplicates, corrections received per source, and what the feedback join let "
            "go of unjudged (parked corrections replaced by later ones, entries past the retention).",
            "ops",
            [
                query(f"sum(rate(stream_tagger_duplicates_total{RATE}))", "duplicates"),
                query(f"sum by (source) (rate(stream_tagger_feedback_total{RATE}))", "feedback {{source}}"),
                query(
                    f"sum by (reason) (rate(stream_tagger_feedback_forgotten_total{RATE}))",
                    "forgotten {{reason}}",
                ),
            ],
        )
    )
    d.with_panel(
        graph(
            "Isolated failures",
            "What the worker survived: batch observers that raised (the batch was published without "
            "them) and shadow models that turned themselves off. Messages it raised on are the "
            "internal_error dead letters.",
            "short",
            [
                query(
                    f"sum by (observer) (increase(stream_tagger_observer_errors_total{RATE}))",
                    "observer {{observer}}",
                ),
                query(
                    f"sum by (model_version) (increase(stream_tagger_shadow_failures_total{RATE}))",
                    "shadow {{model_version}} off",
                ),
            ],
        ).draw_style(common.GraphDrawStyle.BARS)
    )


def latency_row(d: dash.Dashboard) -> None:
    d.with_row(dash.Row("Latency"))
    d.with_panel(
        with_limit_line(
            graph(
                "End-to-end latency",
                "Kafka timestamp of the raw message to broker ack of its output. Budget: p99 under 100 ms.",
                "s",
                quantile_queries("stream_tagger_end_to_end_latency_seconds"),
            ),
            0.1,
        )
    )
    d.with_panel(
        graph(
            "Inference latency per micro-batch",
            "ONNX time per micro-batch (or part of one), per model version and role (live, shadow).",
            "s",
            quantile_queries(
                "stream_tagger_inference_seconds", "model_version, role", " {{role}} {{model_version}}"
            ),
        )
    )
    d.with_panel(
        graph(
            "Micro-batch size",
            "Events per micro-batch: larger batches mean the worker is catching up.",
            "short",
            [
                query(ratio("stream_tagger_batch_size_sum", "stream_tagger_batch_size_count"), "mean"),
                *quantile_queries("stream_tagger_batch_size")[2:],
            ],
        )
    )


def model_row(d: dash.Dashboard) -> None:
    d.with_row(dash.Row("Model"))
    d.with_panel(
        table.Panel()
        .title("Model version")
        .description("stream_tagger_model_info: which model serves live and in shadow, with its threshold.")
        .datasource(DATASOURCE)
        .with_target(
            query(
                "max by (version, role, labels, threshold) (stream_tagger_model_info)",
                fmt=PromQueryFormat.TABLE,
            )
        )
        .with_transformation(hide_columns("Time", "Value"))
        .height(6)
        .span(24)
    )
    for tag in APPROVED_TAGS:
        d.with_panel(
            heatmap.Panel()
            .title(f"Confidence: {tag}")
            .description(f"Top-1 confidence of posts whose top-1 tag is {tag}, over time.")
            .datasource(DATASOURCE)
            .with_target(
                query(
                    f'sum by (le) (increase(stream_tagger_confidence_bucket{{tag="{tag}"}}{RATE}))',
                    "{{le}}",
                    PromQueryFormat.HEATMAP,
                )
            )
            .calculate(False)
            .height(8)
            .span(24 // len(APPROVED_TAGS))
        )


def quality_row(d: dash.Dashboard) -> None:
    d.with_row(dash.Row("Quality and drift"))
    d.with_panel(
        with_limit_line(
            graph(
                "Drift (PSI)",
                "Population stability index of the recent window against the training reference. "
                "Alert above 0.2.",
                "short",
                [query("max by (signal) (stream_tagger_drift_score)", "{{signal}}")],
            ),
            0.2,
        ).min(0)
    )
    d.with_panel(
        graph(
            "Online precision and recall",
            "Rolling precision and recall from reviewer and author feedback, per tag and overall.",
            "percentunit",
            [
                query("max by (tag) (stream_tagger_online_precision)", "precision {{tag}}"),
                query("max by (tag) (stream_tagger_online_recall)", "recall {{tag}}"),
            ],
        )
        .min(0)
        .max(1)
    )
    d.with_panel(
        graph(
            "Agreement",
            "Share of posts where the model's top-1 agrees with the shadow model, the keyword rules "
            "and the author's own tags.",
            "percentunit",
            [
                query(
                    ratio(
                        'stream_tagger_shadow_comparisons_total{result="agree"}',
                        "stream_tagger_shadow_comparisons_total",
                    ),
                    "shadow",
                ),
                query(
                    ratio(
                        'stream_tagger_rules_baseline_total{result="agree"}',
                        'stream_tagger_rules_baseline_total{result=~"agree|disagree"}',
                    ),
                    "keyword rules",
                ),
                query(
                    ratio(
                        'stream_tagger_author_tag_agreement_total{result="agree"}',
                        "stream_tagger_author_tag_agreement_total",
                    ),
                    "author tags",
                ),
            ],
        )
        .min(0)
        .max(1)
    )
    d.with_panel(
        table.Panel()
        .title("Shadow disagreements")
        .description("Live vs shadow top-1 pairs over the dashboard's time range, most frequent first.")
        .datasource(DATASOURCE)
        .with_target(
            query(
                "topk(10, sum by (live_tag, shadow_tag) "
                "(increase(stream_tagger_shadow_disagreements_total[$__range])))",
                fmt=PromQueryFormat.TABLE,
            )
        )
        .with_transformation(hide_columns("Time"))
        .height(8)
        .span(12)
    )
    d.with_panel(
        graph(
            "Review resolution time",
            "Review request to reviewer feedback.",
            "s",
            quantile_queries("stream_tagger_review_resolution_seconds"),
            width=12,
        )
    )


def process_row(d: dash.Dashboard) -> None:
    d.with_row(dash.Row("Processes and Kafka clients"))
    d.with_panel(
        graph(
            "Memory",
            "Resident and virtual memory per process.",
            "bytes",
            [
                query("max by (instance) (process_resident_memory_bytes)", "resident {{instance}}"),
                query("max by (instance) (process_virtual_memory_bytes)", "virtual {{instance}}"),
            ],
            width=6,
        )
    )
    d.with_panel(
        graph(
            "CPU",
            "CPU time per second per process, user and system: 1 is one core busy.",
            "short",
            [query(f"sum by (instance) (rate(process_cpu_seconds_total{RATE}))", "{{instance}}")],
            width=6,
        ).min(0)
    )
    d.with_panel(
        graph(
            "Open files",
            "File descriptors open per process, against its limit.",
            "short",
            [
                query("max by (instance) (process_open_fds)", "open {{instance}}"),
                query("max by (instance) (process_max_fds)", "limit {{instance}}"),
            ],
            width=5,
        )
    )
    d.with_panel(
        stat.Panel()
        .title("Restarts")
        .description("Process starts over the dashboard's time range (a crash loop shows here first).")
        .datasource(DATASOURCE)
        .with_target(query("sum(changes(process_start_time_seconds[$__range]))", "restarts"))
        .thresholds(thresholds((None, "green"), (1, "orange")))
        .height(8)
        .span(2)
    )
    d.with_panel(
        table.Panel()
        .title("Processes")
        .description("Each process scraped, with its Python version.")
        .datasource(DATASOURCE)
        .with_target(query("max by (job, instance, version) (python_info)", fmt=PromQueryFormat.TABLE))
        .with_transformation(hide_columns("Time", "Value"))
        .height(8)
        .span(5)
    )
    d.with_panel(
        graph(
            "Rebalances",
            "Rebalance callbacks of the hot paths' consumers: partitions assigned, revoked, or lost "
            "without a revoke (a session timeout). Alert: the group never settles.",
            "short",
            [query(f"sum by (event) (increase(stream_tagger_kafka_rebalances_total{RATE}))", "{{event}}")],
            width=6,
        ).draw_style(common.GraphDrawStyle.BARS)
    )
    d.with_panel(
        graph(
            "Assigned partitions",
            "Raw-topic partitions each worker's hot path holds.",
            "short",
            [query("max by (instance) (stream_tagger_kafka_assigned_partitions)", "{{instance}}")],
            width=6,
        ).min(0)
    )
    d.with_panel(
        graph(
            "Commit latency",
            "Offset commits the hot path waits for: sync (on a revoke, at stop) and, with exactly_once, "
            "the transaction of each batch. Auto-commits run in librdkafka's background.",
            "s",
            quantile_queries("stream_tagger_kafka_commit_seconds", "kind", " {{kind}}"),
            width=6,
        )
    )
    d.with_panel(
        graph(
            "Produce errors",
            "Outputs the broker did not acknowledge (the worker stops and re-processes them after a "
            "restart), and producer errors, by librdkafka error code.",
            "ops",
            [query(f"sum by (code) (rate(stream_tagger_kafka_produce_errors_total{RATE}))", "{{code}}")],
            width=6,
        )
    )


def build() -> dict:
    d = (
        dash.Dashboard("stream-tagger")
        .uid(UID)
        .description(
            "Streaming tagger: flow, latency, model, quality, processes. Source: deploy/grafana/dashboard.py"
        )
        .tags(["stream-tagger", "kafka", "ml"])
        .refresh("10s")
        .time("now-30m", "now")
        .timezone("browser")
        .tooltip(model.DashboardCursorSync.CROSSHAIR)
    )
    for variable in variables():
        d = d.with_variable(variable)
    for row in (flow_row, latency_row, model_row, quality_row, process_row):
        row(d)
    built = json.loads(json.dumps(d.build(), cls=JSONEncoder))
    number_panels_and_queries(built["panels"])
    return built


def number_panels_and_queries(panels: list[dict]) -> None:
    """Grafana needs a unique id per panel and a refId per query; the SDK leaves both to the caller."""
    for panel_id, panel in enumerate(panels, start=1):
        panel["id"] = panel_id
        for letter, target in zip(string.ascii_uppercase, panel.get("targets", []), strict=False):
            target["refId"] = letter


def render() -> str:
    return json.dumps(build(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(render())
    print(f"wrote {OUTPUT}")
