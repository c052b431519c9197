"""Shadow model: a candidate version sees every live event, its answers are compared, never published.

This is how a new model earns promotion on real traffic rather than on a frozen test set: the
agreement rate and the per-tag disagreements say where it would change what users see, and each
disagreement is published for someone to read. Models are compared by top-1 tag *name*, so two
versions with a different label order still compare correctly.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np

from stream_tagger.events import ShadowDisagreement


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
    live_labels: Sequence[str], live_probs: np.ndarray, live_version: str,
    shadow_labels: Sequence[str], shadow_probs: np.ndarray, shadow_version: str,
    now: datetime | None = None,
) -> ShadowReport:
    """Top-1 of the live model against top-1 of the shadow, event by event."""
    if not len(ids) == len(live_probs) == len(shadow_probs):
        raise ValueError("ids, live_probs and shadow_probs must describe the same events")
    report = ShadowReport()
    if not len(ids):
        return report
    observed_at = now or datetime.now(UTC)
    live_top = live_probs.argmax(axis=1)
    shadow_top = shadow_probs.argmax(axis=1)
    for i, content_id in enumerate(ids):
        live_tag, shadow_tag = live_labels[live_top[i]], shadow_labels[shadow_top[i]]
        if live_tag == shadow_tag:
            report.agree += 1
            continue
        report.pairs[(live_tag, shadow_tag)] += 1
        report.records.append(ShadowDisagreement(
            id=content_id,
            live_model_version=live_version,
            live_tag=live_tag,
            live_confidence=float(live_probs[i, live_top[i]]),
            shadow_model_version=shadow_version,
            shadow_tag=shadow_tag,
            shadow_confidence=float(shadow_probs[i, shadow_top[i]]),
            observed_at=observed_at,
        ))
    return report
