"""How good are the tags users actually see? Rolling precision and recall from people's corrections.

Each feedback item pairs what the worker *showed* (its suggested tags; nothing while a post waits for
review) with what a person says is right. The author's own tags are taken out of both sides: the model
is never allowed to suggest them, so they say nothing about it. Counts are kept over the last
``window`` items so the figures follow a change of model or of traffic within hours, not months.
Precision and recall are micro-averaged for ``all``; a tag with no predictions (or no true labels) in
the window has no precision (recall) rather than a made-up 0 or 1.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from stream_tagger.metrics import Metrics
from stream_tagger.worker.pipeline import OutputRecord, ScoredBatch
from stream_tagger.worker.route import normalise_tag

ALL = "all"


@dataclass(frozen=True)
class Judged:
    """One prediction and its correction, reduced to sets of tags."""

    predicted: frozenset[str]
    truth: frozenset[str]

    @classmethod
    def of(
        cls, suggested: Iterable[str], corrected: Iterable[str], author_tags: Iterable[str] = ()
    ) -> Judged:
        given = frozenset(map(normalise_tag, author_tags))
        return cls(frozenset(suggested) - given, frozenset(map(normalise_tag, corrected)) - given)


class OnlineEvaluator:
    """True/false positives and false negatives per tag over the last ``window`` judged predictions."""

    def __init__(self, tags: Sequence[str], window: int = 1_000) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self.tags = tuple(tags)
        self._items: deque[Judged] = deque()
        self._window = window
        self._tp: Counter[str] = Counter()
        self._fp: Counter[str] = Counter()
        self._fn: Counter[str] = Counter()

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Judged) -> None:
        self._items.append(item)
        self._count(item, +1)
        if len(self._items) > self._window:
            self._count(self._items.popleft(), -1)

    def _count(self, item: Judged, sign: int) -> None:
        for tag in item.predicted & item.truth:
            self._tp[tag] += sign
        for tag in item.predicted - item.truth:
            self._fp[tag] += sign
        for tag in item.truth - item.predicted:
            self._fn[tag] += sign

    def precision(self, tag: str = ALL) -> float | None:
        tp, fp = self._sum(self._tp, tag), self._sum(self._fp, tag)
        return tp / (tp + fp) if tp + fp else None

    def recall(self, tag: str = ALL) -> float | None:
        tp, fn = self._sum(self._tp, tag), self._sum(self._fn, tag)
        return tp / (tp + fn) if tp + fn else None

    def _sum(self, counts: Counter[str], tag: str) -> int:
        return sum(counts[t] for t in self.tags) if tag == ALL else counts[tag]

    def snapshot(self) -> dict[str, tuple[float | None, float | None]]:
        """(precision, recall) for every tag and ``all``: what the gauges show."""
        return {tag: (self.precision(tag), self.recall(tag)) for tag in (*self.tags, ALL)}


def author_agreement(top1: str, author_tags: Iterable[str]) -> bool | None:
    """Does the model's top-1 match one of the author's tags? None when the author gave none."""
    given = {normalise_tag(tag) for tag in author_tags}
    return (normalise_tag(top1) in given) if given else None


class AuthorAgreementObserver:
    """Batch observer: the author's own tags as a free, immediate (if noisy) label for every post."""

    def __init__(self, metrics: Metrics) -> None:
        self._agree = metrics.author_tag_agreement.labels("agree")
        self._disagree = metrics.author_tag_agreement.labels("disagree")

    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        top1 = batch.top1.tolist()
        # Posts without author tags count for nothing: skipped here, not normalised to an empty set.
        results = [
            author_agreement(batch.labels[j], event.author_tags)
            for j, event in zip(top1, batch.events, strict=True)
            if event.author_tags
        ]
        self._agree.inc(results.count(True))
        self._disagree.inc(results.count(False))
        return ()
