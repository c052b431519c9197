"""Shadow model: a candidate version sees every live event, its answers are compared, never published.

This is how a new model earns promotion on real traffic rather than on a frozen test set: the
agreement rate and the per-tag disagreements say where it would change what users see, and each
disagreement is published for someone to read. Models are compared by top-1 tag *name*, so two
versions with a different label order still compare correctly.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import msgspec
import numpy as np

from stream_tagger.events import ShadowDisagreement
from stream_tagger.metrics import Metrics
from stream_tagger.worker.pipeline import OutputRecord, PredictorLike, ScoredBatch, check_probabilities

log = logging.getLogger(__name__)


@dataclass
class ShadowReport:
    """One micro-batch compared: counts for the metrics, records for the disagreements topic."""

    agree: int = 0
    pairs: Counter[tuple[str, str]] = field(default_factory=Counter)  # (live_tag, shadow_tag) -> n
    records: list[ShadowDisagreement] = field(default_factory=list)

    @property
    def disagree(self) -> int:
        return len(self.records)


def compare(
    ids: Sequence[str],
    live_labels: Sequence[str],
    live_probs: np.ndarray,
    live_version: str,
    shadow_labels: Sequence[str],
    shadow_probs: np.ndarray,
    shadow_version: str,
    now: datetime | None = None,
    live_top: np.ndarray | None = None,
) -> ShadowReport:
    """Top-1 of the live model against top-1 of the shadow, event by event.

    ``live_top`` is ``live_probs.argmax(axis=1)`` when the caller already has it (``ScoredBatch.top1``).
    """
    if not len(ids) == len(live_probs) == len(shadow_probs):
        raise ValueError("ids, live_probs and shadow_probs must describe the same events")
    report = ShadowReport()
    if not len(ids):
        return report
    observed_at = now or datetime.now(UTC)
    live_top = live_probs.argmax(axis=1) if live_top is None else live_top
    shadow_top = shadow_probs.argmax(axis=1)
    for i, content_id in enumerate(ids):
        live_tag, shadow_tag = live_labels[live_top[i]], shadow_labels[shadow_top[i]]
        if live_tag == shadow_tag:
            report.agree += 1
            continue
        report.pairs[(live_tag, shadow_tag)] += 1
        report.records.append(
            ShadowDisagreement(
                id=content_id,
                live_model_version=live_version,
                live_tag=live_tag,
                live_confidence=float(live_probs[i, live_top[i]]),
                shadow_model_version=shadow_version,
                shadow_tag=shadow_tag,
                shadow_confidence=float(shadow_probs[i, shadow_top[i]]),
                observed_at=observed_at,
            )
        )
    return report


class ShadowObserver:
    """Batch observer: runs the shadow on the batch the live model just scored, in the same thread.

    Same thread on purpose: the shadow then costs latency rather than correctness (its disagreements are
    published with the batch, under the batch's at-least-once guarantee). When the shadow is the very
    version that serves (right after a promotion) there is nothing to compare and it is skipped.
    A shadow that raises or answers no probabilities turns itself off (a log line, ``shadow_failures``,
    ``on_disabled``) until another version is pointed to: a candidate must never cost live outputs.
    """

    def __init__(
        self,
        shadow: PredictorLike | None,
        topic: str,
        metrics: Metrics,
        on_disabled: Callable[[], None] = lambda: None,
    ) -> None:
        self.shadow = shadow
        self.topic = topic
        self._metrics = metrics
        self._on_disabled = on_disabled
        self._encode = msgspec.json.Encoder().encode

    def use(self, shadow: PredictorLike | None) -> None:
        """Swap the shadow model (hot reload); None stops shadowing."""
        self._retire(shadow)
        self.shadow = shadow

    def _retire(self, successor: PredictorLike | None) -> None:
        """Drop the inference series of the shadow being replaced (observers run in the hot-path
        thread, as swaps do, so it is never observed again)."""
        current = self.shadow
        if current is not None and (successor is None or successor.version != current.version):
            self._metrics.retire_model(current.version, "shadow")

    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        shadow = self.shadow
        if shadow is None or shadow.version == batch.model_version:
            return ()
        started = time.perf_counter()
        m = self._metrics
        try:
            shadow_probs = shadow.predict(batch.texts).probs
            if check_probabilities(shadow_probs, len(batch.texts), len(shadow.labels)).any():
                raise ValueError("answered rows that are not probabilities")
        except Exception as exc:
            log.error(
                "shadow model %s failed (%r); shadowing is off until another version is pointed to",
                shadow.version,
                exc,
            )
            m.shadow_failures.labels(shadow.version).inc()
            self._retire(None)
            self.shadow = None
            self._on_disabled()
            return ()
        m.inference_seconds.labels(shadow.version, "shadow").observe(time.perf_counter() - started)
        report = compare(
            [e.id for e in batch.events],
            batch.labels,
            batch.prediction.probs,
            batch.model_version,
            shadow.labels,
            shadow_probs,
            shadow.version,
            live_top=batch.top1,
        )
        m.shadow_comparisons.labels("agree").inc(report.agree)
        m.shadow_comparisons.labels("disagree").inc(report.disagree)
        for (live_tag, shadow_tag), n in report.pairs.items():
            m.shadow_disagreements.labels(live_tag, shadow_tag).inc(n)
        return [OutputRecord(self.topic, r.id.encode(), self._encode(r)) for r in report.records]
