"""The worker's online-evaluation side, attached to a ``Worker``: what tells the team how the model does.

Batch observers in the hot path (duplicates, author-tag agreement, drift, shadow), the feedback
agents with their changelog-backed tables, and hot reload of the live and shadow models. Kept apart
from ``app.py`` so the core worker stays small and each piece can be read on its own.
"""

from __future__ import annotations

import logging

from stream_tagger.app import Worker
from stream_tagger.model.predictor import Predictor
from stream_tagger.model.versions import ModelLoadError
from stream_tagger.online.drift import DriftObserver
from stream_tagger.online.duplicates import DuplicateIndex, DuplicateObserver
from stream_tagger.online.feedback import FeedbackLoop
from stream_tagger.online.model_watch import ModelWatcher
from stream_tagger.online.precision_recall import AuthorAgreementObserver
from stream_tagger.online.shadow import ShadowObserver
from stream_tagger.worker.route import label_thresholds

log = logging.getLogger(__name__)


class Online:
    """Everything online evaluation adds to one worker process."""

    def __init__(self, worker: Worker) -> None:
        settings, metrics = worker.settings, worker.metrics
        self.worker = worker
        self.live = worker.predictor
        shadow = self._load_shadow() if settings.shadow_model_dir is not None else None
        self.shadow = shadow
        self.drift = DriftObserver(metrics, settings.drift_window, settings.drift_min_events)
        self.drift.use(self.live)
        self.shadow_observer = ShadowObserver(
            shadow, settings.topic_shadow_disagreements, metrics, on_disabled=self._shadow_disabled
        )
        worker.pipeline.observers.extend(
            [
                DuplicateObserver(DuplicateIndex(settings.duplicates_window), metrics),
                AuthorAgreementObserver(metrics),
                self.drift,
                self.shadow_observer,
            ]
        )
        self.feedback = (
            FeedbackLoop(worker.faust_app, settings, metrics) if settings.feedback_in_worker else None
        )
        interval = settings.model_watch_interval_seconds
        # Each watcher starts from the folder actually loaded: the pointer may have moved since.
        self.watchers: list[ModelWatcher[Predictor]] = [
            ModelWatcher(settings.model_dir, Predictor.load, self.live.folder, [self._serve], interval),
        ]
        if settings.shadow_model_dir is not None:
            self.watchers.append(
                ModelWatcher(
                    settings.shadow_model_dir,
                    Predictor.load,
                    shadow.folder if shadow is not None else None,
                    [self._shadow],
                    interval,
                )
            )
        worker.hot_path.between_batches.append(self.apply_model_swaps)
        if shadow is not None:  # the live model's info is the Worker's own; only the shadow is new
            self._export_model_info()

    def _load_shadow(self) -> Predictor | None:
        """The shadow model, or None when it cannot be loaded for whatever reason: a candidate must
        never keep the worker from serving (its watcher loads it once it is fixed or another version
        is pointed to)."""
        settings = self.worker.settings
        assert settings.shadow_model_dir is not None
        try:
            return Predictor.load(settings.shadow_model_dir)
        except Exception as exc:  # ModelLoadError, or whatever a broken model raises while loading
            said = str(exc) if isinstance(exc, ModelLoadError) else f"{type(exc).__name__}: {exc}"
            log.error("shadow model not loaded, starting without it: %s", " ".join(said.splitlines()))
            self.worker.metrics.shadow_failures.labels(str(settings.shadow_model_dir)).inc()
            return None

    def apply_model_swaps(self) -> None:
        """Runs in the hot-path thread between two batches, so each batch sees exactly one version."""
        for watcher in self.watchers:
            watcher.apply()

    def start(self) -> None:
        """Start polling the model pointers (daemon threads: they end with the process)."""
        for watcher in self.watchers:
            watcher.start()

    def _serve(self, predictor: Predictor) -> None:
        self.worker.pipeline.serve(predictor)
        self.live = self.worker.predictor = predictor
        self.drift.use(predictor)
        self._export_model_info()

    def _shadow(self, predictor: Predictor) -> None:
        self.shadow = predictor
        self.shadow_observer.use(predictor)
        self._export_model_info()

    def _shadow_disabled(self) -> None:
        self.shadow = None
        self._export_model_info()

    def _export_model_info(self) -> None:
        metrics, threshold = self.worker.metrics, self.worker.settings.threshold
        metrics.model_info.clear()
        for role, model in (("live", self.live), ("shadow", self.shadow)):
            if model is not None:
                served = label_thresholds(model.labels, model.thresholds, threshold)
                metrics.set_model_info(model.version, role, model.labels, served)
