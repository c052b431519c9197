"""One micro-batch of raw messages -> the output records to publish. No Kafka in here.

The steps, each in its own module: ``decode`` (bytes -> event or rejection), ``dedup`` (an id seen
recently keeps its outcome), the model's ``predict`` (scored here, a failing row bisected away),
``route`` (probabilities -> outcome), the observers, then ``encode`` (outcome -> records). Kept free of
I/O so that the whole decision path is unit tested with a fake predictor, and so that the Kafka loop
around it (``hot_path``) only moves bytes.

Extension point: ``BatchObserver``s see every freshly scored batch (events, prediction, outcomes)
before encoding. They may annotate outcomes (e.g. ``duplicate_of``) and return extra records to
publish (e.g. shadow disagreements); the hot path publishes those with the batch, so they share its
at-least-once guarantee. Metrics that need the model's view (confidence, rules baseline, drift,
shadow) are observers too, which keeps the core small.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime
from functools import partial
from typing import Protocol, TypeVar

import numpy as np

from stream_tagger.events import LATEST_TIMESTAMP_MS, RawContent
from stream_tagger.settings import APPROVED_TAGS
from stream_tagger.worker.decode import Rejection, decode_raw, internal_error
from stream_tagger.worker.dedup import RecentOutcomes
from stream_tagger.worker.encode import MessageLike, OutputEncoder, OutputRecord, Topics
from stream_tagger.worker.route import Outcome, Routes, concat_routes, route_columns, threshold_vector

log = logging.getLogger(__name__)


class PredictionLike(Protocol):
    probs: np.ndarray


class PredictorLike(Protocol):
    """The part of ``model.predictor.Predictor`` the pipeline uses (a fake one in unit tests)."""

    version: str
    labels: Sequence[str]
    thresholds: dict[str, float]

    def predict(self, texts: list[str]) -> PredictionLike: ...


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
    observer_errors: list[str] = field(default_factory=list)  # the class of each observer that raised
    inference_seconds: float = 0.0
    scored: int = 0


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

    ``decoded`` holds each valid event with its message, its Kafka time and where its outcome comes
    from: an (outcome, version) pair remembered from an earlier batch, the row this batch scores for it,
    or the row of an earlier part of the same batch (``Earlier``). An id in a batch prepared before this
    one and not yet finished (the full batch overlapped with it, or the last part of a batch in parts)
    is scored again here: the same text under the same model gets the same outcome, an edit made within
    those milliseconds its own.
    """

    serving: Serving
    now: datetime
    result: BatchResult
    decoded: list[tuple[MessageLike, RawContent, float, Known]]
    to_score: list[RawContent]
    texts: list[str]  # the model's input, one per event in ``to_score``
    rows: dict[str, int] = field(default_factory=dict)  # id -> its row in ``to_score``
    # Per chunk: the rows it scored with their prediction (one piece unless a row failed), and when its
    # scoring started and ended (time.perf_counter).
    parts: list[tuple[list[Piece], float, float] | None] = field(default_factory=list)
    # Rows of ``to_score`` on which scoring or routing raised: they become dead letters, not outcomes.
    failed: dict[int, Rejection] = field(default_factory=dict)
    # Per row of ``to_score``, once finished: its outcome, or the rejection of a row that failed.
    outcomes: list[Outcome | Rejection] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Earlier:
    """An id first seen in an earlier part of the same batch: it gets the outcome of that part's row
    (``Pipeline.prepare``'s ``ahead``), as a repeated id within one batch does."""

    part: PreparedBatch
    row: int


Known = tuple[Outcome, str] | int | Earlier
Piece = tuple[Sequence[int], PredictionLike]  # rows of ``to_score`` and their prediction, row by row
R = TypeVar("R")


def _join(parts: list[PredictionLike]) -> PredictionLike:
    """The chunks' predictions as one, field by field (each field holds one row per text): the result
    stays the predictor's own type for the observers."""
    if len(parts) == 1:
        return parts[0]
    joined = {f.name: np.concatenate([getattr(part, f.name) for part in parts]) for f in fields(parts[0])}
    return replace(parts[0], **joined)


def _take(prediction: PredictionLike, rows: np.ndarray) -> PredictionLike:
    """The prediction of some of its rows only, in the predictor's own type."""
    return replace(prediction, **{f.name: getattr(prediction, f.name)[rows] for f in fields(prediction)})


def isolate(
    run: Callable[[range], R], rows: range, failed: dict[int, Rejection], stage: str
) -> list[tuple[range, R]]:
    """``run(rows)``, or where it raises, ``run`` over each half, down to single rows: the result is the
    pieces that succeeded, in row order, and the row that still raises alone is ``failed`` with its
    exception. One bad message then costs its batch about 2 x log2(n) extra calls, never its outputs."""
    try:
        return [(rows, run(rows))]
    except Exception as exc:
        if len(rows) == 1:
            failed[rows[0]] = internal_error(stage, exc)
            log.warning("%s failed on one message (it goes to the dead letters): %r", stage, exc)
            return []
        half = len(rows) // 2
        return isolate(run, rows[:half], failed, stage) + isolate(run, rows[half:], failed, stage)


def check_probabilities(probs: np.ndarray, n: int, width: int) -> np.ndarray:
    """Rows of a model's answer that are not probabilities (NaN, infinite, outside [0, 1]): a model that
    loads but misbehaves must not publish a tag it did not mean. Raises when the answer's shape is not
    one row per text and one column per label."""
    if not isinstance(probs, np.ndarray) or probs.shape != (n, width):
        shape = getattr(probs, "shape", type(probs).__name__)
        raise ValueError(f"model returned probabilities of shape {shape}, expected ({n}, {width})")
    return ~((probs >= 0.0) & (probs <= 1.0)).all(axis=1)  # NaN compares False


class Pipeline:
    """Decode, dedup, score, route and encode a micro-batch.

    ``process`` does it in one call. The hot path calls the steps one by one instead, so that batch
    N+1 is scored in another thread while batch N is routed, encoded and published: scoring is
    featurisation and onnxruntime, which release the GIL, and ``prepare``/``finish`` are the Python
    half. Scoring comes as ``score_chunks`` independent tasks, so that a thread with nothing else to
    do can take some.
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
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        """``clock``: the time a batch is processed at (``processed_at``, ``received_at``)."""
        self._clock = clock or partial(datetime.now, UTC)
        self.max_event_bytes = max_event_bytes
        self.top_k = top_k
        self.threshold = threshold
        self.serve(predictor)
        self.observers = list(observers)
        self._seen = RecentOutcomes(dedup_window, len(APPROVED_TAGS))
        self._encoder = OutputEncoder(topics)
        self.score_chunks = score_chunks

    def serve(self, predictor: PredictorLike) -> None:
        """Score batches prepared from now on with ``predictor`` (hot reload)."""
        thresholds = threshold_vector(predictor.labels, predictor.thresholds, self.threshold)
        self.serving = Serving(predictor, thresholds)

    def process(self, messages: Sequence[MessageLike]) -> BatchResult:
        prepared = self.prepare(messages)
        self.predict(prepared)
        return self.finish(prepared)

    def prepare(
        self, messages: Sequence[MessageLike], ahead: dict[str, Earlier] | None = None
    ) -> PreparedBatch:
        """Decode every message; dead letters are ready, valid events wait for their outcome.

        A batch finished in parts (``hot_path``) passes the same ``ahead`` to each part's prepare: an id
        of an earlier part gets that part's outcome, and this part's ids are added to it. Parts must then
        be finished in order."""
        now = self._clock()
        now_s = now.timestamp()
        batch = PreparedBatch(self.serving, now, BatchResult(), [], [], [])
        rows, to_score, texts, decoded = batch.rows, batch.to_score, batch.texts, batch.decoded
        seen, max_bytes = self._seen, self.max_event_bytes
        for message in messages:
            kind, ms = message.timestamp()
            # The bounds of ``events.record_time``, in float seconds: a post whose record has no usable
            # timestamp is timed from when the worker received it rather than failed for its producer's clock.
            event_s = ms / 1000.0 if kind and 0 <= ms <= LATEST_TIMESTAMP_MS else now_s
            stage = "decoding"
            try:
                event = decode_raw(message.value(), max_bytes)
                # Rejection is final, so its type says it; isinstance goes through msgspec's metaclass
                # (~70 against ~20 ns a call).
                if type(event) is Rejection:
                    self._reject(batch, message, event, event_s)
                    continue
                stage = "de-duplicating"
                content_id = event.id
                known: Known | None = rows.get(content_id)
                if known is None and ahead:
                    known = ahead.get(content_id)
                if known is None:
                    known = seen.get(content_id)
                if known is None:
                    text = event.text
                    known = rows[content_id] = len(to_score)
                    to_score.append(event)
                    texts.append(text)
            except Exception as exc:
                self._reject(batch, message, internal_error(stage, exc), event_s)
                continue
            decoded.append((message, event, event_s, known))
        if ahead is not None:
            ahead.update(zip(rows, map(partial(Earlier, batch), rows.values()), strict=True))
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
        n = len(batch.texts)
        count = max(1, min(self.score_chunks, n // _MIN_CHUNK))
        size = max(1, -(-n // count))
        chunks = [range(start, min(start + size, n)) for start in range(0, n, size)]
        batch.parts = [None] * len(chunks)
        return [partial(self._score, batch, index, chunk) for index, chunk in enumerate(chunks)]

    @staticmethod
    def _score(batch: PreparedBatch, index: int, rows: range) -> None:
        """Score one chunk; a row on which the model raises or answers no probabilities is ``failed``,
        the other rows still get their prediction."""
        predictor, texts = batch.serving.predictor, batch.texts
        width = len(predictor.labels)

        def predict(part: range) -> PredictionLike:
            prediction = predictor.predict(texts[part.start : part.stop])
            check_probabilities(prediction.probs, len(part), width)  # the shape: raises, and is bisected
            return prediction

        started = time.perf_counter()
        pieces: list[Piece] = []
        for part, prediction in isolate(predict, rows, batch.failed, "scoring"):
            invalid = check_probabilities(prediction.probs, len(part), width)
            if invalid.any():  # those rows alone fail: the answer says which, no need to bisect
                for i in np.flatnonzero(invalid).tolist():
                    detail = f"model returned {prediction.probs[i].tolist()}, not probabilities"
                    batch.failed[part[i]] = Rejection("internal_error", f"ValueError while scoring: {detail}")
                valid = np.flatnonzero(~invalid)
                part, prediction = [part[i] for i in valid.tolist()], _take(prediction, valid)
            pieces.append((part, prediction))
        batch.parts[index] = (pieces, started, time.perf_counter())

    def finish(self, batch: PreparedBatch) -> BatchResult:
        """Route, let the observers see the batch, remember the outcomes and encode every output."""
        outcomes = batch.outcomes = self._route(batch) if batch.to_score else []
        version = batch.serving.predictor.version
        result, now = batch.result, batch.now
        outcome_records, extend = self._encoder.outcome, result.records.extend
        event_times = result.event_times
        times: dict[float, datetime] = {}  # events produced in the same millisecond share one
        for message, event, event_s, known in batch.decoded:
            if isinstance(known, int):
                outcome, decided_by = outcomes[known], version
            elif type(known) is Earlier:
                outcome, decided_by = known.part.outcomes[known.row], known.part.serving.predictor.version
            else:
                outcome, decided_by = known
            if type(outcome) is Rejection:
                self._reject(batch, message, outcome, event_s)
                continue
            try:
                event_time = times.get(event_s)
                if event_time is None:
                    event_time = times[event_s] = datetime.fromtimestamp(event_s, UTC)
                records = outcome_records(event, outcome, event_time, now, decided_by)
            except Exception as exc:
                self._reject(batch, message, internal_error("encoding", exc), event_s)
                continue
            extend(records)
            event_times[outcome.status].append(event_s)
        return result

    def _route(self, batch: PreparedBatch) -> list[Outcome | Rejection]:
        """Route the rows that were scored, let the observers see them, remember their outcomes. Per row
        of ``to_score``: its outcome, or the rejection of a row that failed scoring or routing."""
        predictor = batch.serving.predictor
        scored = [part for part in batch.parts if part is not None]
        assert scored and len(scored) == len(batch.parts), "finish() before every chunk was scored"
        pieces = [piece for part in scored for piece in part[0]]
        # Wall time from the first chunk's start to the last one's end: chunks run side by side.
        batch.result.inference_seconds = max(p[2] for p in scored) - min(p[1] for p in scored)
        batch.result.scored = len(batch.to_score)
        # The rows scored, in order: every row unless one failed (no per-row list in the common case).
        ok: Sequence[int] = range(len(batch.to_score))
        if batch.failed:
            ok = [row for rows, _prediction in pieces for row in rows]
        routed: list[tuple[range, Routes]] = []
        if ok:
            prediction = _join([prediction for _rows, prediction in pieces])
            author_tags = [batch.to_score[row].author_tags for row in ok]

            def route(part: range) -> Routes:
                return route_columns(
                    prediction.probs[part.start : part.stop],
                    predictor.labels,
                    batch.serving.thresholds,
                    author_tags[part.start : part.stop],
                    self.top_k,
                )

            routing_failed: dict[int, Rejection] = {}  # by position in ``ok``
            routed = isolate(route, range(len(ok)), routing_failed, "routing")
            if routing_failed:
                kept = np.fromiter((p for positions, _routes in routed for p in positions), np.intp)
                prediction = _take(prediction, kept)
                batch.failed.update({ok[p]: rejection for p, rejection in routing_failed.items()})
                ok = [ok[p] for p in kept.tolist()]
        if not routed:
            return [batch.failed[row] for row in range(len(batch.to_score))]
        routes = concat_routes([part for _positions, part in routed])
        outcomes = routes.outcomes()
        events = [batch.to_score[row] for row in ok] if batch.failed else batch.to_score
        texts = [batch.texts[row] for row in ok] if batch.failed else batch.texts
        view = ScoredBatch(events, texts, prediction, outcomes, predictor.labels, predictor.version)
        for observer in self.observers:
            try:
                records = list(observer.observe(view))  # all of an observer's records, or none
            except Exception:
                # An observer measures or annotates; the posts' outcomes stand without it.
                log.exception(
                    "batch observer %s failed; the batch is published without it", type(observer).__name__
                )
                batch.result.observer_errors.append(type(observer).__name__)
            else:
                batch.result.records.extend(records)
        duplicate_of = [outcome.duplicate_of for outcome in outcomes]
        self._seen.add([event.id for event in events], routes, duplicate_of, predictor.version)
        if batch.failed:
            merged: list[Outcome | Rejection] = [batch.failed.get(row) for row in range(len(batch.to_score))]
            for row, outcome in zip(ok, outcomes, strict=True):
                merged[row] = outcome
            return merged
        return list(outcomes)

    def _reject(
        self, batch: PreparedBatch, message: MessageLike, rejection: Rejection, event_s: float
    ) -> None:
        """``message`` goes to the dead letters with ``rejection``: its one outcome."""
        result = batch.result
        result.records.append(self._encoder.rejection(message, rejection, batch.now))
        result.event_times["dead_letter"].append(event_s)
        result.dead_letter_reasons[rejection.reason] = result.dead_letter_reasons.get(rejection.reason, 0) + 1
