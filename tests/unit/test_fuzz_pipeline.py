"""Any bytes anyone can produce: bytes -> decode -> pipeline (served model) -> outputs, never an exception.

The property: for every batch, every message has exactly one outcome (a status on the tagged topic, or
a dead letter pointing at its offset), every output decodes as its event type, and nothing escapes.
Inputs are the committed corpus of nasty messages (``tests/corpus/raw``) and what hypothesis makes
with a fixed budget: raw bytes, JSON of any shape, and valid posts with any text, keys and timestamps.
"""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE, Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_tagger.events import DeadLetter, ReviewRequest, TaggedContent
from stream_tagger.model.predictor import Predictor
from stream_tagger.worker.pipeline import Pipeline, Topics
from tests.conftest import MODELS

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "raw"
TOPICS = Topics(tagged="tagged", review="review", dead_letter="dlq")
MAX_EVENT_BYTES = 100_000
BUDGET = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load(MODELS / "current")


def kafka_message(
    value: bytes | None,
    offset: int,
    key: bytes | None = b"k",
    timestamp: tuple[int, int] = (TIMESTAMP_CREATE_TIME, 1_700_000_000_000),
) -> Message:
    return Message(topic="raw", partition=0, offset=offset, key=key, value=value, timestamp=timestamp)


def check_one_outcome_each(predictor: Predictor, messages: list[Message]) -> None:
    pipe = Pipeline(
        predictor, TOPICS, max_event_bytes=MAX_EVENT_BYTES, top_k=2, dedup_window=64, score_chunks=2
    )
    result = pipe.process(messages)

    def on(topic: str, kind: type) -> list:
        return [msgspec.json.decode(r.value, type=kind) for r in result.records if r.topic == topic]

    status, letters, reviews = on("tagged", TaggedContent), on("dlq", DeadLetter), on("review", ReviewRequest)
    assert len(status) + len(letters) == len(messages), (len(status), len(letters), len(messages))
    assert len(reviews) == sum(s.status == "pending_review" for s in status)
    assert sorted(letter.offset for letter in letters) == sorted({letter.offset for letter in letters})
    assert sum(map(len, result.event_times.values())) == len(messages)
    assert "internal_error" not in result.dead_letter_reasons, [letter.detail for letter in letters]


def corpus() -> list[Path]:
    return sorted(CORPUS.iterdir())


def test_the_corpus_is_there() -> None:
    assert len(corpus()) >= 30


@pytest.mark.parametrize("path", corpus(), ids=lambda p: p.name)
def test_each_nasty_message_has_one_outcome(predictor: Predictor, path: Path) -> None:
    check_one_outcome_each(predictor, [kafka_message(path.read_bytes(), 0)])


def test_the_whole_corpus_in_one_batch_among_good_posts(predictor: Predictor) -> None:
    good = json.dumps(
        {"id": "good", "title": "Object detection with YOLO", "created_at": "2024-01-01T00:00:00Z"}
    ).encode()
    values = [good, *(path.read_bytes() for path in corpus()), good]
    check_one_outcome_each(predictor, [kafka_message(value, i) for i, value in enumerate(values)])


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
posts = st.fixed_dictionaries(
    {
        "id": st.text(min_size=1, max_size=130),
        "title": st.text(max_size=300),
        "created_at": st.datetimes().map(lambda d: d.isoformat() + "Z"),
    },
    optional={
        "description": st.text(max_size=3_000),
        "author_tags": st.lists(st.text(min_size=1, max_size=70), max_size=34),
        "schema_version": st.integers(min_value=0, max_value=3),
        "source": st.none() | st.text(max_size=20),
    },
)
values = st.one_of(
    st.binary(max_size=2_000),
    json_values.map(lambda v: json.dumps(v).encode()),
    posts.map(lambda p: json.dumps(p).encode()),
    posts.map(lambda p: json.dumps(p, ensure_ascii=False).encode()),
    st.none(),
)
timestamps = st.one_of(
    st.tuples(st.just(TIMESTAMP_CREATE_TIME), st.integers(min_value=-(2**63), max_value=2**63 - 1)),
    st.just((TIMESTAMP_NOT_AVAILABLE, -1)),
)
keys = st.none() | st.binary(max_size=200)
messages = st.lists(st.tuples(values, keys, timestamps), min_size=1, max_size=40)


@BUDGET
@given(batch=messages)
def test_any_batch_of_any_bytes_has_one_outcome_per_message(predictor: Predictor, batch: list) -> None:
    check_one_outcome_each(
        predictor, [kafka_message(value, i, key, ts) for i, (value, key, ts) in enumerate(batch)]
    )
