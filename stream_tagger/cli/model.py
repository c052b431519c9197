"""Commands ``train`` and ``evaluate``: thin wrappers over ``stream_tagger.model.train`` / ``.evaluate``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from stream_tagger.cli._app import (
    app,
    cannot_write,
    check_settings,
    check_writable,
    console,
    fail,
    needs_train_extra,
    refuse_overwriting,
    settings_from,
)
from stream_tagger.model.dataset import DatasetError
from stream_tagger.model.thresholds import precision_text
from stream_tagger.model.versions import ModelLoadError

DataOption = Annotated[
    list[Path], typer.Option("--data", help="Labelled CSV (id,created_on,title,description,tag); repeatable")
]


@app.command()
def train(
    data: DataOption,
    out: Annotated[
        Path, typer.Option(help="Folder receiving the new version and the current pointer")
    ] = Path("models"),
    set_current: Annotated[bool, typer.Option(help="Point <out>/current at the new version")] = True,
    embedding_scale: Annotated[
        float | None,
        typer.Option(
            help="Weight of the pretrained piece embedding (default: TrainConfig's); 0 trains without it "
            "and without the train extra's wheel"
        ),
    ] = None,
) -> None:
    """Train on the CSVs (later files override earlier rows with the same id) and export to ONNX."""
    check_settings()
    from dataclasses import replace

    # Heavy imports only for this command.
    with needs_train_extra("train"):
        from stream_tagger.model.pretrained_pieces import PretrainedMissing
        from stream_tagger.model.train import TrainConfig
        from stream_tagger.model.train import train as train_model

    cfg = TrainConfig()
    if embedding_scale is not None:
        if embedding_scale < 0:
            fail(f"--embedding-scale must be >= 0, got {embedding_scale}")
        cfg = replace(cfg, embedding_scale=embedding_scale)
    try:
        version_dir = train_model(data, out, cfg, set_current=set_current)
    except (DatasetError, PretrainedMissing) as exc:
        fail(str(exc))
    meta = json.loads((version_dir / "metadata.json").read_text(encoding="utf-8"))
    cv = meta["metrics"]["cv"]
    auto = cv["auto_tag"]
    console.print(
        f"[green]trained[/] {version_dir}  ({cv['scheme']}: weighted F1 {cv['weighted_f1_mean']:.3f}, "
        f"auto-tag precision {precision_text(auto)} at coverage {auto['coverage']:.3f}; "
        f"parity max diff {meta['parity']['max_prob_diff']:.1e})"
    )
    print(version_dir)


def _fmt(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))


def _print_report(r: dict) -> None:
    labels = r["confusion_matrix"]["labels"]
    t = Table(title=f"model {r['model']['version']} on {r['data']['rows']} posts (ONNX) vs keyword baseline")
    for col in ("tag", "precision", "recall", "f1", "support", "baseline f1"):
        t.add_column(col, justify="left" if col == "tag" else "right")
    for label in labels:
        m, b = r["per_class"][label], r["baseline"]["per_class"][label]
        t.add_row(label, *(_fmt(m[k]) for k in ("precision", "recall", "f1", "support")), _fmt(b["f1"]))
    for avg in ("macro", "weighted"):
        m = r[avg]
        t.add_row(
            f"[b]{avg}",
            _fmt(m["precision"]),
            _fmt(m["recall"]),
            _fmt(m["f1"]),
            "",
            _fmt(r["baseline"][avg]["f1"]),
        )
    console.print(t)
    cm = Table(title="confusion matrix (rows: true, columns: predicted)")
    cm.add_column("")
    for label in labels:
        cm.add_column(label[:12], justify="right")
    for label, row in zip(labels, r["confusion_matrix"]["matrix"], strict=True):
        cm.add_row(label, *map(str, row))
    console.print(cm)
    s = Table(title="slices")
    for col in ("slice", "n", "accuracy", "weighted f1", "baseline accuracy"):
        s.add_column(col, justify="left" if col == "slice" else "right")
    for name, m in r["slices"].items():
        s.add_row(
            name, str(m["n"]), _fmt(m["accuracy"]), _fmt(m["weighted_f1"]), _fmt(m["baseline_accuracy"])
        )
    console.print(s)
    a, p, b = r["auto_tag"], r["parity"], r["baseline"]
    diff = "-" if p["max_prob_diff"] is None else f"{p['max_prob_diff']:.1e}"
    parity = (
        f"label agreement {_fmt(p['label_agreement'])}, max prob diff {diff}"
        if p["checked"]
        else "not checked (--no-parity)"
    )
    console.print(
        f"auto-tag: precision {precision_text(a)} at coverage {a['coverage']:.3f} ({a['n_auto']} posts)\n"
        f"keyword baseline: fires on {b['coverage']:.3f}, "
        f"precision when fired {b['precision_when_fired']:.3f}\n"
        f"parity (scikit-learn vs ONNX): {parity}"
    )


@app.command()
def evaluate(
    data: DataOption,
    model: Annotated[
        Path | None, typer.Option(help="Version folder or pointer [default: settings.model_dir]")
    ] = None,
    json_path: Annotated[
        Path | None, typer.Option("--json", help="Also write the figures as JSON here")
    ] = None,
    parity: Annotated[
        bool,
        typer.Option(
            help="Compare with the scikit-learn pipeline saved beside the model; this unpickles its "
            "pipeline.joblib, so code in that file runs: only for model folders you trust"
        ),
    ] = True,
) -> None:
    """Run the ONNX model on labelled CSVs: per-class and averaged figures, slices, auto-tag point, parity."""
    with needs_train_extra("evaluate"):
        from stream_tagger.model.evaluate import evaluate_model

    settings = settings_from()
    model_dir = model or settings.model_dir
    if json_path:
        refuse_overwriting(json_path, "--json", data, "--data")
        check_writable(json_path, make_parents=True)  # now, not after the whole evaluation
    try:
        report = evaluate_model(model_dir, data, parity=parity)
    except (DatasetError, ModelLoadError, ValueError) as exc:
        fail(str(exc))
    _print_report(report)
    if json_path:
        try:
            json_path.write_text(json.dumps(report, indent=2), encoding="utf-8")
        except OSError as exc:  # checked before the run, but the disk may have filled up since
            cannot_write(json_path, exc)
