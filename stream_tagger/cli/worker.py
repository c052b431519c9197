"""Command: worker, the streaming service itself."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from stream_tagger.cli._app import (
    app,
    check_web_port,
    configure_logging,
    fail,
    settings_from,
)


@app.command()
def worker(
    ctx: typer.Context,
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="Kafka bootstrap servers (host:port,...).")
    ] = None,
    consumer_group: Annotated[
        str | None, typer.Option("--group", help="Consumer group; workers in one group split partitions.")
    ] = None,
    model_dir: Annotated[
        Path | None, typer.Option(help="Model folder, or models/current (the pointer).")
    ] = None,
    web_port: Annotated[int | None, typer.Option(help="Port of /metrics, /healthz and /ready.")] = None,
    batch_max_size: Annotated[
        int | None, typer.Option("--batch-size", help="Largest micro-batch, in events.")
    ] = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO, WARNING, ERROR or CRITICAL.")] = None,
) -> None:
    """Tag raw content events: raw topic -> tagged / review / dead-letter topics, at-least-once.

    Every setting comes from STREAM_TAGGER_* environment variables; these flags override the common
    ones. Example:

        STREAM_TAGGER_BATCH_MAX_WAIT_MS=5 stream-tagger worker --bootstrap-servers kafka:9092

    Stops gracefully on SIGTERM (finishes the in-flight batch, commits, exits 0).
    """
    settings = settings_from(
        ctx,
        bootstrap_servers=bootstrap_servers,
        consumer_group=consumer_group,
        model_dir=model_dir,
        web_port=web_port,
        batch_max_size=batch_max_size,
        log_level=log_level,
    )
    check_web_port(settings)
    configure_logging(settings)
    from stream_tagger.kafka.admin import BrokerRefused, BrokerWaitExpired, TopicsMismatch
    from stream_tagger.model.versions import ModelLoadError
    from stream_tagger.service import WorkerFailed, run_worker

    try:
        code = run_worker(settings)
    except ModelLoadError as exc:
        fail(f"cannot load the model: {exc}")
    except (WorkerFailed, BrokerRefused, BrokerWaitExpired, TopicsMismatch) as exc:
        fail(str(exc))
    raise typer.Exit(code)
