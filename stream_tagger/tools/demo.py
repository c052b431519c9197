"""The one-command demo: broker, topics, a real worker and feedback worker, a stream of posts, and what
comes out.

The worker and the feedback loop run as subprocesses (``stream-tagger worker``, ``stream-tagger
feedback-worker``), exactly as in production, so the demo shows the real thing and cannot pass by
sharing state with the producer. Every process it starts is stopped
on the way out, whatever the way out is (end, error, Ctrl-C, SIGTERM), unless ``keep_running`` asks
for the stack to stay up until Ctrl-C.
"""

from __future__ import annotations

import contextlib
import os
import socket
import statistics
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from stream_tagger.events import DeadLetter, RawContent, TaggedContent
from stream_tagger.kafka.admin import ensure_topics, wait_for_broker
from stream_tagger.kafka.embedded_broker import EmbeddedBroker, free_port
from stream_tagger.model.versions import resolve
from stream_tagger.processes import ServiceProcess, cli_command
from stream_tagger.settings import Settings, env_name
from stream_tagger.tools.produce import DeliveryReport, encode, make_producer, publish
from stream_tagger.tools.sources import BUNDLED_DATASET, resample, valid_posts
from stream_tagger.tools.tail import Record, follow, latency_ms

# One malformed event per 100, at least one of each dead-letter reason: enough to see the dead-letter
# topic work without drowning the tagged stream.
_MALFORMED_EVERY = 100
# The bundled posts are the model's training data, so it is sure of nearly all of them; one event in 50
# is a post that names no topic, which the model is unsure of: the human-review path at work.
_VAGUE_EVERY = 50
_VAGUE = (
    ("My weekend project", "A small thing I made"),
    ("Notes from a talk", "Slides and links"),
    ("Awesome list", "A curated list of resources"),
    ("A survey", "Papers and code"),
    ("Course materials", "Lectures and homework"),
    ("Reading group", "Weekly papers"),
)
# After the last event is acknowledged, give the worker this long without any new outcome before
# declaring the missing events lost (the summary then says so and the exit code is 1).
_SETTLE_SECONDS = 30.0
_READY_TIMEOUT_S = 90.0
# How a client reaches a real cluster (TLS, SASL, OAuth): the demo's own broker is plaintext and takes
# no login, so none of what the shell has for a cluster may reach the demo's clients or its workers.
_SECURITY_FIELDS = tuple(
    name
    for name in Settings.model_fields
    if name == "security_protocol" or name.startswith(("ssl_", "sasl_", "oauth_"))
)


def malformed_events(max_event_bytes: int) -> list[tuple[str, bytes]]:
    """(dead-letter reason, value) pairs: one message for each reason the worker knows."""
    created = b'"created_at":"2024-01-01T00:00:00Z"'
    big = b"x" * max_event_bytes
    return [
        ("not_utf8", b'{"id":"x","title":"\xff\xfe"}'),
        ("not_json", b'{"id": "half a message", "title": '),
        ("schema", b'{"id": 42, "title": ["not", "a", "string"], ' + created + b"}"),
        ("unknown_schema_version", b'{"schema_version":2,"id":"v2","title":"T",' + created + b"}"),
        ("too_large", b'{"id":"big","title":"' + big + b'",' + created + b"}"),
    ]


def demo_stream(
    posts: list[RawContent], n: int, prefix: str, max_event_bytes: int, seed: int = 0
) -> tuple[list[tuple[bytes, bytes]], dict[str, str]]:
    """``n`` (key, value) messages, every key unique: resampled posts with vague and malformed ones
    spread through, and the title of every valid post by id (for the panel's recent-posts list)."""
    bad = malformed_events(max_event_bytes)
    n_bad = max(len(bad), n // _MALFORMED_EVERY) if n >= 2 * len(bad) else 0
    n_vague = (n - n_bad) // _VAGUE_EVERY
    good = resample(posts, n - n_bad - n_vague, seed=seed, id_prefix=prefix)
    for i in range(n_vague):
        title, description = _VAGUE[i % len(_VAGUE)]
        vague = RawContent(
            id=f"{prefix}-vague-{i}", title=title, description=description, created_at=good[0].created_at
        )
        good.insert((i + 1) * _VAGUE_EVERY - 1, vague)
    messages: list[tuple[bytes, bytes]] = [(post.id.encode(), encode(post)) for post in good]
    step = max(1, len(messages) // max(n_bad, 1))
    for i in range(n_bad):
        reason, value = bad[i % len(bad)]
        key = f"{prefix}-bad-{i}-{reason}".encode()
        messages.insert(min(len(messages), (i + 1) * step + i), (key, value))
    return messages, {post.id: post.title for post in good}


class DemoSummary(msgspec.Struct, kw_only=True):
    """Every produced event accounted for, and which processes ran (so a test can check they are gone)."""

    produced: int
    delivered: int
    tagged: int
    review: int
    dead_letter: int
    missing: int
    latency_p50_ms: float | None
    latency_p99_ms: float | None
    seconds: float
    events_per_second: float
    bootstrap_servers: str
    metrics_url: str
    broker_pid: int | None
    worker_pid: int | None
    feedback_worker_pid: int | None = None

    @property
    def accounted(self) -> bool:
        return self.missing == 0 and self.produced == self.tagged + self.review + self.dead_letter


@dataclass
class Tally:
    """What has come out so far, by unique id (a replayed output must not count twice)."""

    titles: dict[str, str]
    tagged: set[str] = field(default_factory=set)
    review: set[str] = field(default_factory=set)
    dead: set[bytes] = field(default_factory=set)
    latencies: list[float] = field(default_factory=list)
    recent: deque[TaggedContent] = field(default_factory=lambda: deque(maxlen=6))
    arrivals: deque[float] = field(default_factory=lambda: deque(maxlen=5_000))

    def add(self, record: Record) -> None:
        event = record.event
        if isinstance(event, TaggedContent):
            if event.id in self.tagged or event.id in self.review:
                return
            (self.tagged if event.status == "tagged" else self.review).add(event.id)
            self.latencies.append(latency_ms(event))
            if event.status == "tagged":
                self.recent.append(event)
        elif isinstance(event, DeadLetter):
            key = event.original_key or f"{event.partition}@{event.offset}".encode()
            if key in self.dead:
                return
            self.dead.add(key)
        else:
            return
        self.arrivals.append(time.monotonic())

    @property
    def done(self) -> int:
        return len(self.tagged) + len(self.review) + len(self.dead)

    def rate(self, window: float = 2.0) -> float:
        now = time.monotonic()
        return sum(1 for t in self.arrivals if now - t <= window) / window

    def percentile(self, q: float) -> float | None:
        if len(self.latencies) < 2:
            return self.latencies[0] if self.latencies else None
        return statistics.quantiles(self.latencies, n=100, method="inclusive")[round(q) - 1]


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


class LivePanel:
    """The live view: progress, throughput, latency, outcomes, the processes, recent tagged posts."""

    def __init__(self, total: int, tally: Tally, processes: list[ServiceProcess]) -> None:
        self.tally = tally
        self.processes = processes
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()
        )
        self.sent = self.progress.add_task("produced ", total=total)
        self.out = self.progress.add_task("processed", total=total)

    def __rich__(self) -> Group:
        tally = self.tally
        self.progress.update(self.out, completed=tally.done)
        stats = Table.grid(padding=(0, 3))
        stats.add_row(
            f"[bold]{tally.rate():.0f}[/] events/s",
            f"latency p50 [bold]{_ms(tally.percentile(50))}[/]  p99 [bold]{_ms(tally.percentile(99))}[/]",
            f"[green]tagged {len(tally.tagged)}[/]",
            f"[yellow]review {len(tally.review)}[/]",
            f"[red]dead-letter {len(tally.dead)}[/]",
        )
        stats.add_row(
            *(
                f"{p.name} pid {p.pid} " + ("[green]up[/]" if p.alive else "[red]exited[/]")
                for p in self.processes
            )
        )
        recent = Table(title="recent tagged posts", title_justify="left", expand=True, show_edge=False)
        recent.add_column("post", ratio=3, no_wrap=True)
        recent.add_column("tags (confidence)", ratio=2, no_wrap=True)
        for event in reversed(tally.recent):
            tags = ", ".join(f"{s.tag} {s.confidence:.2f}" for s in event.tags) or "(author's tags only)"
            recent.add_row(tally.titles.get(event.id, event.id), f"[green]{tags}[/]")
        return Group(self.progress, stats, recent)


def summary_table(summary: DemoSummary) -> Table:
    table = Table(title="stream-tagger demo", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    rows = [
        ("produced", summary.produced),
        ("tagged", summary.tagged),
        ("pending review", summary.review),
        ("dead-letter", summary.dead_letter),
        ("missing", summary.missing),
        ("every event accounted for", "yes" if summary.accounted else "NO"),
        ("throughput", f"{summary.events_per_second:.0f} events/s over {summary.seconds:.1f} s"),
        ("end-to-end latency p50 / p99", f"{_ms(summary.latency_p50_ms)} / {_ms(summary.latency_p99_ms)}"),
    ]
    for name, value in rows:
        table.add_row(name, str(value))
    return table


def _port_or_free(port: int) -> int:
    """The configured metrics port when it is free (Prometheus' config expects it), else any free one."""
    if not port:
        return free_port()
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return free_port()
    return port


def run_demo(
    settings: Settings,
    events: int = 1_500,
    rate: float | None = 150.0,
    data: Path = BUNDLED_DATASET,
    keep_running: bool = False,
    console: Console | None = None,
    log_dir: Path | None = None,
) -> DemoSummary:
    """Run the whole demo and return its summary; every process started here is stopped on return
    (with ``keep_running``, only after Ctrl-C/SIGTERM)."""
    console = console or Console(stderr=True)
    posts = valid_posts(data)
    resolve(settings.model_dir)  # a missing model fails here, naming its path, before anything starts
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="stream-tagger-demo-"))
    prefix = uuid.uuid4().hex[:8]
    with contextlib.ExitStack() as stack:
        broker = stack.enter_context(EmbeddedBroker(log_path=log_dir / "broker.log"))
        web_port = _port_or_free(settings.web_port)
        run = settings.model_copy(
            update={
                "bootstrap_servers": broker.bootstrap_servers,
                "web_port": web_port,
                "consumer_group": f"stream-tagger-demo-{prefix}",
                "replication_factor": 1,
                "min_insync_replicas": 1,  # one in-memory broker
                # Tansu holds a group join for about half the session timeout: keep start-up short.
                "session_timeout_ms": 6_000,
                "heartbeat_interval_ms": 500,
                # The demo's own broker speaks PLAINTEXT (the default), whatever the shell's TLS/SASL/OAuth.
                **{name: Settings.model_fields[name].default for name in _SECURITY_FIELDS},
            }
        )
        console.print(f"broker on [bold]{broker.bootstrap_servers}[/] (in memory, pid {broker.pid})")
        ensure_topics(run, wait_for_broker(run) or {})
        env = _child_env(run)
        worker = stack.enter_context(
            ServiceProcess(cli_command("worker"), env, log_dir / "worker.log", web_port)
        )
        # Its own web port; both start at once, so their group joins overlap.
        feedback_port = free_port()
        feedback = stack.enter_context(
            ServiceProcess(
                cli_command("feedback-worker"),
                {**env, "STREAM_TAGGER_WEB_PORT": str(feedback_port)},
                log_dir / "feedback-worker.log",
                feedback_port,
            )
        )
        processes = [worker, feedback]
        console.print(
            f"worker pid {worker.pid} and feedback worker pid {feedback.pid} starting (logs in {log_dir}) ..."
        )
        for process in processes:
            process.wait_ready(_READY_TIMEOUT_S)
        messages, titles = demo_stream(posts, events, prefix, run.max_event_bytes)
        summary = _stream(run, messages, titles, rate, console, processes)
        summary.broker_pid, summary.worker_pid = broker.pid, worker.pid
        summary.feedback_worker_pid = feedback.pid
        console.print()  # off a terminal, Live leaves the cursor at the end of its last line
        console.print(summary_table(summary))
        if keep_running:
            console.print(
                f"still running: broker {run.bootstrap_servers}, metrics {summary.metrics_url}\n"
                f"feedback worker metrics {feedback.url}/metrics\n"
                f"try: STREAM_TAGGER_BOOTSTRAP_SERVERS={run.bootstrap_servers} stream-tagger tail\n"
                "Ctrl-C stops them all."
            )
            with contextlib.suppress(KeyboardInterrupt):
                while all(process.alive for process in processes):
                    time.sleep(1)
        console.print(
            f"stopping feedback worker (pid {feedback.pid}), worker (pid {worker.pid}) and "
            f"broker (pid {broker.pid})"
        )
    return summary


def _child_env(settings: Settings) -> dict[str, str]:
    """The child workers' environment: this one's, less its security settings, with their overrides."""
    security = {env_name(name) for name in _SECURITY_FIELDS}
    inherited = {key: value for key, value in os.environ.items() if key.upper() not in security}
    return {**inherited, **_worker_env(settings)}


def _worker_env(settings: Settings) -> dict[str, str]:
    """The overrides the child workers need on top of the inherited environment."""
    return {
        # The loop runs in the feedback worker only, whatever the inherited environment says.
        "STREAM_TAGGER_FEEDBACK_IN_WORKER": "false",
        "STREAM_TAGGER_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "STREAM_TAGGER_WEB_PORT": str(settings.web_port),
        "STREAM_TAGGER_CONSUMER_GROUP": settings.consumer_group,
        "STREAM_TAGGER_SESSION_TIMEOUT_MS": str(settings.session_timeout_ms),
        "STREAM_TAGGER_HEARTBEAT_INTERVAL_MS": str(settings.heartbeat_interval_ms),
        "STREAM_TAGGER_MODEL_DIR": str(Path(settings.model_dir).resolve()),
        "STREAM_TAGGER_LOG_LEVEL": "WARNING",
    }


def _stream(
    settings: Settings,
    messages: list[tuple[bytes, bytes]],
    titles: dict[str, str],
    rate: float | None,
    console: Console,
    processes: list[ServiceProcess],
) -> DemoSummary:
    """Produce in a thread while this one follows the outputs and redraws the panel."""
    tally = Tally(titles)
    panel = LivePanel(len(messages), tally, processes)
    stop = threading.Event()
    report = DeliveryReport()
    finished_at: list[float] = []

    def produce() -> None:
        items = _until(stop, messages)
        result = publish(
            make_producer(settings),
            settings.topic_raw,
            items,
            rate=rate,
            on_sent=lambda n: panel.progress.advance(panel.sent, n),
        )
        report.delivered, report.failed, report.errors = result.delivered, result.failed, result.errors
        finished_at.append(time.monotonic())

    started = time.monotonic()
    producer = threading.Thread(target=produce, name="demo-producer", daemon=True)
    producer.start()

    def settled() -> bool:
        if tally.done >= len(messages):
            return True
        if not finished_at:
            return False
        last = tally.arrivals[-1] if tally.arrivals else finished_at[0]
        return time.monotonic() - max(last, finished_at[0]) > _SETTLE_SECONDS

    try:
        with Live(panel, console=console, refresh_per_second=4, transient=False):
            for record in follow(
                settings,
                [settings.topic_tagged, settings.topic_dead_letter],
                from_beginning=True,
                stop=settled,
            ):
                tally.add(record)
    finally:
        stop.set()
        producer.join(timeout=_SETTLE_SECONDS)
    seconds = time.monotonic() - started
    return DemoSummary(
        produced=len(messages),
        delivered=report.delivered,
        tagged=len(tally.tagged),
        review=len(tally.review),
        dead_letter=len(tally.dead),
        missing=len(messages) - tally.done,
        latency_p50_ms=tally.percentile(50),
        latency_p99_ms=tally.percentile(99),
        seconds=seconds,
        events_per_second=tally.done / seconds if seconds else 0.0,
        bootstrap_servers=settings.bootstrap_servers,
        metrics_url=f"http://127.0.0.1:{settings.web_port}/metrics",
        broker_pid=None,
        worker_pid=None,
    )


def _until(stop: threading.Event, messages: list[tuple[bytes, bytes]]) -> Iterator[tuple[bytes, bytes]]:
    for message in messages:
        if stop.is_set():
            return
        yield message
