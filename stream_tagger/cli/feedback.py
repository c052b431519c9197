"""Commands ``export-feedback`` and ``compare``: the retraining half of the human-in-the-loop cycle."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from stream_tagger.cli._app import (
    app,
    check_settings,
    check_web_port,
    configure_logging,
    console,
    fail,
    needs_train_extra,
    os_problem,
    settings_from,
)
from stream_tagger.model.dataset import DatasetError
from stream_tagger.model.versions import ModelLoadError


@app.command("export-feedback")
def export_feedback(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option(help="Training CSV to write (id,created_on,title,description,tag)")],
    bootstrap_servers: Annotated[str | None, typer.Option(help="Kafka bootstrap servers.")] = None,
) -> None:
    """Write people's corrections (latest per post) with the posts' text as a training CSV."""
    from stream_tagger.kafka.admin import BrokerRefused
    from stream_tagger.online.feedback_export import ExportError
    from stream_tagger.online.feedback_export import export_feedback as export
    from stream_tagger.tools.produce import BrokerUnreachable

    settings = settings_from(ctx, bootstrap_servers=bootstrap_servers)
    try:
        report = export(settings, out)
    except (BrokerUnreachable, BrokerRefused, ExportError) as exc:
        fail(str(exc))
    console.print(
        f"[green]wrote[/] {report.written} corrected posts to {out}; skipped "
        f"{report.without_text} without text on {settings.topic_raw}, "
        f"{report.without_approved_tag} naming no approved tag, "
        f"{report.unusable} with a blank id or text",
        highlight=False,
    )


@app.command("feedback-worker")
def feedback_worker(
    ctx: typer.Context,
    bootstrap_servers: Annotated[str | None, typer.Option(help="Kafka bootstrap servers.")] = None,
    web_port: Annotated[int | None, typer.Option(help="Port of /metrics, /healthz and /ready.")] = None,
) -> None:
    """Run only the feedback loop (join, online precision/recall, review resolution), in its own process.

    Run one per deployment beside the workers (which leave the loop out by default,
    STREAM_TAGGER_FEEDBACK_IN_WORKER=false), so the loop does not compete with the hot path for the CPU.
    """
    from stream_tagger.kafka.admin import BrokerRefused, BrokerWaitExpired, TopicsMismatch
    from stream_tagger.service import run_feedback_worker

    settings = settings_from(ctx, bootstrap_servers=bootstrap_servers, web_port=web_port)
    check_web_port(settings)
    configure_logging(settings)
    os.nice(settings.feedback_worker_nice)
    try:  # as the worker does: a broker that refuses the login is one line, not endless retries
        code = run_feedback_worker(settings)
    except (BrokerRefused, BrokerWaitExpired, TopicsMismatch) as exc:
        fail(str(exc))
    raise typer.Exit(code)


@app.command()
def compare(
    model: Annotated[Path, typer.Option(help="The candidate: version folder or pointer")],
    baseline: Annotated[Path, typer.Option(help="The serving model: version folder or pointer")],
    data: Annotated[list[Path], typer.Option("--data", help="Labelled CSV; repeatable")],
) -> None:
    """Both models on the same data, side by side; exits 1 if the candidate is worse on weighted F1 or
    auto-tag precision, auto-tags nothing, or its auto-tag coverage is more than 0.05 below (the
    promotion gate)."""
    with needs_train_extra("compare"):
        from stream_tagger.online.promotion_gate import compare_models

    check_settings()
    try:
        result = compare_models(model, baseline, data)
    except (DatasetError, ModelLoadError, ValueError) as exc:
        fail(str(exc))
    table = Table(title=f"{result.new_version} (new) vs {result.baseline_version} (baseline)")
    for col in ("figure", "new", "baseline", "change"):
        table.add_column(col, justify="left" if col == "figure" else "right")
    for row in result.rows:
        delta = row.new - row.baseline
        style = "red" if row.worse else ("bold" if row.decides else None)
        table.add_row(
            row.name + (" *" if row.decides else ""),
            f"{row.new:.3f}",
            f"{row.baseline:.3f}",
            f"{delta:+.3f}",
            style=style,
        )
    console.print(table)
    console.print("* decides promotion")
    if not result.passed:
        fail("new model is worse on " + ", ".join(row.name for row in result.failures) + "; do not promote")
    console.print(f"[green]pass[/]: {result.new_version} may replace {result.baseline_version}")


@app.command()
def promote(
    version: Annotated[str, typer.Argument(help="Version folder name under --models to serve")],
    models: Annotated[Path, typer.Option(help="Folder of the versions and the pointer")] = Path("models"),
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="Labelled CSV: pass the compare gate against the serving model first; repeatable",
        ),
    ] = None,
) -> None:
    """Point <models>/current at VERSION (atomic rename) once it loads as a worker loads it: running
    workers serve it from their next batch, without a restart or a rebalance."""
    from stream_tagger.model.predictor import Predictor
    from stream_tagger.model.versions import resolve, set_current, version_folder

    check_settings()
    try:
        folder = version_folder(models, version)
        # Loaded as a worker will load it (files, graph, smoke test): running workers would refuse a
        # broken version and keep the old one, but every worker started after would fail.
        Predictor.load(folder)
        if data:  # the gate scores labelled data
            with needs_train_extra("promote --data"):
                from stream_tagger.online.promotion_gate import compare_models
            result = compare_models(folder, resolve(models), data)
            if not result.passed:
                fail(
                    f"{version} is worse than {result.baseline_version} on "
                    + ", ".join(row.name for row in result.failures)
                    + "; not promoted"
                )
        set_current(models, version)
    except (DatasetError, ModelLoadError, ValueError) as exc:
        fail(str(exc))
    except OSError as exc:  # e.g. a user who may read the models but not write the pointer's folder
        fail(f"cannot point {models / 'current'} at {version}: {os_problem(exc)}")
    console.print(f"[green]promoted[/] {version}: {models / 'current'} now names it", highlight=False)
