"""Write the generated parts of the docs from the files they describe, so the docs cannot drift from them.

    .venv/bin/python scripts/render_docs.py           # rewrite every generated block in place
    .venv/bin/python scripts/render_docs.py --check   # exit 1, naming the files that are out of date

A generated block sits between two marker comments in a Markdown file:

    <!-- BEGIN GENERATED bench-run: scripts/render_docs.py -->
    ...
    <!-- END GENERATED bench-run -->

and is rendered from:

- ``bench-run``, ``bench-inference`` (docs/benchmarks.md): ``benchmarks/results/latest.json`` written by
  ``benchmarks/run.py`` and ``benchmarks/results/inference.json`` written by
  ``benchmarks/bench_inference.py``; the date and machine are the ones recorded in the JSON, and when
  the JSON records none the block says so; ``bench-headline`` (README.md), the same run in a few lines;
  ``bench-instructions`` (docs/benchmarks.md): ``benchmarks/results/instructions.json`` written by
  ``benchmarks/instructions.py``;
- ``model-quality`` (docs/model.md): ``benchmarks/results/model_quality.json`` written by
  ``benchmarks/model_quality.py``;
- ``served-model`` (docs/model.md): ``metadata.json`` of the version ``models/current`` names;
- ``metrics`` (docs/operations.md): the metrics ``stream_tagger.metrics.Metrics`` registers.

Everything outside the markers is written by hand and left as it is. ``tests/unit/test_docs_render.py``
fails while a committed file differs from what this script renders.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import re
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from stream_tagger.model.thresholds import precision_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path("benchmarks/results")

# Product targets the model figures are read against (auto-tag: precision and coverage together).
TARGET_WEIGHTED_F1 = 0.95
TARGET_MLOPS_F1 = 0.85
TARGET_AUTO_PRECISION = 0.98
TARGET_AUTO_COVERAGE = 0.75

_BLOCK = re.compile(
    r"(?P<begin><!-- BEGIN GENERATED (?P<name>[a-z0-9-]+)[^>]*-->\n)"
    r"(?P<body>.*?)"
    r"(?P<end><!-- END GENERATED (?P=name) -->)",
    re.DOTALL,
)


# --- formatting -------------------------------------------------------------------------------------


def _num(value: Any, digits: int = 0) -> str:
    """A figure with thousands separators; "-" when it is missing or not a number."""
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    if isinstance(value, float) and math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(row) + " |" for row in rows),
    ]


def _read_json(root: Path, relative: Path) -> dict | None:
    path = root / relative
    if not path.is_file():
        return None
    data = json.loads(path.read_text(encoding="utf-8"))
    return data if isinstance(data, dict) else None


def _no_results(name: str, script: str) -> list[str]:
    """The block of a results file that is not there: which file, and what writes it."""
    return [f"No results: `{RESULTS / name}` is missing; run `{script}`."]


def _report(root: Path) -> ModuleType:
    """``root``'s benchmarks/report.py, the benchmark's own tables: the docs show them, not copies."""
    spec = importlib.util.spec_from_file_location("report", root / "benchmarks" / "report.py")
    assert spec is not None and spec.loader is not None
    report = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(report)
    return report


# --- benchmarks/results/latest.json -----------------------------------------------------------------


def _run_line(meta: dict, report: ModuleType) -> str:
    """When, how long, on what broker, serving which model, from which commit."""
    parts = [f"Run of {meta['date']}" if meta.get("date") else "Run (the JSON records no date)"]
    if meta.get("quick"):
        parts[-1] += " (`--quick`: short runs that check the harness, not figures to quote)"
    if meta.get("duration_s"):
        parts.append(f"{meta['duration_s'] / 60:.0f} min in all")
    if meta.get("events"):
        runs = meta.get("saturation_runs")
        parts.append(
            f"{meta['events']:,} events per saturation run and process"
            + (f", {runs} runs each" if runs and runs > 1 else "")
        )
    if (latency_runs := meta.get("latency_runs")) and latency_runs > 1:
        parts.append(f"{latency_runs} runs at each offered load" + report.ramp(meta))
    elif meta.get("ramp_seconds"):
        parts.append(f"paced runs{report.ramp(meta)}")
    if meta.get("partitions"):
        parts.append(f"{meta['partitions']} input partitions")
    if meta.get("broker"):
        parts.append(f"broker: {meta['broker']}")
    if meta.get("model_version"):
        parts.append(f"model served: `{meta['model_version']}`")
    code = meta.get("code") or {}
    if code.get("commit"):
        modified = " plus uncommitted changes" if code.get("modified") else ""
        parts.append(f"worker code: {code.get('source', 'commit')}, `{code['commit'][:10]}`{modified}")
    return "; ".join(parts) + "."


def _machine_line(meta: dict) -> str:
    machine = meta.get("machine") or {}
    if not machine:
        return "The JSON records no machine."
    bits = [
        f"{machine['cores']} cores" if machine.get("cores") else "",
        str(machine.get("cpu") or ""),
        f"{machine['ram_gib']:g} GiB RAM" if machine.get("ram_gib") else "",
        str(machine.get("kernel") or ""),
        f"Python {machine['python']}" if machine.get("python") else "",
    ]
    text = "Machine: " + ", ".join(b for b in bits if b)
    load = machine.get("load_avg_at_start")
    if load:
        text += f"; 1-min load average {load[0]:.1f} at the start"
        during = machine.get("load_avg_1min_during")
        if during:
            text += (
                f", median {during['median']:.1f} ({during['min']:.1f}-{during['max']:.1f}) during the run"
            )
    versions = meta.get("versions") or {}
    names = (
        ("kafka", "Apache Kafka"),
        ("confluent_kafka", "confluent-kafka"),
        ("librdkafka", "librdkafka"),
        ("quixstreams", "Quix Streams"),
        ("scikit_learn", "scikit-learn"),
        ("onnxruntime", "onnxruntime"),
    )
    found = [f"{name} {versions[key]}" for key, name in names if versions.get(key)]
    if versions.get("java"):
        found.append(str(versions["java"]))
    return text + "." + (" Versions: " + ", ".join(found) + "." if found else "")


def _latest_run(root: Path) -> tuple[dict, ModuleType] | None:
    """``latest.json`` and the benchmark's report module that reads it, or None when there is no run."""
    results = _read_json(root, RESULTS / "latest.json")
    if results is None:
        return None
    return results, _report(root)


def render_bench_run(root: Path) -> list[str]:
    run = _latest_run(root)
    if run is None:
        return _no_results("latest.json", "benchmarks/run.py")
    results, report = run
    meta = results.get("meta") or {}
    out = [
        _run_line(meta, report),
        "",
        _machine_line(meta),
        "",
        "**Saturation** (N events produced first, then drained; events/s as the output reader gets them; "
        "the last row: the worker offered its drain rate live, events/s out while the measured events were "
        "sent):",
        "",
    ]
    out += _table(report.SATURATION_HEADER, report.saturation_rows(results))
    out += ["", "**Ratios** (of the medians):", ""]
    out += _table(report.RATIO_HEADER, report.ratio_rows(results))
    latency = report.latency_rows(results)
    if latency:
        out += [
            "",
            "**End-to-end latency at offered loads** (ms, output received by a reader − input CreateTime; "
            "in pipeline: output CreateTime − input CreateTime):",
            "",
        ]
        out += _table(report.LATENCY_HEADER, latency)
    if results["sweeps"].get("batch_max_size"):
        out += ["", "**Worker batch sweep** (saturation, one run each):", ""]
        out += _table(report.SWEEP_HEADER, report.sweep_rows(results))
    if results.get("targets"):
        out += ["", "**Targets** (the worker as shipped):", ""]
        out += _table(report.TARGET_HEADER, report.target_rows(results))
    if line := report.share_line(results):
        out += ["", line]
    return out


def render_bench_headline(root: Path) -> list[str]:
    """The README's few lines: the served model's worker against its peers, and the targets."""
    run = _latest_run(root)
    if run is None:
        return _no_results("latest.json", "benchmarks/run.py")
    results, report = run
    # The benchmark's saturation rows, their first three columns (pipeline, events/s, x Quix), measured ones.
    rows = [row[:3] for row in report.saturation_rows(results) if row[1] != "-"]
    meta = results.get("meta") or {}
    out = [_run_line(meta, report), "", _machine_line(meta), ""]
    out += _table(["pipeline (saturation)", "events/s", "x Quix"], rows)
    if results.get("targets"):
        out += ["", *_table(report.TARGET_HEADER, report.target_rows(results))]
    if line := report.share_line(results):
        out += ["", line]
    return out


# --- benchmarks/results/inference.json --------------------------------------------------------------


def render_bench_inference(root: Path) -> list[str]:
    data = _read_json(root, RESULTS / "inference.json")
    if data is None:
        return _no_results("inference.json", "benchmarks/bench_inference.py")
    machine = data.get("machine") or {}
    line = f"Model `{data.get('model_version', '?')}`, {_num(data.get('posts'))} real posts"
    if data.get("rounds"):
        line += f", median of {data['rounds']} interleaved rounds"
    line += ", one thread unless said. "
    line += "The JSON records no date. " if not data.get("date") else f"Run of {data['date']}. "
    if machine:
        bits = [f"{machine['cpus']} CPUs"] if machine.get("cpus") else []
        bits += [f"{k} {machine[k]}" for k in ("python", "onnxruntime") if machine.get(k)]
        line += "Machine: " + ", ".join(bits)
        load = data.get("load_average")
        line += f"; 1-min load average {load[0]:.1f}." if load else "."
    else:
        line += "The JSON records no machine."
    out = [line, ""]
    rows = [
        [
            name,
            _num(r.get("batch1_p50_ms"), 2),
            _num(r.get("batch1_p99_ms"), 2),
            _num(r.get("batch64_posts_per_s")),
            _num(r.get("batch512_posts_per_s")),
        ]
        for name, r in (data.get("results") or {}).items()
    ]
    out += _table(["", "batch 1 p50 ms", "batch 1 p99 ms", "batch 64 posts/s", "batch 512 posts/s"], rows)
    parallel = data.get("parallel_posts_per_s") or {}
    if parallel:
        out += ["", f"Threads at once (batch {data.get('parallel_batch', '?')}):", ""]
        out += _table(["", "posts/s"], [[k, _num(v)] for k, v in parallel.items()])
    return out


def render_bench_instructions(root: Path) -> list[str]:
    data = _read_json(root, RESULTS / "instructions.json")
    if data is None:
        return _no_results("instructions.json", "benchmarks/instructions.py")
    machine = data.get("machine") or {}
    versions = ", ".join(f"{k} {machine[k]}" for k in ("python", "numpy", "onnxruntime") if machine.get(k))
    events = data.get("events_per_batch_size") or {}
    per_size = ", ".join(f"{_num(n)} in batches of {int(size):,}" for size, n in events.items())
    line = (
        f"Model `{data.get('model_version', '?')}`, the dataset's posts resampled ({per_size}), one "
        f"thread; run of {data.get('date', '?')} with {machine.get('valgrind', 'valgrind')}"
    )
    out = [f"{line}, {versions}." if versions else f"{line}.", ""]
    counts: dict[str, dict[str, float]] = data.get("instructions_per_event") or {}
    sizes = list(counts)
    steps: dict[str, str] = data.get("steps") or {}
    rows = [[label, *(_num(counts[size].get(step)) for size in sizes)] for step, label in steps.items()]
    hot = data.get("hot_path_steps") or []
    rows.append(
        [
            "**hot-path thread's Python** (" + " + ".join(hot) + ")",
            *(_num(sum(counts[size].get(step, 0) for step in hot)) for size in sizes),
        ]
    )
    rows.append(["**all steps**", *(_num(sum(counts[size].values())) for size in sizes)])
    out += _table(["instructions per event", *(f"batch {int(size):,}" for size in sizes)], rows)
    return out


# --- benchmarks/results/model_quality.json ----------------------------------------------------------


def _f3(value: Any) -> str:
    return _num(value, 3)


def _range(values: Sequence[float] | None) -> str:
    return f"{min(values):.3f}-{max(values):.3f}" if values else "-"


def _change_label(change: dict) -> str:
    return ", ".join(f"`{k}={v}`" for k, v in change.items()) or "changed"


def render_model_quality(root: Path) -> list[str]:
    data = _read_json(root, RESULTS / "model_quality.json")
    if data is None:
        return _no_results("model_quality.json", "benchmarks/model_quality.py")
    cfg = data.get("config") or {}
    seeds = data.get("seeds") or []
    line = "Rendered from `benchmarks/results/model_quality.json`"
    if data.get("seconds"):
        line += f" ({data['seconds'] / 60:.0f} min of computing)"
    line += "; the JSON records no date and no machine."
    out = [line]
    cv = data.get("cv")
    compare = data.get("compare") or {}
    if cv:
        other = compare.get("cv")
        change = _change_label(compare.get("change") or {})
        auto = cv.get("auto_tag") or {}
        out += [
            "",
            f"**Cross-validation**: {len(seeds)} x stratified {cfg.get('cv_folds', 5)}-fold "
            f"(one repeat per seed, seeds {', '.join(map(str, seeds))}); auto-tag thresholds chosen on the "
            f"other folds of the repeat (target {auto.get('target', cfg.get('target_precision', '?'))}) "
            "and applied to the held-out fold; mean over repeats (lowest repeat in brackets).",
            "",
        ]
        header = ["", "served configuration"] + ([f"with {change}"] if other else [])
        rows = [["weighted F1", *(_pm(c) for c in (cv, other) if c)]]
        for label in cv.get("per_class_f1", {}):
            rows.append([f"F1 {label}", *(_f3(c["per_class_f1"].get(label)) for c in (cv, other) if c)])
        rows.append(["auto-tag precision", *(_min_repeat(c, "precision") for c in (cv, other) if c)])
        rows.append(["auto-tag coverage", *(_min_repeat(c, "coverage") for c in (cv, other) if c)])
        rows.append(
            [
                "folds meeting the run's precision and coverage targets",
                *(_both(c.get("auto_tag") or {}) for c in (cv, other) if c),
            ]
        )
        out += _table(header, rows)
        paired = compare.get("paired") or {}
        if paired:
            bits = []
            for key, what in (("weighted_f1", "weighted F1"), ("mlops_f1", "mlops F1")):
                p = paired.get(key)
                if p:
                    bits.append(
                        f"{what} {p['mean_delta']:+.4f} (better in {p['better']} of {p['folds']} folds, "
                        f"worse in {p['worse']})"
                    )
            out += ["", f"Paired fold by fold, served minus {change}: " + "; ".join(bits) + "."]

    nested = data.get("nested")
    if nested:
        auto = nested.get("auto_tag") or {}
        out += [
            "",
            f"**Nested** (5 outer stratified folds, seed {nested.get('outer_seed', '?')}): each trains the "
            "whole procedure (inner CV, thresholds, ONNX export) on 4/5 of the posts and evaluates the "
            "exported ONNX model on the other 1/5; mean ± sd over folds, fold range in brackets.",
            "",
        ]
        rows = [
            [
                "weighted F1",
                f"{_pm(nested)} ({_range(nested.get('folds_weighted_f1'))})",
                f"≥ {TARGET_WEIGHTED_F1:g}",
            ],
            ["macro F1", _f3(nested.get("macro_f1")), ""],
        ]
        for label, value in (nested.get("per_class_f1") or {}).items():
            extra = ""
            if label == "mlops":
                extra = f" ({_range(nested.get('folds_mlops_f1'))})"
            rows.append(
                [f"F1 {label}", _f3(value) + extra, f"≥ {TARGET_MLOPS_F1:g}" if label == "mlops" else ""]
            )
        rows += [
            [
                f"auto-tag precision (target {auto.get('target', '?')}, pooled)",
                f"{_f3(auto.get('precision'))} ({_range(auto.get('folds_precision'))})",
                f"≥ {TARGET_AUTO_PRECISION:g}",
            ],
            [
                "auto-tag coverage (pooled)",
                f"{_f3(auto.get('coverage'))} ({_range(auto.get('folds_coverage'))})",
                f"≥ {TARGET_AUTO_COVERAGE:.2f}",
            ],
        ]
        for label, coverage in (auto.get("per_class_coverage") or {}).items():
            precision = (auto.get("per_class_precision") or {}).get(label)
            rows.append(
                [
                    f"auto-tag precision / coverage, {label} (pooled)",
                    f"{_f3(precision)} / {_f3(coverage)} ({_range(auto['folds_per_class_coverage'][label])})"
                    if auto.get("folds_per_class_coverage")
                    else f"{_f3(precision)} / {_f3(coverage)}",
                    f"coverage ≥ {TARGET_AUTO_COVERAGE:.2f}",
                ]
            )
        rows += [
            [
                "keyword baseline, weighted F1 (silence counted wrong)",
                _f3(nested.get("baseline_weighted_f1")),
                "",
            ],
            [
                "parity: largest probability difference, scikit-learn vs ONNX",
                f"{nested['parity_max_prob_diff']:.1e}"
                if nested.get("parity_max_prob_diff") is not None
                else "-",
                "< 1e-4",
            ],
        ]
        out += _table(["", "measured", "target"], rows)

    cv_targets = {t["target"]: t for t in (cv or {}).get("targets", [])}
    nested_targets = {t["target"]: t for t in (nested or {}).get("targets", [])}
    if nested and (nested.get("auto_tag") or {}).get("target") is not None:
        nested_targets.setdefault(nested["auto_tag"]["target"], nested["auto_tag"])
    levels = sorted(set(cv_targets) | set(nested_targets))
    if len(levels) > 1:
        served = cfg.get("target_precision")
        out += [
            "",
            "**Threshold target against what happens on unseen posts** (the target is the precision the "
            "thresholds are chosen to reach on out-of-fold predictions; the argmax, and so F1, does not "
            "move):",
            "",
        ]
        header = [""] + [f"**{t:g} (served)**" if t == served else f"{t:g}" for t in levels]
        rows = [
            [
                "precision, CV (lowest repeat)",
                *(_min_repeat_t(cv_targets.get(t), "precision") for t in levels),
            ],
            ["coverage, CV (lowest repeat)", *(_min_repeat_t(cv_targets.get(t), "coverage") for t in levels)],
            [
                "precision, nested (fold range)",
                *(_pooled(nested_targets.get(t), "precision") for t in levels),
            ],
            ["coverage, nested (fold range)", *(_pooled(nested_targets.get(t), "coverage") for t in levels)],
            [
                "unseen folds under 80% coverage, CV + nested",
                *(
                    _count_pair(cv_targets.get(t), nested_targets.get(t), "folds_under_80pct_coverage")
                    for t in levels
                ),
            ],
            [
                "unseen folds meeting both targets, CV + nested",
                *(
                    _count_pair(cv_targets.get(t), nested_targets.get(t), "folds_meeting_both_targets")
                    for t in levels
                ),
            ],
        ]
        out += _table(header, rows)
    return out


def _pm(figures: dict) -> str:
    sd = figures.get("weighted_f1_sd")
    return (
        f"{_f3(figures.get('weighted_f1'))} ± {_f3(sd)}"
        if sd is not None
        else _f3(figures.get("weighted_f1"))
    )


def _min_repeat(cv: dict, key: str) -> str:
    return _min_repeat_t(cv.get("auto_tag"), key)


def _min_repeat_t(point: dict | None, key: str) -> str:
    if not point:
        return "-"
    low = point.get(f"{key}_min_repeat")
    return f"{_f3(point.get(key))} ({_f3(low)})" if low is not None else _f3(point.get(key))


def _pooled(point: dict | None, key: str) -> str:
    if not point:
        return "-"
    return f"{_f3(point.get(key))} ({_range(point.get(f'folds_{key}'))})"


def _both(point: dict) -> str:
    if "folds_meeting_both_targets" not in point:
        return "-"
    return f"{point['folds_meeting_both_targets']} of {point.get('folds', '?')}"


def _count_pair(cv: dict | None, nested: dict | None, key: str) -> str:
    def one(point: dict | None) -> str:
        return f"{point[key]}/{point.get('folds', '?')}" if point and key in point else "-"

    return f"{one(cv)} + {one(nested)}"


# --- models/current/metadata.json -------------------------------------------------------------------


def render_served_model(root: Path) -> list[str]:
    pointer = root / "models" / "current"
    if not pointer.is_file():
        return ["No served model: `models/current` is missing."]
    version = pointer.read_text(encoding="utf-8").strip()
    meta = _read_json(root, Path("models") / version / "metadata.json")
    if meta is None:
        return [f"`models/current` names `{version}`, which has no readable `metadata.json`."]
    data = meta.get("training_data") or {}
    feat = meta.get("featurizer") or {}
    pieces = feat.get("pieces") or {}
    out = [
        f"`models/current` names `{meta.get('version', version)}`, "
        f"trained {meta.get('trained_at', '(no date)')} "
        f"on {_num(data.get('rows'))} posts ({', '.join(f['path'] for f in data.get('files', []))}) with "
        + ", ".join(f"{k} {v}" for k, v in (meta.get("library_versions") or {}).items())
        + ".",
        "",
        f"Vocabulary {_num(feat.get('vocabulary_size'))} n-grams; "
        f"{_num(feat.get('keyword_phrases'))} keyword "
        f"phrases; "
        + (
            f"{_num(pieces.get('pieces'))} pretrained pieces projected on {pieces.get('dims')} axes "
            f"(from `{pieces.get('wheel')}`, `{pieces.get('source')}`)"
            + (", served as per-tag scores per piece." if pieces.get("per_tag_scores") else ".")
            if pieces
            else "no piece embedding."
        ),
    ]
    cv = (meta.get("metrics") or {}).get("cv") or {}
    thresholds = meta.get("thresholds") or {}
    per_class = ((cv.get("first_repeat") or {}).get("per_class")) or {}
    counts = data.get("class_counts") or {}
    if thresholds:
        out += [
            "",
            f"Its own cross-validation ({cv.get('scheme', 'CV')}; optimistic about the auto-tag point, since "
            "the thresholds are chosen on the same predictions): "
            f"weighted F1 {_f3(cv.get('weighted_f1_mean'))} ± "
            f"{_f3(cv.get('weighted_f1_std'))}, macro F1 {_f3(cv.get('macro_f1_mean'))}, auto-tag precision "
            f"{precision_text(cv['auto_tag']) if cv.get('auto_tag') else '-'} at coverage "
            f"{_f3((cv.get('auto_tag') or {}).get('coverage'))}.",
            "",
        ]
        rows = [
            [
                label,
                _f3((per_class.get(label) or {}).get("precision")),
                _f3((per_class.get(label) or {}).get("recall")),
                _f3((cv.get("per_class_f1_mean") or {}).get(label)),
                _num(counts.get(label)),
                _f3(value),
            ]
            for label, value in thresholds.items()
        ]
        header = [
            "tag",
            "precision (first repeat)",
            "recall (first repeat)",
            "F1 (mean)",
            "posts",
            "threshold",
        ]
        out += _table(header, rows)
    return out


# --- stream_tagger/metrics.py -----------------------------------------------------------------------


def render_metrics(root: Path) -> list[str]:
    sys.path.insert(0, str(root))
    try:
        from prometheus_client import CollectorRegistry

        from stream_tagger.metrics import Metrics
    finally:
        sys.path.remove(str(root))
    registry = CollectorRegistry()
    Metrics(registry)
    rows = []
    for collector in list(registry._collector_to_names):
        declared = getattr(collector, "_labelnames", None)
        if declared is None or not hasattr(collector, "_name"):  # a collector of several families
            for family in collector.collect():
                labels = sorted({label for sample in family.samples for label in sample.labels})
                rows.append([family.name, family.type, labels, family.documentation])
            continue
        rows.append([collector._name, collector._type, list(declared), collector._documentation])
    rows = [
        [name + ("_total" if kind == "counter" else ""), kind, labels, doc]
        for name, kind, labels, doc in rows
    ]
    rows.sort(key=lambda row: row[0])
    return _table(
        ["metric", "type", "labels", "meaning"],
        [[f"`{name}`", kind, ", ".join(labels) or "-", doc] for name, kind, labels, doc in rows],
    )


# --- files ------------------------------------------------------------------------------------------

RENDERERS: dict[str, Callable[[Path], list[str]]] = {
    "bench-headline": render_bench_headline,
    "bench-run": render_bench_run,
    "bench-inference": render_bench_inference,
    "bench-instructions": render_bench_instructions,
    "model-quality": render_model_quality,
    "served-model": render_served_model,
    "metrics": render_metrics,
}
FILES = (Path("README.md"), Path("docs/benchmarks.md"), Path("docs/model.md"), Path("docs/operations.md"))


def render_text(text: str, root: Path = ROOT) -> str:
    """``text`` with every generated block it holds rendered again; an unknown block name is an error."""

    def block(match: re.Match[str]) -> str:
        name = match["name"]
        if name not in RENDERERS:
            raise KeyError(f"unknown generated block {name!r} (known: {', '.join(RENDERERS)})")
        body = "\n".join(RENDERERS[name](root))
        return f"{match['begin']}{body}\n{match['end']}"

    return _BLOCK.sub(block, text)


def render(root: Path = ROOT) -> dict[Path, tuple[str, str]]:
    """Each docs file with generated blocks: (as committed, as rendered now)."""
    out = {}
    for relative in FILES:
        path = root / relative
        if path.is_file():
            text = path.read_text(encoding="utf-8")
            out[relative] = (text, render_text(text, root))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 if a file is out of date")
    args = ap.parse_args(argv)
    stale = []
    for relative, (old, new) in render().items():
        if old == new:
            continue
        stale.append(relative)
        if not args.check:
            (ROOT / relative).write_text(new, encoding="utf-8")
    if args.check and stale:
        print("out of date (run scripts/render_docs.py): " + ", ".join(map(str, stale)), file=sys.stderr)
        return 1
    for relative in stale:
        print(f"rendered {relative}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
