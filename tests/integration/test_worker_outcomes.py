"""Every input ends in exactly one outcome: tagged (or review, shown as pending in tagged) or dead letter."""

from __future__ import annotations

import random
from pathlib import Path

import msgspec
import pytest

from stream_tagger.events import DeadLetter, ReviewRequest, TaggedContent
from stream_tagger.settings import Settings
from tests.integration.helpers import (
    WorkerProcess,
    drain,
    has_keys,
    malformed_events,
    produce,
    valid_events,
)

pytestmark = pytest.mark.integration


def test_5000_events_with_5_percent_malformed_each_get_their_one_outcome(
    settings: Settings, tmp_path: Path
) -> None:
    valid = valid_events(4_750, prefix="ok")
    bad = malformed_events(250, settings)
    mixed: list[tuple[bytes, bytes]] = valid + [(key, value) for key, value, _ in bad]
    random.Random(1).shuffle(mixed)
    produce(settings, mixed)

    # Queued before the worker starts, the events come in batches of hundreds or thousands: in parts of
    # 128, every batch of 256 or more is finished part by part (decision 023), dead letters among them.
    in_parts = settings.model_copy(update={"partial_batch_part_size": 128})
    with WorkerProcess(in_parts, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        tagged = drain(settings, settings.topic_tagged, has_keys(len(valid)))
        letters = drain(settings, settings.topic_dead_letter, has_keys(len(bad)))
        worker.wait_processed(len(mixed))
        now = worker.samples()
        review_share = worker.metric("stream_tagger_events_processed_total", {"outcome": "review"}, now)
        batches = worker.metric("stream_tagger_batch_size_count", samples=now)
        scored = worker.metric("stream_tagger_inference_seconds_count", {"role": "live"}, now)
        assert worker.terminate() == 0
    assert scored > batches, "no batch was finished in parts"

    assert set(tagged) == {key for key, _ in valid}
    assert all(len(values) == 1 for values in tagged.values()), "an id was tagged twice in a clean run"
    statuses = {
        key: msgspec.json.decode(values[0], type=TaggedContent).status for key, values in tagged.items()
    }
    review = drain(settings, settings.topic_review, has_keys(int(review_share)))
    assert {key for key, status in statuses.items() if status == "pending_review"} == set(review)
    for values in review.values():
        assert msgspec.json.decode(values[0], type=ReviewRequest).candidates

    expected = {key: (reason, value) for key, value, reason in bad}
    assert set(letters) == set(expected)
    for key, [value] in letters.items():
        letter = msgspec.json.decode(value, type=DeadLetter)
        assert (letter.reason, letter.original) == expected[key]
        assert letter.topic == settings.topic_raw
        assert 0 <= letter.partition < settings.partitions


def test_raw_message_too_large_for_its_dead_letter_is_dead_lettered_truncated_and_the_worker_goes_on(
    settings: Settings, tmp_path: Path
) -> None:
    # 800 kB: the broker takes it, but base64 in a dead letter would be over message.max.bytes.
    huge = b'{"id": "' + b"x" * (800_000 - 8)
    valid = valid_events(40, prefix="after")
    produce(settings, [(b"huge", huge), *valid])

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        letters = drain(settings, settings.topic_dead_letter, has_keys(1))
        tagged = drain(settings, settings.topic_tagged, has_keys(len(valid)))
        assert worker.terminate() == 0

    [[value]] = letters.values()
    letter = msgspec.json.decode(value, type=DeadLetter)
    assert (letter.reason, letter.original_key) == ("too_large", b"huge")
    assert huge.startswith(letter.original) and f"of {len(huge)} bytes" in letter.detail
    assert set(tagged) == {key for key, _ in valid}
