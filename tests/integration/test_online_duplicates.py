"""Reposts on the embedded broker: the tagged event of a repost names the first post's id."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from stream_tagger.events import RawContent, TaggedContent
from stream_tagger.settings import Settings
from stream_tagger.tools.produce import encode
from tests.integration.helpers import WorkerProcess, drain, produce

pytestmark = pytest.mark.integration


def test_repost_is_flagged_with_the_first_id(settings: Settings, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    posts = [
        RawContent(
            id="first",
            title="YOLO vs RCNN on real-world videos",
            description="Which is faster?",
            created_at=now,
        ),
        RawContent(
            id="other", title="BERT for legal documents", description="Fine-tuning tips.", created_at=now
        ),
        RawContent(
            id="repost",
            title="yolo VS rcnn   on real world videos!",
            description="which is faster",
            created_at=now,
        ),
    ]
    # One partition so that "first" is read before "repost" (order across partitions is not defined).
    settings = settings.model_copy(update={"partitions": 1})
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        produce(settings, [(p.id.encode(), encode(p)) for p in posts])
        tagged = drain(settings, settings.topic_tagged, lambda seen: len(seen) >= len(posts))
        flagged = worker.metric("stream_tagger_duplicates_total")
        assert worker.terminate() == 0
    duplicate_of = {
        k.decode(): msgspec.json.decode(v[0], type=TaggedContent).duplicate_of for k, v in tagged.items()
    }
    assert duplicate_of == {"first": None, "other": None, "repost": "first"}
    assert flagged == 1
