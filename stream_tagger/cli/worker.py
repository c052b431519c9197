"""Command: worker, the streaming service itself."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from stream_tagger.cli._app import app, configure_logging, console, fail, settings_from
from stream_tagger.settings import Settings

log = logging.getLogger("stream_tagger.worker")


@app.command()
def worker(
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (host:port,...).")
    ] = None,
    group: Annotated[
        str | None, typer.Option(help="Consumer group; workers in one group split partitions.")
    ] = None,
    model_dir: Annotated[
        Path | None, typer.Option(help="Model folder, or models/current (the pointer).")
    ] = None,
    web_port: Annotated[int | None, typer.Option(help="Port of /metrics, /healthz and /ready.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Largest micro-batch, in events.")] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING or ERROR.")] = None,
) -> None:
    """Tag raw content events: raw topic -> tagged / review / dead-letter topics, at-least-once.

    Every setting comes from STREAM_TAGGER_* environment variables; these flags override the common
    ones. Example:

        STREAM_TAGGER_BATCH_MAX_WAIT_MS=5 stream-tagger worker --bootstrap-servers kafka:9092

    Stops gracefully on SIGTERM (finishes the in-flight batch, commits, exits 0).
    """
    settings = settings_from(
        bootstrap_servers=bootstrap_servers,
        consumer_group=group,
        model_dir=model_dir,
        web_port=web_port,
        batch_max_size=batch_size,
        log_level=log_level,
    )
    configure_logging(settings)
    run_worker(settings)


def run_worker(settings: Settings) -> None:
    """Load the model, wait for the broker, create topics, then hand the process to Faust."""
    import faust

    from stream_tagger.app import Worker, tune_gc
    from stream_tagger.kafka.admin import ensure_topics, wait_for_broker
    from stream_tagger.model.runtime import ModelLoadError, Predictor
    from stream_tagger.online import Online

    try:
        predictor = Predictor.load(settings.model_dir)
    except ModelLoadError as exc:
        fail(f"cannot load the model: {exc}")
    log.info("model %s loaded from %s", predictor.version, settings.model_dir)
    existing = wait_for_broker(settings)
    ensure_topics(settings, existing or set())
    service = Worker(settings, predictor)
    try:
        online = Online(service)
    except ModelLoadError as exc:
        fail(f"cannot load the shadow model: {exc}")
    online.start()
    tune_gc()
    console.print(
        f"worker up: {settings.topic_raw} -> {settings.topic_tagged}, model {predictor.version}, "
        f"web on :{settings.web_port}",
        highlight=False,
    )
    try:
        faust.Worker(
            service.faust_app, loglevel=settings.log_level.upper(), quiet=True
        ).execute_from_commandline()
    except SystemExit as exit_:
        if service.service.failure is not None:
            fail(f"stopped after a hot path failure: {service.service.failure}")
        raise typer.Exit(exit_.code if isinstance(exit_.code, int) else 1) from None
