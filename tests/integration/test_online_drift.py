"""Drift on the embedded broker: unseen posts like the training data stay under the alert threshold
(0.2), posts from another distribution go over it, on every signal.

The served model must not have seen the "training-like" posts (a model scores its own training posts
as far more familiar than anything new, and the reference describes new posts), so this test trains
a model on 70% of the dataset and streams the other 30%. That training is most of the test's time.
"""

from __future__ import annotations

import csv
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest

from stream_tagger.events import RawContent
from stream_tagger.model.train import TrainConfig, train
from stream_tagger.online.drift import SIGNALS
from stream_tagger.settings import Settings
from stream_tagger.tools.produce import encode
from stream_tagger.tools.sources import valid_posts
from tests.conftest import DATASET
from tests.integration.helpers import WorkerProcess, produce
from tests.integration.online_helpers import wait_metric

pytestmark = pytest.mark.integration

THRESHOLD = 0.2  # deploy/ alert rule: drift_score > 0.2
EVERYDAY = (
    "the",
    "a",
    "and",
    "of",
    "to",
    "our",
    "my",
    "with",
    "for",
    "this",
    "recipe",
    "garden",
    "football",
    "weather",
    "cooking",
    "holiday",
    "music",
    "city",
    "family",
    "coffee",
    "market",
    "river",
    "house",
    "dog",
    "cat",
    "morning",
    "travel",
    "paint",
    "shop",
    "bread",
    "soup",
    "car",
    "train",
    "school",
    "weekend",
    "friend",
    "party",
    "beach",
    "mountain",
    "story",
    "film",
    "tomato",
    "bake",
    "slow",
    "cheese",
    "match",
    "goal",
    "season",
    "team",
    "walk",
    "park",
    "summer",
    "winter",
    "rain",
    "sunny",
    "village",
    "church",
    "bicycle",
    "guitar",
    "song",
    "dance",
    "birthday",
    "gift",
)


@dataclass(frozen=True)
class HeldOut:
    model_dir: Path
    posts: list[RawContent]


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> HeldOut:
    """A model trained on 70% of the dataset (5-fold reference, as in production) and the other 30%."""
    work = tmp_path_factory.mktemp("heldout")
    with DATASET.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    random.Random(0).shuffle(rows)
    cut = int(len(rows) * 0.7)
    for name, part in (("train.csv", rows[:cut]), ("held.csv", rows[cut:])):
        with (work / name).open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(part)
    # One repeat and a smaller C than production: same reference procedure, a fraction of the time.
    # No pretrained pieces: their distillation is ~a minute of a busy core and drift does not need them.
    config = TrainConfig(cv_repeats=1, C=1.0, embedding_scale=0.0)
    model_dir = train([work / "train.csv"], work / "models", config)
    return HeldOut(model_dir, valid_posts(work / "held.csv"))


def everyday_posts(n: int) -> list[RawContent]:
    rng = random.Random(7)
    now = datetime.now(UTC)
    return [
        RawContent(
            id=f"everyday-{i}",
            title=" ".join(rng.choices(EVERYDAY, k=rng.randint(4, 9))),
            description=" ".join(rng.choices(EVERYDAY, k=rng.randint(10, 40))),
            created_at=now,
        )
        for i in range(n)
    ]


def drift(worker: WorkerProcess) -> dict[str, float]:
    return {s: worker.metric("stream_tagger_drift_score", {"signal": s}) for s in SIGNALS}


def test_drift_stays_low_on_training_like_posts_and_fires_on_another_distribution(
    settings: Settings, tmp_path: Path, held_out: HeldOut
) -> None:
    posts = held_out.posts
    settings = settings.model_copy(
        update={"model_dir": held_out.model_dir, "drift_window": len(posts), "drift_min_events": 100}
    )
    produce(settings, [(p.id.encode(), encode(p)) for p in posts])
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        worker.wait_processed(len(posts))
        calm = drift(worker)
        other = everyday_posts(len(posts))  # exactly one window: nothing training-like left in it
        produce(settings, [(p.id.encode(), encode(p)) for p in other])
        worker.wait_processed(len(posts) + len(other))
        wait_metric(worker, "stream_tagger_drift_score", {"signal": "oov_share"}, lambda v: v > THRESHOLD)
        shifted = drift(worker)
        assert worker.terminate() == 0

    assert all(0 < score < THRESHOLD for score in calm.values()), calm
    assert all(score > THRESHOLD for score in shifted.values()), shifted
