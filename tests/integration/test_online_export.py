"""export-feedback on the embedded broker: corrections become rows the trainer accepts."""

from __future__ import annotations

import csv
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import Producer
from typer.testing import CliRunner

from stream_tagger.cli import app
from stream_tagger.events import Feedback
from stream_tagger.model.dataset import load_dataset
from stream_tagger.online.feedback_export import export_feedback
from stream_tagger.settings import Settings
from stream_tagger.tools.produce import encode
from stream_tagger.tools.sources import dataset_events
from tests.conftest import DATASET
from tests.integration.helpers import produce

pytestmark = pytest.mark.integration


def test_export_writes_the_latest_approved_correction_with_the_posts_text(
    settings: Settings, tmp_path: Path
) -> None:
    posts = dataset_events(6, id_prefix="ex")
    produce(settings, [(p.id.encode(), encode(p)) for p in posts])
    t0 = datetime(2026, 3, 1, tzinfo=UTC)

    def fb(cid: str, tags: list[str], minutes: int) -> tuple[bytes, bytes]:
        event = Feedback(id=cid, tags=tags, source="user", created_at=t0 + timedelta(minutes=minutes))
        return cid.encode(), msgspec.json.encode(event)

    produce(
        settings,
        [
            fb(posts[0].id, ["mlops"], 2),
            fb(posts[0].id, ["other"], 1),  # later one wins, whatever the order
            fb(posts[1].id, ["Natural Language Processing", "mlops"], 1),  # first approved tag, normalised
            fb(posts[2].id, ["robotics"], 1),  # nothing the model can learn
            fb("never-posted", ["mlops"], 1),  # no text to train on
            (b"junk", b"not json"),
            # Claims a time far ahead: it counts as made when its record was written ...
            fb(posts[3].id, ["mlops"], 60 * 24 * 365 * 70),
        ],
        topic=settings.topic_feedback,
    )
    # ... so a correction made after that wins.
    later = Feedback(id=posts[3].id, tags=["other"], source="reviewer", created_at=datetime.now(UTC))
    produce(settings, [(later.id.encode(), msgspec.json.encode(later))], topic=settings.topic_feedback)

    out = tmp_path / "feedback.csv"
    report = export_feedback(settings, out)

    assert (report.written, report.without_text, report.without_approved_tag) == (3, 1, 1)
    with out.open(newline="", encoding="utf-8") as f:
        rows = {row["id"]: row for row in csv.DictReader(f)}
    assert {cid: row["tag"] for cid, row in rows.items()} == {
        posts[0].id: "mlops",
        posts[1].id: "natural-language-processing",
        posts[3].id: "other",
    }
    assert rows[posts[1].id]["title"] == posts[1].title
    assert rows[posts[1].id]["description"] == posts[1].description
    data = load_dataset([DATASET, out], min_per_class=0)  # what `train --data A --data B` reads
    assert set(rows) <= set(data.ids)


def test_export_reads_a_topic_written_in_transactions_to_its_end(settings: Settings, tmp_path: Path) -> None:
    # A transactional producer (Kafka Streams, Flink, a worker in exactly_once) ends a partition with a
    # commit marker, which no consumer receives: the export must not wait for that offset.
    post = dataset_events(1, id_prefix="tx")[0]
    produce(settings, [(post.id.encode(), encode(post))])
    producer = Producer(
        {"bootstrap.servers": settings.bootstrap_servers, "transactional.id": f"ui-{settings.consumer_group}"}
    )
    producer.init_transactions(30)
    producer.begin_transaction()
    correction = Feedback(id=post.id, tags=["mlops"], source="reviewer", created_at=datetime.now(UTC))
    producer.produce(settings.topic_feedback, msgspec.json.encode(correction), post.id.encode())
    producer.commit_transaction(30)

    report = export_feedback(settings, tmp_path / "feedback.csv")

    assert (report.written, report.without_text, report.unusable) == (1, 0, 0)


def test_export_command_names_a_missing_topic(bootstrap_servers: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["export-feedback", "--out", str(tmp_path / "x.csv"), "--bootstrap-servers", bootstrap_servers],
        env={"STREAM_TAGGER_TOPIC_FEEDBACK": "no-such-topic-anywhere"},
    )
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "no-such-topic-anywhere" in said and "does not exist" in said
