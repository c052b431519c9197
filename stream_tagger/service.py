"""Running the worker and the feedback worker from Python: what their commands do, without the command line.

A deployment that embeds them (its own entry point, a supervisor, a notebook) gets the same start-up
order as the CLI. First the web server (``web.py``), so that /healthz answers from the first second,
with the phase the process is in; then, for a worker, load the live model (a bad one fails before any
broker traffic), wait for the broker, create missing topics, load the shadow model if one is
configured; and hand the process to Faust, which owns the signals from then on (SIGTERM: finish the
batches in flight, commit, exit 0).

Until Faust owns them, SIGTERM and SIGINT end the start-up where it is (the model load and the broker
wait block the main thread), with a log line and exit code 0: nothing was consumed or produced yet.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from stream_tagger.metrics import FeedbackMetrics, Metrics
from stream_tagger.settings import Settings
from stream_tagger.web import JOINING, LOADING_MODEL, WAITING_FOR_BROKER, Probes, WebServer

if TYPE_CHECKING:
    import faust

log = logging.getLogger("stream_tagger.worker")

_START_UP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class WorkerFailed(RuntimeError):
    """The hot path stopped on a failure it must not skip (an unacknowledged output, say)."""


class _Stopped(BaseException):
    """A signal ended the start-up. A BaseException, as KeyboardInterrupt is: no ``except Exception``
    on the way may take it for an error of what it interrupted."""


@contextlib.contextmanager
def _signals_end_start_up() -> Iterator[None]:
    """SIGTERM and SIGINT raise ``_Stopped`` in the main thread until Faust installs its own handlers;
    the previous handlers come back if the start-up does not get that far."""
    if threading.current_thread() is not threading.main_thread():  # only the main thread gets signals
        yield
        return

    def stop(signum: int, _frame: FrameType | None) -> None:
        raise _Stopped(signal.Signals(signum).name)

    previous = {number: signal.signal(number, stop) for number in _START_UP_SIGNALS}
    try:
        yield
    except BaseException:
        for number, handler in previous.items():
            signal.signal(number, handler)
        raise


def _serve_and_start(
    settings: Settings, registry: CollectorRegistry, phase: str, start: Callable[[Probes, WebServer], int]
) -> int:
    """The web server first, then ``start``; a signal during start-up is a log line and exit code 0."""
    probes = Probes(phase)
    server = WebServer(settings.web_host, settings.web_port, registry, probes).start()
    try:
        with _signals_end_start_up():
            return start(probes, server)
    except _Stopped as stopped:
        log.info("%s while %s: stopped before start-up finished", stopped, probes.phase)
        return 0
    finally:
        server.stop()


def _run_faust(app: faust.App, handed_over: Callable[[], None]) -> int:
    """Run ``app`` in a Faust worker until it stops; its exit code. Faust's signal handlers replace the
    start-up's at once, then ``handed_over`` runs; logging stays as ``stream_tagger.logs`` set it."""
    import faust

    worker = faust.Worker(app, quiet=True, override_logging=False)
    worker.spinner = None  # it writes terminal escapes to stdout even when that is a file or a pipe
    worker.install_signal_handlers()
    handed_over()
    try:
        worker.execute_from_commandline()
    except SystemExit as exit_:
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0


def run_worker(settings: Settings) -> int:
    """Run until SIGTERM/SIGINT and return the process exit code (0 after a graceful stop).

    Raises ``ModelLoadError`` when the live model cannot be loaded (a shadow model that cannot is left
    out, see ``Online``), ``BrokerRefused`` or ``BrokerWaitExpired`` when the broker refuses the client
    or did not answer in time, ``TopicsMismatch`` when the feedback join runs here and its topics do not
    have ``partitions`` partitions, and ``WorkerFailed`` when the hot path stopped on a failure.
    """
    metrics = Metrics(CollectorRegistry())
    return _serve_and_start(
        settings,
        metrics.registry,
        LOADING_MODEL,
        lambda probes, server: _start_worker(settings, metrics, probes, server),
    )


def _start_worker(settings: Settings, metrics: Metrics, probes: Probes, server: WebServer) -> int:
    from stream_tagger.app import Worker, tune_gc, tune_malloc
    from stream_tagger.kafka.admin import check_feedback_partitions, ensure_topics, wait_for_broker
    from stream_tagger.model.predictor import Predictor
    from stream_tagger.online.attach import Online

    tune_malloc()
    predictor = Predictor.load(settings.model_dir)
    log.info("model %s loaded from %s", predictor.version, settings.model_dir)
    probes.phase = WAITING_FOR_BROKER
    existing = wait_for_broker(settings) or {}
    probes.phase = JOINING
    ensure_topics(settings, existing)
    service = Worker(settings, predictor, metrics=metrics)
    online = Online(service)
    if online.feedback is not None:
        check_feedback_partitions(settings, existing, online.feedback.changelogs())

    def hand_over() -> None:
        probes.probe = service.probe
        online.start()
        tune_gc()
        log.info(
            "worker up: %s -> %s, model %s, web on :%d",
            settings.topic_raw,
            settings.topic_tagged,
            predictor.version,
            server.port,
        )

    code = _run_faust(service.faust_app, hand_over)
    if service.service.failure is not None:
        raise WorkerFailed(f"stopped after a hot path failure: {service.service.failure}")
    return code


def run_feedback_worker(settings: Settings) -> int:
    """The feedback worker (``feedback-worker``): web server, broker wait, then Faust until SIGTERM;
    the exit code. Raises ``BrokerRefused``, ``BrokerWaitExpired`` or ``TopicsMismatch`` as
    ``run_worker`` does."""
    metrics = FeedbackMetrics(CollectorRegistry())
    return _serve_and_start(
        settings,
        metrics.registry,
        WAITING_FOR_BROKER,
        lambda probes, server: _start_feedback_worker(settings, metrics, probes, server),
    )


def _start_feedback_worker(
    settings: Settings, metrics: FeedbackMetrics, probes: Probes, server: WebServer
) -> int:
    from stream_tagger.kafka.admin import check_feedback_partitions, wait_for_broker
    from stream_tagger.online.feedback import feedback_app
    from stream_tagger.web import FeedbackProbe, watch_faust

    existing = wait_for_broker(settings) or {}
    probes.phase = JOINING
    app, loop = feedback_app(settings, metrics)
    check_feedback_partitions(settings, existing, loop.changelogs())
    probe = FeedbackProbe(app, watch_faust(app), settings.stall_seconds)

    def hand_over() -> None:
        probes.probe = probe
        log.info(
            "feedback worker up: %s + %s, web on :%d",
            settings.topic_tagged,
            settings.topic_feedback,
            server.port,
        )

    return _run_faust(app, hand_over)
