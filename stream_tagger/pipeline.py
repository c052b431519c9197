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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import partial
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


# Below this many texts per chunk, the model's per-call cost outweighs sharing the work.
_MIN_CHUNK = 32


@dataclass(frozen=True, slots=True)
class Serving:
    """The model a batch is scored by and the thresholds it is routed with, swapped as one: a batch
    prepared before a hot reload is finished with the model that scored it."""

    predictor: PredictorLike
    thresholds: np.ndarray


@dataclass(slots=True)
class PreparedBatch:
    """A micro-batch between its three steps: decoded (``prepare``), scored (``predict``, or the
    chunks of ``scoring_tasks``, which may run in other threads), then routed and encoded (``finish``).

    ``decoded`` holds each valid event with its Kafka time and where its outcome comes from: an
    (outcome, version) pair remembered from an earlier batch, the row this batch scores for it, or
    an earlier batch still unfinished when this one was prepared, which scores that id.
    """

    serving: Serving
    seq: int  # finish() checks batches come back in the order prepare() made them
    now: datetime
    result: BatchResult
    decoded: list[tuple[RawContent, float, tuple[Outcome, str] | int | PreparedBatch]]
    to_score: list[RawContent]
    texts: list[str]  # the model's input, one per event in ``to_score``
    # Per chunk: its prediction and when its scoring started and ended (time.perf_counter).
    parts: list[tuple[PredictionLike, float, float] | None] = field(default_factory=list)
    decided: dict[str, tuple[Outcome, str]] = field(default_factory=dict)


def _join(parts: list[PredictionLike]) -> PredictionLike:
    """The chunks' predictions as one, field by field (each field holds one row per text): the result
    stays the predictor's own type for the observers."""
    if len(parts) == 1:
        return parts[0]
    joined = {f.name: np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(parts[0])}
    return replace(parts[0], **joined)


class Pipeline:
    """Decode, dedup, score, route and encode a micro-batch.

    ``process`` does it in one call. The hot path calls the steps one by one instead, so that batch
    N+1 is scored in another thread while batch N is routed, encoded and published: scoring is
    featurisation and onnxruntime, which release the GIL, and ``prepare``/``finish`` are the Python
    half. Scoring comes as ``score_chunks`` independent tasks, so that a thread with nothing else to
    do can take some. Batches must be finished in the order they were prepared.
    """

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
        score_chunks: int = 1,
    ) -> None:
        self.topics = topics
        self.max_event_bytes = max_event_bytes
        self.top_k = top_k
        self.threshold = threshold
        self.serve(predictor)
        self.observers = list(observers)
        self._seen = RecentOutcomes(dedup_window)
        self._unfinished: dict[str, PreparedBatch] = {}  # id -> the prepared, unfinished batch scoring it
        self._prepared = self._finished = 0  # sequence numbers of batches
        self._encoder = msgspec.json.Encoder()
        self.score_chunks = score_chunks

    def serve(self, predictor: PredictorLike) -> None:
        """Score batches prepared from now on with ``predictor`` (hot reload)."""
        thresholds = threshold_vector(predictor.labels, predictor.thresholds, self.threshold)
        self.serving = Serving(predictor, thresholds)

    def process(self, messages: Sequence[MessageLike]) -> BatchResult:
        prepared = self.prepare(messages)
        self.predict(prepared)
        return self.finish(prepared)

    def prepare(self, messages: Sequence[MessageLike]) -> PreparedBatch:
        """Decode every message; dead letters are ready, valid events wait for their outcome."""
        now = datetime.now(UTC)
        now_s = now.timestamp()
        batch = PreparedBatch(self.serving, self._prepared, now, BatchResult(), [], [], [])
        self._prepared += 1
        result, index_of = batch.result, {}
        for message in messages:
            kind, ms = message.timestamp()
            event_s = ms / 1000.0 if kind else now_s
            event = decode_raw(message.value(), self.max_event_bytes)
            if isinstance(event, Rejection):
                result.records.append(self._dead_letter(message, event, now))
                result.event_times["dead_letter"].append(event_s)
                result.dead_letter_reasons[event.reason] = result.dead_letter_reasons.get(event.reason, 0) + 1
                continue
            known: tuple[Outcome, str] | int | PreparedBatch | None = self._seen.get(event.id)
            if known is None:
                known = index_of.get(event.id)
            if known is None:
                known = self._unfinished.get(event.id)
            if known is None:
                known = index_of[event.id] = len(batch.to_score)
                batch.to_score.append(event)
                batch.texts.append(event.text)
                self._unfinished[event.id] = batch
            batch.decoded.append((event, event_s, known))
        return batch

    def predict(self, batch: PreparedBatch) -> None:
        """Score the events ``prepare`` left to score, every chunk in this thread."""
        for task in self.scoring_tasks(batch):
            task()

    def scoring_tasks(self, batch: PreparedBatch) -> list[Callable[[], None]]:
        """The scoring of ``batch`` as up to ``score_chunks`` tasks of about equal size, not split below
        ``_MIN_CHUNK`` texts per chunk.

        Each task writes only its own slot of ``batch``, so they may run in any threads, in any
        order, at the same time; ``finish`` joins them in input order."""
        texts = batch.texts
        count = max(1, min(self.score_chunks, len(texts) // _MIN_CHUNK))
        size = max(1, -(-len(texts) // count))
        chunks = [texts[start : start + size] for start in range(0, len(texts), size)]
        batch.parts = [None] * len(chunks)
        return [partial(self._score, batch, index, chunk) for index, chunk in enumerate(chunks)]

    @staticmethod
    def _score(batch: PreparedBatch, index: int, texts: list[str]) -> None:
        started = time.perf_counter()
        prediction = batch.serving.predictor.predict(texts)
        batch.parts[index] = (prediction, started, time.perf_counter())

    def finish(self, batch: PreparedBatch) -> BatchResult:
        """Route, let the observers see the batch, remember the outcomes and encode every output."""
        if batch.seq != self._finished:
            raise RuntimeError(f"batch {batch.seq} finished before batch {self._finished}")
        self._finished += 1
        outcomes = self._route(batch) if batch.to_score else []
        version = batch.serving.predictor.version
        result, now = batch.result, batch.now
        times: dict[float, datetime] = {}  # events produced in the same millisecond share one
        for event, event_s, known in batch.decoded:
            if isinstance(known, int):
                outcome, decided_by = outcomes[known], version
            elif isinstance(known, PreparedBatch):
                outcome, decided_by = known.decided[event.id]
            else:
                outcome, decided_by = known
            event_time = times.get(event_s)
            if event_time is None:
                event_time = times[event_s] = datetime.fromtimestamp(event_s, UTC)
            result.records.extend(self._outputs(event, outcome, event_time, now, decided_by))
            result.event_times[outcome.status].append(event_s)
        batch.decoded = []  # drops the references to earlier batches (``decided`` stays for later ones)
        return result

    def discard(self, batch: PreparedBatch) -> None:
        """Forget ``batch`` and every earlier batch not finished yet (the loop failed): their inputs
        are re-read after a restart, and later batches must not wait for their outcomes."""
        for content_id, unfinished in list(self._unfinished.items()):
            if unfinished.seq <= batch.seq:
                del self._unfinished[content_id]
        self._finished = max(self._finished, batch.seq + 1)

    def _route(self, batch: PreparedBatch) -> list[Outcome]:
        predictor, events = batch.serving.predictor, batch.to_score
        scored = [part for part in batch.parts if part is not None]
        assert scored and len(scored) == len(batch.parts), "finish() before every chunk was scored"
        prediction = _join([part for part, _started, _ended in scored])
        # Wall time from the first chunk's start to the last one's end: chunks run side by side.
        batch.result.inference_seconds = max(p[2] for p in scored) - min(p[1] for p in scored)
        batch.result.scored = len(events)
        outcomes = route_batch(
            prediction.probs,
            predictor.labels,
            batch.serving.thresholds,
            [event.author_tags for event in events],
            self.top_k,
        )
        scored = ScoredBatch(events, batch.texts, prediction, outcomes, predictor.labels, predictor.version)
        for observer in self.observers:
            batch.result.records.extend(observer.observe(scored))
        ids = [event.id for event in events]
        self._seen.add(ids, outcomes, predictor.version)
        for content_id, outcome in zip(ids, outcomes, strict=True):
            batch.decided[content_id] = (outcome, predictor.version)
            if self._unfinished.get(content_id) is batch:
                del self._unfinished[content_id]
        return outcomes

    def _outputs(
        self, event: RawContent, outcome: Outcome, event_time: datetime, now: datetime, version: str
    ) -> list[OutputRecord]:
        key = event.id.encode()
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
