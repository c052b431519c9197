"""Feedback on the embedded broker: the online metrics equal what a person counts by hand."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pytest

from stream_tagger.events import Feedback, TaggedContent
from stream_tagger.model.predictor import Predictor
from stream_tagger.settings import Settings
from stream_tagger.tools.produce import encode
from stream_tagger.tools.sources import dataset_events
from tests.integration.helpers import (
    WORKER_COMMAND,
    WorkerProcess,
    committed_total,
    drain,
    produce,
    wait_for,
    wait_value,
)
from tests.integration.online_helpers import wait_metric

pytestmark = pytest.mark.integration

FEEDBACK_COMMAND = [WORKER_COMMAND[0], "feedback-worker"]

EVENTS = 150
CV, NLP, OTHER = "computer-vision", "natural-language-processing", "other"


def feedback(content_id: str, tags: list[str], source: str, at: datetime) -> tuple[bytes, bytes]:
    return content_id.encode(), msgspec.json.encode(
        Feedback(
            id=content_id,
            tags=tags,
            source=source,  # type: ignore[arg-type]
            created_at=at,
        )
    )


@pytest.mark.parametrize("in_worker", [True, False], ids=["in-worker", "feedback-worker"])
def test_online_precision_recall_agreement_and_review_resolution(
    settings: Settings, tmp_path: Path, in_worker: bool
) -> None:
    events = [
        msgspec.structs.replace(e, author_tags=[CV]) if i % 3 == 0 else e
        for i, e in enumerate(dataset_events(EVENTS, id_prefix="fb"))
    ]
    now = datetime.now(UTC)
    # Corrections for the first 20 posts arrive before the posts themselves: parked, judged later.
    early = {e.id: [NLP] for e in events[:20]}
    produce(
        settings,
        [feedback(cid, tags, "user", now) for cid, tags in early.items()],
        topic=settings.topic_feedback,
    )
    produce(settings, [(e.id.encode(), encode(e)) for e in events])

    # A threshold at the median confidence sends about half the posts to review, whatever the model.
    model = Predictor.load(settings.model_dir)
    probs = model.predict([e.text for e in events]).probs
    settings = settings.model_copy(
        update={"threshold": float(np.median(probs.max(axis=1))), "feedback_in_worker": in_worker}
    )
    with contextlib.ExitStack() as stack:
        worker = stack.enter_context(WorkerProcess(settings, tmp_path / "worker.log"))
        worker.wait_ready()
        # Where the feedback loop runs, and so exports its metrics: the worker or its own process.
        loop = worker
        if not in_worker:
            own = settings.model_copy(update={"web_port": 0})
            loop = stack.enter_context(WorkerProcess(own, tmp_path / "feedback.log", FEEDBACK_COMMAND))
            loop.wait_ready()
        tagged = drain(settings, settings.topic_tagged, lambda seen: len(seen) >= EVENTS)
        decision = {k.decode(): msgspec.json.decode(v[0], type=TaggedContent) for k, v in tagged.items()}
        # Later corrections: every other one confirms the top suggestion, the rest say "other";
        # reviewers decide the posts waiting for review.
        corrections = dict(early)
        sources = dict.fromkeys(early, "user")
        for i, e in enumerate(events[20:110]):
            d = decision[e.id]
            if d.status == "pending_review":
                corrections[e.id], sources[e.id] = [NLP, OTHER], "reviewer"
            else:
                corrections[e.id] = [d.tags[0].tag] if d.tags and i % 2 == 0 else [OTHER]
                sources[e.id] = "author"
        later = {cid: tags for cid, tags in corrections.items() if cid not in early}
        reviewed_at = now + timedelta(hours=1)  # the reviewer client's clock, not the review time
        produce(
            settings,
            [feedback(cid, tags, sources[cid], reviewed_at) for cid, tags in later.items()],
            topic=settings.topic_feedback,
        )

        # By hand: what was shown vs what people said, the author's own tags set aside.
        tp = fp = fn = 0
        tp_nlp = fp_nlp = 0
        for cid, tags in corrections.items():
            d = decision[cid]
            shown = {s.tag for s in d.tags}
            truth = set(tags) - set(d.author_tags)
            tp, fp, fn = tp + len(shown & truth), fp + len(shown - truth), fn + len(truth - shown)
            tp_nlp += NLP in shown & truth
            fp_nlp += NLP in shown - truth
        pending = [cid for cid in later if sources[cid] == "reviewer"]
        assert pending and tp and fp, "the sample must exercise reviews, hits and misses"

        expected = pytest.approx(
            {
                "precision": tp / (tp + fp),
                "recall": tp / (tp + fn),
                f"precision {NLP}": tp_nlp / (tp_nlp + fp_nlp),
                "user": 20,
                "author": len(later) - len(pending),
                "reviewer": len(pending),
                "reviews resolved": len(pending),
            }
        )

        def online() -> dict[str, float]:
            samples = loop.samples()
            return {
                "precision": loop.metric("stream_tagger_online_precision", {"tag": "all"}, samples),
                "recall": loop.metric("stream_tagger_online_recall", {"tag": "all"}, samples),
                f"precision {NLP}": loop.metric("stream_tagger_online_precision", {"tag": NLP}, samples),
                **{
                    source: loop.metric("stream_tagger_feedback_total", {"source": source}, samples)
                    for source in ("user", "author", "reviewer")
                },
                "reviews resolved": loop.metric("stream_tagger_review_resolution_seconds_count", {}, samples),
            }

        # All at their final values at once: corrections are judged in no set order across partitions,
        # and a ratio can pass through its final value on the way.
        judged = wait_value(online, lambda got: got == expected, timeout=60)
        resolution_sum = loop.metric("stream_tagger_review_resolution_seconds_sum")
        read_at = datetime.now(UTC)
        agree = worker.metric("stream_tagger_author_tag_agreement_total", {"result": "agree"})
        disagree = worker.metric("stream_tagger_author_tag_agreement_total", {"result": "disagree"})
        retagged = drain(
            settings,
            settings.topic_tagged,
            lambda seen: all(len(seen.get(cid.encode(), [])) >= 2 for cid in pending),
        )
        assert worker.terminate() == 0
        if loop is not worker:
            assert loop.terminate() == 0

    assert judged == expected
    # Time to review: from the worker asking for the review to the decision's arrival at the feedback
    # loop, by the loop's clock: never the reviewer client's created_at (an hour later here).
    longest = sum((read_at - decision[cid].processed_at).total_seconds() for cid in pending)
    by_client = sum((reviewed_at - decision[cid].processed_at).total_seconds() for cid in pending)
    assert 0 < resolution_sum <= longest < by_client
    for cid in pending:
        last = msgspec.json.decode(retagged[cid.encode()][-1], type=TaggedContent)
        assert (last.status, [t.tag for t in last.tags]) == ("tagged", [NLP, OTHER])
    # Author tags as a proxy label: the model's top-1 against them, counted by hand with the same model.
    top1 = [model.labels[j] for j in probs.argmax(axis=1)]
    hits = sum(tag in e.author_tags for tag, e in zip(top1, events, strict=True) if e.author_tags)
    assert (agree, disagree) == (hits, sum(bool(e.author_tags) for e in events) - hits)


def read_back(settings: Settings) -> int:
    """Tagged events the worker's Faust group (the feedback agents) committed."""
    return committed_total(settings, group=f"{settings.consumer_group}-app", topic=settings.topic_tagged)


def test_predictions_survive_a_restart_through_the_changelog(settings: Settings, tmp_path: Path) -> None:
    events = dataset_events(40, id_prefix="rs")
    # The loop inside the worker (not the default): one process to restart, and read_back's group.
    settings = settings.model_copy(update={"feedback_in_worker": True})
    produce(settings, [(e.id.encode(), encode(e)) for e in events])
    with WorkerProcess(settings, tmp_path / "first.log") as worker:
        worker.wait_ready()
        tagged = drain(settings, settings.topic_tagged, lambda seen: len(seen) >= len(events))
        decision = {k.decode(): msgspec.json.decode(v[0], type=TaggedContent) for k, v in tagged.items()}
        # The feedback agent has read every prediction back once its group committed past them all;
        # from then on a restarted worker can only know them from the table's changelog.
        wait_for(lambda: read_back(settings) >= len(events), "the feedback agent read every prediction", 30)
        assert read_back(settings) == len(events)
        assert worker.terminate() == 0

    confirmed = [e.id for e in events if decision[e.id].tags][:10]
    with WorkerProcess(settings, tmp_path / "second.log") as worker:
        worker.wait_ready()
        produce(
            settings,
            [feedback(cid, [decision[cid].tags[0].tag], "user", datetime.now(UTC)) for cid in confirmed],
            topic=settings.topic_feedback,
        )
        precision = wait_metric(worker, "stream_tagger_online_precision", {"tag": "all"}, lambda v: v == 1.0)
        assert worker.terminate() == 0
    assert confirmed and precision == 1.0


def test_expired_predictions_leave_the_table_through_its_changelog(
    settings: Settings, tmp_path: Path
) -> None:
    events = dataset_events(20, id_prefix="ex")
    retention = {"feedback_retention_days": 3 / 86_400, "feedback_sweep_interval_s": 1.0}
    settings = settings.model_copy(update={"feedback_in_worker": True, **retention})
    produce(settings, [(e.id.encode(), encode(e)) for e in events])
    changelog = f"{settings.consumer_group}-app-feedback-predictions-changelog"
    keys = {msgspec.json.encode(e.id) for e in events}  # the table's json key serializer

    def forgotten(seen: dict[tuple[int, bytes], list[bytes | None]]) -> bool:
        ours = {(p, key): values for (p, key), values in seen.items() if key in keys}
        return keys <= {key for _, key in ours} and all(values[-1] is None for values in ours.values())

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        # Each prediction is written when the feedback agent reads it back, then deleted by a sweep
        # once it is 3 s old: a tombstone in the changelog partition that holds it, so that a restart
        # does not bring it back.
        records = drain(settings, changelog, forgotten, timeout=60, by=lambda m: (m.partition(), m.key()))
        assert worker.terminate() == 0
    placed = sorted(key for _, key in records if key in keys)
    assert placed == sorted(keys)  # every key in exactly one partition, its value first, then its tombstone
    assert all(values[0] is not None for (_, key), values in records.items() if key in keys)
    assert "feedback tables: forgot" in (tmp_path / "worker.log").read_text()
