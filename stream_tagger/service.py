"""Running the worker from Python: what ``stream-tagger worker`` does, without the command line.

A deployment that embeds the worker (its own entry point, a supervisor, a notebook) gets the same
start-up order as the CLI: load the live model first (a bad one fails before any broker traffic), wait
for the broker, create missing topics, load the shadow model if one is configured, then hand the
process to Faust, which owns the signals.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from stream_tagger.settings import Settings

log = logging.getLogger("stream_tagger.worker")


class WorkerFailed(RuntimeError):
    """The hot path stopped on a failure it must not skip (an unacknowledged output, say)."""


def run_worker(settings: Settings, on_ready: Callable[[str], None] | None = None) -> int:
    """Run until SIGTERM/SIGINT and return the process exit code (0 after a graceful stop).

    Raises ``ModelLoadError`` when the live or the shadow model cannot be loaded, and ``WorkerFailed``
    when the hot path stopped on a failure; ``on_ready`` receives a one-line summary once started.
    """
    import faust

    from stream_tagger import compiled
    from stream_tagger.app import Worker, tune_gc
    from stream_tagger.kafka.admin import ensure_topics, wait_for_broker
    from stream_tagger.model.artefacts import ModelLoadError
    from stream_tagger.model.runtime import Predictor
    from stream_tagger.online import Online

    predictor = Predictor.load(settings.model_dir)
    log.info(
        "model %s loaded from %s; kernels: %s", predictor.version, settings.model_dir, compiled.describe()
    )
    existing = wait_for_broker(settings)
    ensure_topics(settings, existing or set())
    service = Worker(settings, predictor)
    try:
        online = Online(service)
    except ModelLoadError as exc:
        raise ModelLoadError(f"shadow model: {exc}") from exc
    online.start()
    tune_gc()
    if on_ready is not None:
        on_ready(
            f"worker up: {settings.topic_raw} -> {settings.topic_tagged}, model {predictor.version}, "
            f"web on :{settings.web_port}"
        )
    try:
        worker = faust.Worker(service.faust_app, loglevel=settings.log_level.upper(), quiet=True)
        worker.execute_from_commandline()
    except SystemExit as exit_:
        if service.service.failure is not None:
            raise WorkerFailed(f"stopped after a hot path failure: {service.service.failure}") from None
        return exit_.code if isinstance(exit_.code, int) else 1
    return 0
