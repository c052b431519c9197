"""Batch prediction uses the served model with the worker's routing rules, and reports bad rows."""

from __future__ import annotations

import io
from pathlib import Path

import msgspec
import pytest

from stream_tagger.model.predictor import Predictor
from stream_tagger.settings import APPROVED_TAGS, Settings
from stream_tagger.tools.predict import PostPrediction, predict_file, predict_texts
from stream_tagger.tools.sources import BUNDLED_DATASET, valid_posts
from stream_tagger.worker.route import route_batch, threshold_vector
from tests.conftest import MODELS


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load(MODELS / "current")


def test_predict_file_matches_route_batch_on_the_whole_dataset(predictor: Predictor) -> None:
    settings = Settings(batch_max_size=100)  # several chunks: chunking must not change a decision
    out = io.BytesIO()
    summary = predict_file(BUNDLED_DATASET, out, settings, predictor)
    lines = [msgspec.json.decode(line, type=PostPrediction) for line in out.getvalue().splitlines()]
    posts = valid_posts(BUNDLED_DATASET)
    assert [p.id for p in lines] == [p.id for p in posts]
    assert summary.tagged + summary.review == len(posts)
    probs = predictor.predict([p.text for p in posts]).probs
    thresholds = threshold_vector(predictor.labels, predictor.thresholds)
    author_tags = [p.author_tags for p in posts]
    expected = route_batch(probs, predictor.labels, thresholds, author_tags, settings.top_k)
    assert [(p.status, p.tags or p.candidates) for p in lines] == [(o.status, o.scores) for o in expected]
    assert {s.tag for p in lines for s in p.tags + p.candidates} <= set(APPROVED_TAGS)


def test_threshold_override_sends_everything_to_review(predictor: Predictor) -> None:
    [prediction] = predict_texts(predictor, ["YOLO object detection on video"], Settings(threshold=1.0))
    assert prediction.status == "review"
    assert prediction.tags == []
    assert len(prediction.candidates) == 2
    assert prediction.candidates[0].confidence >= prediction.candidates[1].confidence


def test_bad_rows_are_reported_and_skipped(predictor: Predictor, tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text(
        "id,created_on,title,description\n1,2020-01-01 00:00:00,Image segmentation,\n"
        "2,bad,Oops,\n3,2020-01-01 00:00:00,Tokenizers for transformers,\n"
    )
    out = io.BytesIO()
    summary = predict_file(path, out, Settings(), predictor)
    assert [str(row).split(": ")[0] for row in summary.bad_rows] == [f"{path}:3"]
    assert [msgspec.json.decode(line)["id"] for line in out.getvalue().splitlines()] == ["1", "3"]
    assert summary.tagged + summary.review == 2
