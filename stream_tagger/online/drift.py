"""Is the live stream still the kind of text the model was trained on?

Three cheap signals per event are compared with the distributions stored beside the model at training
time (``metadata["reference"]``): the share of tokens the vectoriser has never seen (new vocabulary,
another language, spam), the predicted-class mix (the topic balance moved), and the top-1 confidence
(the model is unsure more often). Each is scored with the Population Stability Index over a rolling
window of the most recent events; PSI > 0.2 is the usual "significant shift" rule of thumb, and the
alert rule uses it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stream_tagger.metrics import Metrics
from stream_tagger.model.predictor import Predictor
from stream_tagger.worker.pipeline import OutputRecord, ScoredBatch

log = logging.getLogger(__name__)

#: Replaces empty bins before the log: PSI is infinite when a bin is empty on one side only, and a
#: window of a few hundred events leaves rare bins empty by chance. 1e-4 caps one empty bin's term at
#: about share * 9, so a real shift still dominates.
PSI_EPSILON = 1e-4

SIGNALS: tuple[str, ...] = ("oov_share", "predicted_class", "confidence")


def psi(
    expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, epsilon: float = PSI_EPSILON
) -> float:
    """Population Stability Index of two distributions over the same bins (counts or shares)."""
    e = np.asarray(expected, dtype=np.float64)
    a = np.asarray(actual, dtype=np.float64)
    if e.shape != a.shape or e.ndim != 1 or e.size == 0:
        raise ValueError(f"psi needs two 1-d distributions of equal length, got {e.shape} and {a.shape}")
    if e.sum() <= 0 or a.sum() <= 0:
        raise ValueError("psi needs non-empty distributions")
    e = np.maximum(e / e.sum(), epsilon)
    a = np.maximum(a / a.sum(), epsilon)
    e, a = e / e.sum(), a / a.sum()
    return float(np.sum((a - e) * np.log(a / e)))


def _check_distribution(name: str, freq: np.ndarray) -> None:
    """Reject a reference PSI cannot compare against, when the model loads: found at scrape time instead,
    it would fail every /metrics request."""
    if not np.all(np.isfinite(freq)) or np.any(freq < 0) or freq.sum() <= 0:
        raise ValueError(f"reference {name!r}: need finite, non-negative shares with a positive sum")


@dataclass(frozen=True)
class Histogram:
    """A reference distribution over bin edges (``len(edges) == len(freq) + 1``)."""

    edges: np.ndarray
    freq: np.ndarray

    @classmethod
    def from_metadata(cls, name: str, ref: Mapping[str, Sequence[float]]) -> Histogram:
        edges = np.asarray(ref["bins"], dtype=np.float64)
        freq = np.asarray(ref["freq"], dtype=np.float64)
        if edges.ndim != 1 or len(edges) != len(freq) + 1 or np.any(np.diff(edges) <= 0):
            raise ValueError(f"reference {name!r}: need increasing bins with len(bins) == len(freq) + 1")
        _check_distribution(name, freq)
        return cls(edges, freq)

    def counts(self, values: np.ndarray) -> np.ndarray:
        """Counts of ``values`` in these bins; values outside the range go to the outer bins."""
        clipped = np.clip(values, self.edges[0], self.edges[-1])
        return np.histogram(clipped, bins=self.edges)[0]


@dataclass(frozen=True)
class Reference:
    """What the training data looked like, in the shape the monitor compares against."""

    labels: tuple[str, ...]
    oov_share: Histogram
    confidence: Histogram
    class_share: np.ndarray  # aligned with ``labels``

    @classmethod
    def from_metadata(cls, labels: Sequence[str], reference: Mapping[str, object]) -> Reference:
        """Read ``metadata["reference"]`` as written at training time; a clear error names what is missing."""
        missing = [k for k in SIGNALS if k not in reference]
        if missing:
            raise ValueError(f"model metadata has no drift reference for {', '.join(missing)}")
        mix = reference["predicted_class"]
        if not isinstance(mix, Mapping):
            raise ValueError("reference 'predicted_class': need a mapping of label -> share")
        class_share = np.asarray([float(mix.get(label, 0.0)) for label in labels])
        _check_distribution("predicted_class (over the model's labels)", class_share)
        return cls(
            labels=tuple(labels),
            oov_share=Histogram.from_metadata("oov_share", reference["oov_share"]),  # type: ignore[arg-type]
            confidence=Histogram.from_metadata("confidence", reference["confidence"]),  # type: ignore[arg-type]
            class_share=class_share,
        )


class _Ring:
    """The last ``size`` values of a float stream, without reallocating per batch."""

    def __init__(self, size: int) -> None:
        self._buf = np.zeros(size, dtype=np.float64)
        self._next = 0
        self.count = 0

    def extend(self, values: np.ndarray) -> None:
        size = len(self._buf)
        values = values[-size:]
        end = self._next + len(values)
        if end <= size:
            self._buf[self._next : end] = values
        else:
            split = size - self._next
            self._buf[self._next :] = values[:split]
            self._buf[: end - size] = values[split:]
        self._next = end % size
        self.count = min(self.count + len(values), size)

    def values(self) -> np.ndarray:
        return self._buf[: self.count] if self.count < len(self._buf) else self._buf


class DriftMonitor:
    """PSI of the last ``window`` events against the training reference, one score per signal.

    Scores are None until ``min_events`` have been seen: PSI of a handful of events is noise (its
    expected value without any shift is about (bins - 1) / n).
    """

    def __init__(self, reference: Reference, window: int = 2_000, min_events: int = 200) -> None:
        if not 0 < min_events <= window:
            raise ValueError("need 0 < min_events <= window")
        self.reference = reference
        self.min_events = min_events
        self._oov = _Ring(window)
        self._conf = _Ring(window)
        self._top1 = _Ring(window)

    def add(self, oov_share: np.ndarray, probs: np.ndarray, top1: np.ndarray | None = None) -> None:
        """Add one micro-batch (``probs`` columns in ``reference.labels`` order) without scoring the window:
        scoring is the costly part, done by ``scores`` when asked.

        ``top1`` is ``probs.argmax(axis=1)`` when the caller already has it (``ScoredBatch.top1``).
        """
        if len(oov_share) != len(probs):
            raise ValueError("oov_share and probs must describe the same events")
        if len(probs):
            self._oov.extend(np.asarray(oov_share, dtype=np.float64))
            self._conf.extend(probs.max(axis=1).astype(np.float64))
            self._top1.extend((probs.argmax(axis=1) if top1 is None else top1).astype(np.float64))

    def scores(self) -> dict[str, float] | None:
        if self._oov.count < self.min_events:
            return None
        ref = self.reference
        classes = np.bincount(self._top1.values().astype(np.int64), minlength=len(ref.labels))
        return {
            "oov_share": psi(ref.oov_share.freq, ref.oov_share.counts(self._oov.values())),
            "predicted_class": psi(ref.class_share, classes),
            "confidence": psi(ref.confidence.freq, ref.confidence.counts(self._conf.values())),
        }


class DriftObserver:
    """Batch observer: feeds the monitor of the serving model; its scores are computed at scrape time.

    Adding a batch to the window is cheap (~11 µs per 64 events); scoring it is not (~220 µs), and
    Prometheus reads the gauges every few seconds, so the scores are computed when /metrics is
    scraped (``ScrapeTimeGauge``): nothing per batch, never stale. The scrape runs on the web
    server's thread, hence the lock around the window. A new model brings its own reference (and
    maybe another label order), so ``use`` starts a fresh window, which only takes batches scored by
    that model (the hot path may finish a batch of the old one after the swap); a model without a
    reference is served without drift scores rather than refused.
    """

    def __init__(self, metrics: Metrics, window: int, min_events: int) -> None:
        self._window = window
        self._min_events = min_events
        self._monitor: DriftMonitor | None = None
        self._version: str | None = None
        self._lock = threading.Lock()
        metrics.drift_score.use(self.scores)

    def use(self, predictor: Predictor) -> None:
        try:
            reference = Reference.from_metadata(predictor.labels, predictor.metadata.get("reference", {}))
        except (ValueError, KeyError, TypeError) as exc:
            log.warning("drift scores disabled for model %s: %s", predictor.version, exc)
            self._monitor = None
            return
        self._monitor = DriftMonitor(reference, self._window, self._min_events)
        self._version = predictor.version

    def scores(self) -> dict[str, float] | None:
        """The serving model's scores over the current window; None before ``min_events`` or without one."""
        monitor = self._monitor
        if monitor is None:
            return None
        with self._lock:
            return monitor.scores()

    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        monitor = self._monitor
        if monitor is not None and batch.model_version == self._version:
            with self._lock:
                monitor.add(batch.prediction.oov_share, batch.prediction.probs, batch.top1)  # type: ignore[attr-defined]
        return ()
