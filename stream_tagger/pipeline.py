"""One micro-batch of raw messages -> the output records to publish. No Kafka in here.

Kept free of I/O so that the whole decision path (decode, dedup, predict, route, encode) is unit
tested with a fake predictor, and so that the Kafka loop around it (``hot_path``) only moves bytes.

Extension point: ``BatchObserver``s see every freshly scored batch (events, prediction, outcomes)
before encoding. They may annotate outcomes (e.g. ``duplicate_of``) and return extra records to
publish (e.g. shadow disagreements); the hot path publishes those with the batch, so they share its
at-least-once guarantee. Metrics that need the model's view (confidence, rules baseline, drift,
shadow) are observers too, which keeps the core small.

Dedup: outputs are a deterministic function of (text, model version), so a replay after a crash
republishes the same decision under the same key. On top of that the last ``dedup_window`` content
ids scored keep their outcome (``RecentOutcomes``); an id seen again inside the window (a producer
retry, an edit) gets the identical outcome, under the version of the model that decided it, without
being scored again, even if its text changed or the model was hot-reloaded in between.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from typing import NamedTuple, Protocol

import msgspec
import numpy as np

from stream_tagger.decoding import Rejection, dead_letter, decode_raw
from stream_tagger.events import RawContent, ReviewRequest, TaggedContent, TagScore
from stream_tagger.routing import Outcome, route_batch, threshold_vector
from stream_tagger.settings import APPROVED_TAGS


class MessageLike(Protocol):
    """What the pipeline reads from a message: confluent-kafka's ``Message`` satisfies it as is."""

    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...


class PredictionLike(Protocol):
    probs: np.ndarray


class PredictorLike(Protocol):
    """The part of ``model.runtime.Predictor`` the pipeline uses (a fake one in unit tests)."""

    version: str
    labels: Sequence[str]
    thresholds: dict[str, float]

    def predict(self, texts: list[str]) -> PredictionLike: ...


class OutputRecord(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Topics:
    tagged: str
    review: str
    dead_letter: str


@dataclass(slots=True)
class ScoredBatch:
    """What observers see: the events the model scored in this batch, aligned row by row."""

    events: list[RawContent]
    texts: list[str]
    prediction: PredictionLike
    outcomes: list[Outcome]
    labels: Sequence[str]
    model_version: str
    _top1: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def top1(self) -> np.ndarray:
        """Index of each event's top-1 label, computed once per batch: most observers need it."""
        if self._top1 is None:
            self._top1 = np.asarray(self.prediction.probs).argmax(axis=1)
        return self._top1


class BatchObserver(Protocol):
    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]: ...


@dataclass(slots=True)
class BatchResult:
    """Records to publish in input order, and what to count once the broker has acked them.

    ``event_times`` holds, per outcome, the Kafka timestamps (unix seconds) of the inputs with that
    outcome: their count is the outcome counter's increment, their age at ack is the end-to-end latency.
    """

    records: list[OutputRecord] = field(default_factory=list)
    event_times: dict[str, list[float]] = field(
        default_factory=lambda: {"tagged": [], "review": [], "dead_letter": []}
    )
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)
    inference_seconds: float = 0.0
    scored: int = 0


_TAG_INDEX = {tag: i for i, tag in enumerate(APPROVED_TAGS)}
_TAGGED = 0x10


def pack_outcome(outcome: Outcome, version: int) -> bytes:
    """An outcome and the model version that decided it in a few bytes: the version's index (in a
    list the caller keeps), status and score count, then per score the tag's index among the
    approved tags and the confidence in 1/10,000 (routing rounds it to 4 decimals, so ``n / 10_000``
    is the very same float), then ``duplicate_of`` in UTF-8. ~40 bytes in memory instead of ~400 for
    the Outcome with its list and TagScores, and nothing for the garbage collector to traverse."""
    head = [version, (_TAGGED if outcome.status == "tagged" else 0) | len(outcome.scores)]
    for score in outcome.scores:
        n = round(score.confidence * 10_000)
        head += (_TAG_INDEX[score.tag], n >> 8, n & 0xFF)
    packed = bytes(head)
    return packed + outcome.duplicate_of.encode() if outcome.duplicate_of else packed


def unpack_outcome(packed: bytes) -> tuple[Outcome, int]:
    count = packed[1] & 0x0F
    end = 2 + 3 * count
    scores = [
        TagScore(APPROVED_TAGS[packed[i]], (packed[i + 1] << 8 | packed[i + 2]) / 10_000)
        for i in range(2, end, 3)
    ]
    status = "tagged" if packed[1] & _TAGGED else "review"
    return Outcome(status, scores, packed[end:].decode() or None), packed[0]


class RecentOutcomes:
    """The outcomes of the last ``size`` content ids remembered with the model version that decided
    them, oldest forgotten first.

    A dict plus a ring of its keys rather than an OrderedDict: per id that is the id, ~40 bytes of
    packed outcome and one slot, ~15 MB for 100,000 ids where Outcome objects in an OrderedDict took
    ~42 MB of the worker's peak memory. The version is kept because a hot reload swaps the model
    while the window still holds the old one's decisions: a replay must name the model that decided.
    """

    def __init__(self, size: int) -> None:
        self._outcomes: dict[str, bytes] = {}
        self._ring: list[str | None] = [None] * size
        self._next = 0
        self._versions: list[str] = []  # index -> version, one byte per packed outcome

    def __len__(self) -> int:
        return len(self._outcomes)

    def get(self, content_id: str) -> tuple[Outcome, str] | None:
        packed = self._outcomes.get(content_id)
        if packed is None:
            return None
        outcome, version = unpack_outcome(packed)
        return outcome, self._versions[version]

    def add(self, content_ids: Iterable[str], outcomes: Iterable[Outcome], version: str) -> None:
        """Remember one batch's outcomes, all decided by the model ``version``."""
        if not self._ring:
            return
        index = self._version_index(version)
        packed, ring = self._outcomes, self._ring
        for content_id, outcome in zip(content_ids, outcomes, strict=True):
            if content_id not in packed:
                oldest = ring[self._next]
                if oldest is not None:
                    del packed[oldest]
                ring[self._next] = content_id
                self._next = (self._next + 1) % len(ring)
            packed[content_id] = pack_outcome(outcome, index)

    def _version_index(self, version: str) -> int:
        if version in self._versions:
            return self._versions.index(version)
        if len(self._versions) == 256:
            # One byte names the version: after 256 models in one process, forget every outcome
            # rather than let an index name two versions (the forgotten ids are scored again).
            self._outcomes.clear()
            self._ring = [None] * len(self._ring)
            self._next = 0
            self._versions.clear()
        self._versions.append(version)
        return len(self._versions) - 1


# Below this many texts per thread, thread hand-off costs more than the parallelism gains.
_MIN_CHUNK = 32


class Pipeline:
    def __init__(
        self,
        predictor: PredictorLike,
        topics: Topics,
        *,
        max_event_bytes: int,
        top_k: int,
        threshold: float | None = None,
        dedup_window: int = 0,
        observers: Sequence[BatchObserver] = (),
        inference_threads: int = 1,
    ) -> None:
        self.predictor = predictor
        self.topics = topics
        self.max_event_bytes = max_event_bytes
        self.top_k = top_k
        self.thresholds = threshold_vector(predictor.labels, predictor.thresholds, threshold)
        self.observers = list(observers)
        self._seen = RecentOutcomes(dedup_window)
        self._encoder = msgspec.json.Encoder()
        self._pool = ThreadPoolExecutor(inference_threads, "inference") if inference_threads > 1 else None
        self._threads = inference_threads

    def process(self, messages: Sequence[MessageLike]) -> BatchResult:
        result = BatchResult()
        now = datetime.now(UTC)
        now_s = now.timestamp()
        decoded: list[tuple[RawContent, float, tuple[Outcome, str] | int]] = []
        to_score: list[RawContent] = []
        index_of: dict[str, int] = {}
        for message in messages:
            kind, ms = message.timestamp()
            event_s = ms / 1000.0 if kind else now_s
            event = decode_raw(message.value(), self.max_event_bytes)
            if isinstance(event, Rejection):
                result.records.append(self._dead_letter(message, event, now))
                result.event_times["dead_letter"].append(event_s)
                result.dead_letter_reasons[event.reason] = result.dead_letter_reasons.get(event.reason, 0) + 1
                continue
            known: tuple[Outcome, str] | int | None = self._seen.get(event.id)
            if known is None:
                known = index_of.get(event.id)
            if known is None:
                known = index_of[event.id] = len(to_score)
                to_score.append(event)
            decoded.append((event, event_s, known))

        outcomes = self._score(to_score, result) if to_score else []
        live = self.predictor.version
        for event, event_s, known in decoded:
            outcome, version = (outcomes[known], live) if isinstance(known, int) else known
            result.records.extend(self._outputs(event, outcome, event_s, now, version))
            result.event_times[outcome.status].append(event_s)
        return result

    def _score(self, events: list[RawContent], result: BatchResult) -> list[Outcome]:
        texts = [event.text for event in events]
        started = time.perf_counter()
        prediction = self._predict(texts)
        result.inference_seconds = time.perf_counter() - started
        result.scored = len(events)
        outcomes = route_batch(
            prediction.probs,
            self.predictor.labels,
            self.thresholds,
            [event.author_tags for event in events],
            self.top_k,
        )
        scored = ScoredBatch(
            events, texts, prediction, outcomes, self.predictor.labels, self.predictor.version
        )
        for observer in self.observers:
            result.records.extend(observer.observe(scored))
        self._seen.add([event.id for event in events], outcomes, self.predictor.version)
        return outcomes

    def _predict(self, texts: list[str]) -> PredictionLike:
        """One batch through the model, split over ``inference_threads`` when that is worth it.

        onnxruntime and numpy release the GIL while they compute, so chunks of one batch run in
        parallel. The chunks' predictions are joined field by field (each field holds one row per
        text), which keeps the result the predictor's own type for the observers.
        """
        size = -(-len(texts) // self._threads)
        if self._pool is None or size < _MIN_CHUNK:
            return self.predictor.predict(texts)
        parts = list(
            self._pool.map(self.predictor.predict, [texts[i : i + size] for i in range(0, len(texts), size)])
        )
        joined = {f.name: np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(parts[0])}
        return replace(parts[0], **joined)

    def _outputs(
        self, event: RawContent, outcome: Outcome, event_s: float, now: datetime, version: str
    ) -> list[OutputRecord]:
        key = event.id.encode()
        event_time = datetime.fromtimestamp(event_s, UTC)
        encode = self._encoder.encode
        if outcome.status == "tagged":
            tagged = TaggedContent(
                id=event.id,
                status="tagged",
                tags=outcome.scores,
                author_tags=event.author_tags,
                model_version=version,
                event_time=event_time,
                processed_at=now,
                duplicate_of=outcome.duplicate_of,
            )
            return [OutputRecord(self.topics.tagged, key, encode(tagged))]
        review = ReviewRequest(
            id=event.id,
            title=event.title,
            description=event.description,
            author_tags=event.author_tags,
            candidates=outcome.scores,
            model_version=version,
            event_time=event_time,
            processed_at=now,
        )
        pending = TaggedContent(
            id=event.id,
            status="pending_review",
            tags=[],
            author_tags=event.author_tags,
            model_version=version,
            event_time=event_time,
            processed_at=now,
            duplicate_of=outcome.duplicate_of,
        )
        return [
            OutputRecord(self.topics.review, key, encode(review)),
            OutputRecord(self.topics.tagged, key, encode(pending)),
        ]

    def _dead_letter(self, message: MessageLike, rejection: Rejection, now: datetime) -> OutputRecord:
        key = message.key()
        letter = dead_letter(
            rejection, message.value(), key, message.topic() or "", message.partition() or 0,
            message.offset() or 0, now,
        )
        return OutputRecord(self.topics.dead_letter, key, self._encoder.encode(letter))
