"""Commands for the people around the worker: broker, produce, tail, predict, demo.

Each command parses options, calls one library function and turns its errors into one line and a
non-zero exit; everything it does is callable from Python (``stream_tagger.__all__``).
"""

from __future__ import annotations

import contextlib
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Annotated

import msgspec
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.text import Text

from stream_tagger.cli._app import (
    app,
    cannot_write,
    check_writable,
    console,
    fail,
    refuse_overwriting,
    settings_from,
)
from stream_tagger.kafka.admin import BrokerRefused, BrokerWaitExpired, TopicsMismatch
from stream_tagger.kafka.embedded_broker import BrokerError, EmbeddedBroker, wait_for_port
from stream_tagger.model.versions import ModelLoadError
from stream_tagger.processes import ProcessError
from stream_tagger.tools.demo import run_demo
from stream_tagger.tools.produce import BrokerUnreachable, check_broker, load_file, produce_events
from stream_tagger.tools.sources import BUNDLED_DATASET, RowError, SourceError
from stream_tagger.tools.tail import TOPIC_ALIASES, TopicMissing, follow, render, resolve_topic

Bootstrap = Annotated[
    str | None,
    typer.Option(
        "--bootstrap-servers",
        "-b",
        show_default=False,
        help="Kafka address (default: STREAM_TAGGER_BOOTSTRAP_SERVERS or 127.0.0.1:19092).",
    ),
]


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM takes the Ctrl-C path, so ``kill`` also stops every process a command started."""

    def interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def print_bad_rows(rows: list[RowError]) -> None:
    for row in rows:  # as Text: a reason or path may contain "[...]", which is not markup
        console.print(Text.assemble(("bad row ", "red"), str(row)), soft_wrap=True)


def progress_bar() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )


# The input both produce and predict read: one definition so their --file options cannot drift apart.
PostsFile = Annotated[
    Path,
    typer.Option(
        "--file", "-f", help="CSV (id,created_on,title,description[,author_tags]) or JSONL of raw events."
    ),
]


@app.command(
    help=(
        "Run the embedded Kafka-compatible broker (Tansu) in the foreground until Ctrl-C.\n\n"
        "Data lives in memory only and is gone when the broker stops.\n\n"
        "Example:  stream-tagger broker --port 19092"
    )
)
def broker(
    port: Annotated[
        int | None,
        typer.Option(
            help="Port to listen on (default: the port of the configured bootstrap address, 19092).",
            show_default=False,
            min=1,
            max=65535,
        ),
    ] = None,
) -> None:
    """Lets a fresh clone run producers and tail against a real Kafka protocol without installing Kafka."""
    settings = settings_from()
    host, _, default_port = settings.brokers()[0].rpartition(":")
    embedded = EmbeddedBroker(port=port or int(default_port), host=host or "127.0.0.1")
    with sigterm_as_interrupt():
        try:
            embedded.start()
        except BrokerError as exc:
            fail(str(exc))
        try:
            console.print(
                f"broker listening on [bold]{embedded.bootstrap_servers}[/] (pid {embedded.pid}); "
                "data is in memory only and is lost when it stops. Ctrl-C to stop."
            )
            while embedded.alive and wait_for_port(embedded.host, embedded.port, timeout=2.0):
                time.sleep(1.0)
            fail(
                f"the broker on {embedded.bootstrap_servers} stopped: {embedded.last_log_line()}; "
                f"its log: {embedded.log_path}"
            )
        except KeyboardInterrupt:
            console.print("stopping the broker")
        finally:
            embedded.stop()


@app.command(
    help=(
        "Validate every row of a CSV or JSONL file against the raw-content schema and publish the valid "
        "ones.\n\n"
        "Bad rows are listed as file:line: reason and not sent. Ends with a delivery report (events the "
        "broker acknowledged, events that failed). Exit code 1 if any row was bad or any event failed.\n\n"
        "Example:  stream-tagger produce --file data/dataset.csv --topic raw --rate 200"
    )
)
def produce(
    ctx: typer.Context,
    file: PostsFile,
    topic: Annotated[str, typer.Option(help="Topic name, or 'raw' for the configured raw topic.")] = "raw",
    rate: Annotated[
        float | None, typer.Option(help="Events per second (default: as fast as possible).", min=0.1)
    ] = None,
    check: Annotated[bool, typer.Option("--check", help="Validate the file only; send nothing.")] = False,
    bootstrap_servers: Bootstrap = None,
) -> None:
    """Validates the whole file first, so the producer sees every bad row before anything is sent."""
    settings = settings_from(ctx, bootstrap_servers=bootstrap_servers)
    try:
        posts, bad = load_file(file, settings)
    except SourceError as exc:
        fail(str(exc))
    print_bad_rows(bad)
    if check:
        console.print(f"{file}: {len(posts)} valid, {len(bad)} bad", markup=False, highlight=False)
        raise typer.Exit(1 if bad else 0)
    name = resolve_topic(settings, topic)
    try:
        check_broker(settings)
    except (BrokerUnreachable, BrokerRefused) as exc:
        fail(str(exc))
    with progress_bar() as progress:
        task = progress.add_task(f"→ {name}", total=len(posts))
        report = produce_events(settings, name, posts, rate=rate, on_sent=lambda n: progress.advance(task, n))
    style = "green" if report.failed == 0 and not bad else "red"
    console.print(
        f"[{style}]delivered {report.delivered}, failed {report.failed}, bad rows {len(bad)}[/] "
        f"(topic {name} at {settings.bootstrap_servers})"
    )
    for error in report.errors:
        console.print(Text.assemble(("delivery error ", "red"), error), highlight=False, soft_wrap=True)
    if report.failed or bad:
        raise typer.Exit(1)


@app.command(
    help=(
        "Follow an output topic: one readable line per event, or JSON lines as published with --json.\n\n"
        "Reads without joining a consumer group, so it never disturbs the worker. Ctrl-C stops it.\n\n"
        "Example:  stream-tagger tail --topic tagged --from-beginning --json --max 10"
    )
)
def tail(
    ctx: typer.Context,
    topic: Annotated[
        str,
        typer.Option(help=f"One of {', '.join(TOPIC_ALIASES)} (the configured topics) or any topic name."),
    ] = "tagged",
    json: Annotated[
        bool, typer.Option("--json", help="Print each event as one JSON line, as published.")
    ] = False,
    from_beginning: Annotated[
        bool, typer.Option("--from-beginning", help="Start at the oldest event, not at new ones.")
    ] = False,
    max_messages: Annotated[
        int | None, typer.Option("--max", help="Stop after this many events.", min=1)
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Stop after this many seconds without an event.", min=0.1)
    ] = None,
    bootstrap_servers: Bootstrap = None,
) -> None:
    """What a UI developer uses to see the tagged stream the product will show."""
    settings = settings_from(ctx, bootstrap_servers=bootstrap_servers)
    name = resolve_topic(settings, topic)
    out = Console(highlight=False, soft_wrap=True)
    try:
        with sigterm_as_interrupt():
            for record in follow(
                settings,
                [name],
                from_beginning=from_beginning,
                max_messages=max_messages,
                idle_timeout=timeout,
            ):
                if json:
                    sys.stdout.write(record.value.decode("utf-8", "replace") + "\n")
                    sys.stdout.flush()
                else:
                    out.print(render(record))
    except (BrokerUnreachable, BrokerRefused, TopicMissing) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        pass


@app.command(
    help=(
        "Tag every post of a CSV or JSONL file offline, with the same model, thresholds and top-k as the "
        "worker.\n\n"
        "Writes one JSON line per post (id, status tagged|review, tags or review candidates with "
        "confidences, model_version) to --out or stdout; bad rows are listed as file:line: reason (exit "
        "code 1).\n\n"
        "Example:  stream-tagger predict --file data/dataset.csv --out predictions.jsonl"
    )
)
def predict(
    ctx: typer.Context,
    file: PostsFile,
    out: Annotated[
        Path | None, typer.Option(help="Where to write the JSON lines (default: stdout).", show_default=False)
    ] = None,
    model_dir: Annotated[
        Path | None,
        typer.Option(
            "--model",
            help="Model folder (default: STREAM_TAGGER_MODEL_DIR or models/current).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Batch decisions the product owners can trust to match the stream's."""
    # Imported here: onnxruntime and the kernels take a while to load, which no other command needs.
    from stream_tagger.model.predictor import Predictor
    from stream_tagger.tools.predict import predict_file

    settings = settings_from(ctx, model_dir=model_dir)
    # Opening --out truncates it: were it the input, every post would be gone before one is read.
    if out is not None:
        refuse_overwriting(out, "--out", [file], "--file")
    try:
        predictor = Predictor.load(settings.model_dir)
    except ModelLoadError as exc:
        fail(f"cannot load the model: {exc}")
    try:
        with contextlib.ExitStack() as stack:
            try:
                sink = stack.enter_context(out.open("wb")) if out else sys.stdout.buffer
            except OSError as exc:
                cannot_write(out, exc)
            summary = predict_file(file, sink, settings, predictor)
    except (SourceError, OSError) as exc:
        fail(str(exc))
    print_bad_rows(summary.bad_rows)
    console.print(
        f"{summary.tagged + summary.review} posts: {summary.tagged} tagged, "
        f"{summary.review} to review, {len(summary.bad_rows)} bad rows (model {predictor.version})"
        + (f" -> {out}" if out else ""),
        highlight=False,
        markup=False,
    )
    if summary.bad_rows:
        raise typer.Exit(1)


@app.command(
    help=(
        "See it work: start the embedded broker, create the topics, start a worker and a feedback worker, "
        "stream the bundled dataset as raw events (with a few malformed ones) and watch them get tagged "
        "live.\n\n"
        "Shows a progress bar, events/s, end-to-end latency p50/p99, outcomes (tagged, review, dead-letter) "
        "and recent tagged posts; ends with a summary table and stops everything it started (also on "
        "Ctrl-C). Exit code 1 if any event is unaccounted for.\n\n"
        "Example:  stream-tagger demo --events 1500 --rate 150"
    )
)
def demo(
    events: Annotated[
        int, typer.Option(help="Events to stream (1% malformed, for the dead-letter topic).", min=1)
    ] = 1_500,
    rate: Annotated[float, typer.Option(help="Events per second; 0 for as fast as possible.", min=0)] = 150.0,
    data: Annotated[Path, typer.Option(help="CSV of posts to resample.")] = BUNDLED_DATASET,
    keep_running: Annotated[
        bool,
        typer.Option(
            "--keep-running", help="Leave the broker and workers up (metrics for Prometheus) until Ctrl-C."
        ),
    ] = False,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the summary as JSON here.", show_default=False)
    ] = None,
) -> None:
    """The first thing a new user runs: the real worker processes on a real (embedded) broker."""
    settings = settings_from()
    if summary_json:
        refuse_overwriting(summary_json, "--summary-json", [data], "--data")
        check_writable(summary_json)  # now, not after the whole demo
    try:
        with sigterm_as_interrupt():
            summary = run_demo(
                settings,
                events=events,
                rate=rate or None,
                data=data,
                keep_running=keep_running,
                console=console,
            )
    except ModelLoadError as exc:
        fail(f"cannot load the model: {exc}")
    except (ProcessError, BrokerError, SourceError) as exc:
        fail(str(exc))
    except (BrokerRefused, BrokerWaitExpired, TopicsMismatch, BrokerUnreachable, TopicMissing) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        fail("interrupted; the broker and workers were stopped", code=130)
    if summary_json:
        try:
            summary_json.write_bytes(msgspec.json.encode(summary))
        except OSError as exc:  # checked before the run, but the disk may have filled up since
            cannot_write(summary_json, exc)
    if not summary.accounted:
        fail(f"{summary.missing} of {summary.produced} events unaccounted for")
