"""The bytes the worker publishes, held to a digest: a change to how outputs are built (for speed, or a
module moved) must publish exactly what it published before, byte for byte, in the same order.

A fake model (probabilities from a hash of the text) keeps the digest independent of the served model;
the inputs are resampled posts with their author tags, every message of the nasty corpus, ids sent
again (in the same batch, the next one, much later) with other texts, and odd Kafka timestamps, in
batches of many sizes, with an observer that annotates outcomes and adds records of its own.

The same inputs in the hot path's order under load (batches overlapped, scored in chunks, a model
swapped mid-stream) are held to a second digest, ``DIGEST_OVERLAPPED``.

A message added to tests/corpus/raw changes both digests: record the new ones (the failing assertions
print them) in a commit that changes nothing else, so that the digests move with their inputs only,
never with a change to how outputs are built.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import msgspec
import numpy as np
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, Message

from stream_tagger.tools.sources import dataset_events
from stream_tagger.worker.pipeline import OutputRecord, Pipeline, PreparedBatch, ScoredBatch, Topics
from tests.unit.test_pipeline import LABELS, FakePrediction

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "raw"
TOPICS = Topics(tagged="tagged", review="review", dead_letter="dlq")
NOW = datetime(2026, 1, 2, 3, 4, 5, 678_901, tzinfo=UTC)
DIGEST = "43ca18c6a79fc3cfa8da61a9edbefa6a59cbc381d87928c94c1fe9daa70c30a8"
DIGEST_OVERLAPPED = "97cd38b343fd21abdffb802e77d1f81c4a7693a393653ecf320f03f58ca8dde8"
SIZES = [1, 2, 64, 7, 200, 33, 128, 1, 300, 5]  # the batches ``published`` cuts the inputs into, in turn
SWAP_AT = 5  # the batch from which the overlapped run serves the second model


class HashPredictor:
    """Probabilities that depend on the text only: some posts clear a threshold, some do not."""

    version = "hash-1"
    labels = LABELS
    thresholds: ClassVar = dict(zip(LABELS, (0.5, 0.4, 0.45, 0.6), strict=True))

    def predict(self, texts: list[str]) -> FakePrediction:
        raw = np.array([[zlib.crc32(f"{j}{t}".encode()) % 1000 + 1 for j in range(4)] for t in texts], float)
        sharp = raw**3
        probs = (sharp / sharp.sum(axis=1, keepdims=True)).astype(np.float32)
        return FakePrediction(probs, np.zeros(len(texts), np.float32))


class SwappedPredictor(HashPredictor):
    """Another model: another version and other thresholds, the same probabilities."""

    version = "hash-2"
    thresholds: ClassVar = dict(zip(LABELS, (0.3, 0.6, 0.3, 0.5), strict=True))


class Annotator:
    """Like the duplicate flagger: annotates every 7th outcome and publishes a record for it."""

    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        out = []
        for i in range(0, len(batch.outcomes), 7):
            batch.outcomes[i].duplicate_of = f"first-{batch.events[i].id}"
            out.append(OutputRecord("side", batch.events[i].id.encode(), batch.events[i].title.encode()))
        return out


def inputs() -> list[Message]:
    values: list[tuple[bytes | None, bytes | None]] = []
    author_tags = [["Computer Vision"], ["mlops", "pytorch"], ["natural_language_processing"], ["other"]]
    for n, event in enumerate(dataset_events(700, id_prefix="p")):
        if n % 5 == 0:
            event = msgspec.structs.replace(event, author_tags=author_tags[n // 5 % 4])
        values.append((event.id.encode(), msgspec.json.encode(event)))
    for i, path in enumerate(sorted(CORPUS.iterdir())):
        values.insert(i * 11, (f"c{i}".encode(), path.read_bytes()))
    again = [
        msgspec.json.encode({"id": f"p-{n:07d}", "title": f"other {n}", "created_at": "2021-03-04T05:06:07Z"})
        for n in (3, 3, 150, 151, 699)
    ]
    values[5:5] = [(b"p", again[0])]
    values[160:160] = [(b"p", v) for v in again[1:]]
    values.append((None, None))
    stamps = [(TIMESTAMP_CREATE_TIME, 1_760_000_000_000 + (i // 3) * 7) for i in range(len(values))]
    stamps[9] = (TIMESTAMP_NOT_AVAILABLE, -1)
    stamps[10] = (TIMESTAMP_CREATE_TIME, -5)
    stamps[11] = (TIMESTAMP_CREATE_TIME, 300_000_000_000_000)
    return [
        Message(topic="raw", partition=i % 3, offset=i, key=key, value=value, timestamp=stamps[i])
        for i, (key, value) in enumerate(values)
    ]


def published(pipe: Pipeline, messages: list[Message], overlap: bool = False) -> bytes:
    """The digest of every record published for ``messages`` in batches of many sizes. ``overlap``: as the
    hot path runs under load, batch N+1 is prepared and scored (its chunks last to first) before batch N
    is finished, and a second model is served to the batches prepared from the ``SWAP_AT``-th on."""
    digest = hashlib.sha256()

    def emit(batch: PreparedBatch) -> None:
        for topic, key, value in pipe.finish(batch).records:
            for part in (topic.encode(), key or b"\x00", value):
                digest.update(len(part).to_bytes(4, "big") + part)

    start = 0
    waiting: PreparedBatch | None = None
    for n, size in enumerate(SIZES * 10):
        if start >= len(messages):
            break
        if overlap and n == SWAP_AT:
            pipe.serve(SwappedPredictor())
        batch = pipe.prepare(messages[start : start + size])
        for task in reversed(pipe.scoring_tasks(batch)) if overlap else pipe.scoring_tasks(batch):
            task()
        if waiting is not None:
            emit(waiting)
        waiting = batch if overlap else None
        if not overlap:
            emit(batch)
        start += size
    if waiting is not None:
        emit(waiting)
    return digest.hexdigest().encode()


def pipeline(score_chunks: int = 1) -> Pipeline:
    return Pipeline(
        HashPredictor(),
        TOPICS,
        max_event_bytes=20_000,
        top_k=2,
        dedup_window=500,
        observers=[Annotator()],
        clock=lambda: NOW,
        score_chunks=score_chunks,
    )


def test_published_bytes_match_the_recorded_digest() -> None:
    assert published(pipeline(), inputs()).decode() == DIGEST
    assert published(pipeline(score_chunks=3), inputs()).decode() == DIGEST


def test_overlapped_chunked_batches_and_a_model_swap_publish_the_recorded_bytes() -> None:
    """The hot path's order under load, held to its own digest: an id in a batch prepared before the
    previous one is finished is scored again (and so annotated by its new batch's observers), and a batch
    prepared before a swap is finished with the model that scored it. How a batch is cut into chunks,
    and in which order they run, changes nothing."""
    assert published(pipeline(score_chunks=3), inputs(), overlap=True).decode() == DIGEST_OVERLAPPED
    assert published(pipeline(), inputs(), overlap=True).decode() == DIGEST_OVERLAPPED


def test_the_overlapped_run_crosses_the_swap_with_the_batch_prepared_before_it_on_the_old_model() -> None:
    """What the digest above holds: the swap falls inside the run, and the batch prepared before it but
    finished after it is published under the model that scored it."""
    pipe = pipeline()
    messages = inputs()
    starts = np.cumsum([0, *SIZES])
    before = pipe.prepare(messages[starts[SWAP_AT - 1] : starts[SWAP_AT]])
    pipe.predict(before)
    pipe.serve(SwappedPredictor())
    after = pipe.prepare(messages[starts[SWAP_AT] : starts[SWAP_AT + 1]])
    pipe.predict(after)
    versions = [
        {
            msgspec.json.decode(value).get("model_version")
            for topic, _, value in pipe.finish(batch).records
            if topic == TOPICS.tagged
        }
        for batch in (before, after)
    ]
    assert versions == [{"hash-1"}, {"hash-2"}]
    assert starts[SWAP_AT] < len(messages)  # ``published`` reaches the swap
