"""Offline batch prediction: a file of posts in, one decision per post out, as the worker would decide.

Same model folder, same thresholds (``threshold_vector``: the model's per-class ones unless settings
override them), same top-k and author-tag rules (``route_batch``): the product owners' batch numbers
then describe what the stream shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import IO, Literal

import msgspec

from stream_tagger.events import RawContent, Tag, TagScore
from stream_tagger.model.predictor import Predictor
from stream_tagger.settings import Settings
from stream_tagger.tools.sources import RowError, read_posts
from stream_tagger.worker.route import route_batch, threshold_vector


class PostPrediction(msgspec.Struct, kw_only=True):
    """The decision for one post: suggested ``tags`` when ``tagged``, ``candidates`` for a human when
    ``review`` (no tag cleared its threshold)."""

    id: str
    status: Literal["tagged", "review"]
    tags: list[TagScore]
    candidates: list[TagScore]
    author_tags: list[Tag]
    model_version: str


@dataclass
class PredictSummary:
    tagged: int = 0
    review: int = 0
    bad_rows: list[RowError] = field(default_factory=list)


def predict_posts(
    predictor: Predictor, posts: Iterable[RawContent], settings: Settings
) -> Iterator[PostPrediction]:
    """Decisions in input order, scored in chunks of ``settings.batch_max_size`` posts."""
    thresholds = threshold_vector(predictor.labels, predictor.thresholds, settings.threshold)
    it = iter(posts)
    while chunk := list(islice(it, settings.batch_max_size)):
        probs = predictor.predict([post.text for post in chunk]).probs
        author_tags = [post.author_tags for post in chunk]
        outcomes = route_batch(probs, predictor.labels, thresholds, author_tags, settings.top_k)
        for post, outcome in zip(chunk, outcomes, strict=True):
            tagged = outcome.status == "tagged"
            yield PostPrediction(
                id=post.id,
                status=outcome.status,
                tags=outcome.scores if tagged else [],
                candidates=[] if tagged else outcome.scores,
                author_tags=post.author_tags,
                model_version=predictor.version,
            )


def predict_file(
    path: Path, out: IO[bytes], settings: Settings, predictor: Predictor | None = None
) -> PredictSummary:
    """Write one JSON line per valid post of a CSV/JSONL file to ``out``; bad rows go in the summary."""
    predictor = predictor or Predictor.load(settings.model_dir)
    summary = PredictSummary()

    def valid(items: Iterable[RawContent | RowError]) -> Iterator[RawContent]:
        for item in items:
            if isinstance(item, RowError):
                summary.bad_rows.append(item)
            else:
                yield item

    encoder = msgspec.json.Encoder()
    for prediction in predict_posts(predictor, valid(read_posts(path)), settings):
        if prediction.status == "tagged":
            summary.tagged += 1
        else:
            summary.review += 1
        out.write(encoder.encode(prediction) + b"\n")
    return summary


def predict_texts(predictor: Predictor, texts: Sequence[str], settings: Settings) -> list[PostPrediction]:
    """Decisions for bare texts (a notebook, a quick check): ids are their positions."""
    now = datetime.now(UTC)
    posts = [RawContent(id=str(i), title=text, created_at=now) for i, text in enumerate(texts)]
    return list(predict_posts(predictor, posts, settings))
