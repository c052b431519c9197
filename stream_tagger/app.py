"""The Faust application: the one place that wires settings, model, pipeline, hot path, metrics and web.

The process is a Faust worker: Faust gives it the lifecycle (SIGTERM -> graceful stop) and agents with
changelog-backed tables for low-volume topics such as feedback. /metrics, /healthz and /ready are the
process's own server (``web.py``), up before Faust runs; Faust's web server is off. The high-volume raw
topic does not go through Faust's per-event stream machinery (measured ~4.4k events/s); it is read by
``HotPathService``, a mode Service running the confluent-kafka loop of ``hot_path`` in its own thread
(~10x that).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path

import faust
from mode import Service
from prometheus_client import CollectorRegistry

from stream_tagger.kafka.config import faust_credentials
from stream_tagger.metrics import Metrics
from stream_tagger.model.predictor import Predictor
from stream_tagger.online.observers import ConfidenceObserver, RulesBaselineObserver
from stream_tagger.settings import Settings
from stream_tagger.web import WorkerProbe, watch_faust
from stream_tagger.worker.hot_path import HotPath
from stream_tagger.worker.pipeline import BatchObserver, Pipeline, Topics
from stream_tagger.worker.route import label_thresholds

log = logging.getLogger(__name__)

# Faust's default request timeout, and what a request must outlast a longer session by.
_FAUST_REQUEST_TIMEOUT_S = 90.0
_FAUST_REQUEST_MARGIN_S = 30.0


class HotPathService(Service):
    """Runs ``HotPath.run`` in a dedicated thread for as long as the Faust app runs.

    A failure in the loop (e.g. an output the broker never acked) takes the same route as SIGTERM,
    a graceful stop of the whole worker, and leaves ``failure`` set so the command exits 1.
    """

    def __init__(self, hot_path: HotPath, **kwargs: object) -> None:
        self.hot_path = hot_path
        self.failure: BaseException | None = None
        self._thread: threading.Thread | None = None
        super().__init__(**kwargs)

    async def on_started(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hot-path", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.hot_path.run()
        except BaseException as exc:
            self.failure = exc
            log.info("stopping the worker after the hot path's failure")
            os.kill(os.getpid(), signal.SIGTERM)

    async def on_stop(self) -> None:
        self.hot_path.stop()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join)


class Worker:
    """Everything one worker process runs, built from settings and an already loaded model."""

    def __init__(
        self,
        settings: Settings,
        predictor: Predictor,
        observers: list[BatchObserver] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.predictor = predictor
        self.metrics = metrics or Metrics(CollectorRegistry())
        served = label_thresholds(predictor.labels, predictor.thresholds, settings.threshold)
        self.metrics.set_model_info(predictor.version, "live", predictor.labels, served)
        topics = Topics(settings.topic_tagged, settings.topic_review, settings.topic_dead_letter)
        self.pipeline = Pipeline(
            predictor,
            topics,
            max_event_bytes=settings.max_event_bytes,
            top_k=settings.top_k,
            threshold=settings.threshold,
            dedup_window=settings.dedup_window_size,
            score_chunks=settings.score_chunks,
            observers=[
                ConfidenceObserver(self.metrics),
                RulesBaselineObserver(self.metrics, settings.rules_baseline_stride),
                *(observers or []),
            ],
        )
        self.hot_path = HotPath(settings, self.pipeline, self.metrics)
        self.faust_app = make_faust_app(settings)
        self.service = HotPathService(self.hot_path)
        self.faust_app.service(self.service)
        self.probe = WorkerProbe(self.hot_path, watch_faust(self.faust_app), settings.stall_seconds)


def make_faust_app(settings: Settings) -> faust.App:
    """The Faust app of a worker or feedback worker: its aiokafka clients connect and log in as the
    process's librdkafka clients do (``stream_tagger.kafka.config``)."""
    brokers = [f"kafka://{server}" for server in settings.brokers()]
    app_id = f"{settings.consumer_group}-app"
    session_timeout = settings.session_timeout_ms / 1000
    return faust.App(
        app_id,
        broker=brokers,
        broker_credentials=faust_credentials(settings),
        store="memory://",
        autodiscover=False,
        datadir=str(Path(tempfile.gettempdir()) / f"stream-tagger-{app_id}"),
        # The process serves /metrics, /healthz and /ready itself (web.py). Faust's web server stays
        # off (its views would show table contents) and gets no web settings: it would refuse port 0
        # ("any free port") as soon as anything read its configuration.
        web_enabled=False,
        broker_session_timeout=session_timeout,
        # aiokafka's requests must outlast the session (Faust refuses a longer session otherwise).
        broker_request_timeout=max(_FAUST_REQUEST_TIMEOUT_S, session_timeout + _FAUST_REQUEST_MARGIN_S),
        broker_heartbeat_interval=settings.heartbeat_interval_ms / 1000,
        topic_partitions=settings.partitions,
        topic_replication_factor=settings.replication_factor,
    )


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc() -> None:
    """Keep the memory a micro-batch frees for the next one (glibc; elsewhere nothing to do).

    Each batch frees a few MB of arrays at once (the featuriser's n-grams, the graph's inputs). glibc
    returns the top of its heap to the OS once more than a threshold is free there (by default twice
    the largest block it has freed), and the next batch then faults every page in again: about 2 page
    faults per event in a worker draining a backlog. Fixed thresholds keep that memory in the process;
    its resident size stays near its high-water mark, which is what a memory limit must allow for anyway.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return
    # Either call fixes both thresholds (glibc stops moving them), so the mmap one goes first: with it
    # refused, glibc keeps its own. 32 MB: glibc's largest mmap threshold on 64-bit, bigger blocks are
    # mapped on their own as always. 64 MB: many batches' worth, well under a worker's memory limit.
    for name, option, value in (
        ("M_MMAP_THRESHOLD", _M_MMAP_THRESHOLD, 32 << 20),
        ("M_TRIM_THRESHOLD", _M_TRIM_THRESHOLD, 64 << 20),
    ):
        if not mallopt(option, value):  # 1 on success
            log.warning("glibc refused %s=%d: freed memory may be faulted in again", name, value)
            return


def tune_gc() -> None:
    """Make the collector cheap for a process that allocates ~10 small objects per event.

    ``freeze`` moves everything loaded at start (Faust, numpy, the model) out of the collector's
    reach; a larger first-generation threshold collects once per few batches instead of several
    times per batch. Measured on the hot path: 36k -> 39k events/s with a fake model.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
