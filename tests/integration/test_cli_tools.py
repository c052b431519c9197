"""produce -> worker -> tail --json, through the real commands, and predict agreeing with the worker."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from stream_tagger.events import TaggedContent
from stream_tagger.settings import Settings
from stream_tagger.tools.predict import PostPrediction
from tests.conftest import DATASET
from tests.integration.helpers import WorkerProcess, settings_env

pytestmark = pytest.mark.integration

CLI = str(Path(sys.executable).with_name("stream-tagger"))
POSTS = 40


def posts_with_author_tags(path: Path) -> list[str]:
    """The dataset's first posts as a CSV with an author_tags column (some given); returns their ids."""
    with DATASET.open(newline="", encoding="utf-8") as src:
        rows = [row for _, row in zip(range(POSTS), csv.DictReader(src), strict=False)]
    with path.open("w", newline="", encoding="utf-8") as dst:
        writer = csv.DictWriter(dst, [*rows[0], "author_tags"])
        writer.writeheader()
        for i, row in enumerate(rows):
            writer.writerow({**row, "author_tags": row["tag"] if i % 4 == 0 else ""})
    return [row["id"] for row in rows]


def run(settings: Settings, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = settings_env(settings) | {"COLUMNS": "200"}
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=timeout, check=False)


def test_produce_worker_tail_json_see_the_same_ids_and_predict_agrees(
    settings: Settings, tmp_path: Path
) -> None:
    data = tmp_path / "posts.csv"
    ids = posts_with_author_tags(data)

    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        produced = run(settings, "produce", "--file", str(data), "--topic", "raw", "--rate", "200")
        assert produced.returncode == 0, produced.stderr
        assert f"delivered {POSTS}, failed 0, bad rows 0" in produced.stderr
        tailed = run(
            settings,
            "tail",
            "--topic",
            "tagged",
            "--from-beginning",
            "--json",
            "--max",
            str(POSTS),
            "--timeout",
            "45",
        )
        assert worker.terminate() == 0

    assert tailed.returncode == 0, tailed.stderr
    events = [msgspec.json.decode(line, type=TaggedContent) for line in tailed.stdout.splitlines()]
    assert sorted(event.id for event in events) == sorted(ids)

    predicted = run(settings, "predict", "--file", str(data))
    assert predicted.returncode == 0, predicted.stderr
    offline_lines = [msgspec.json.decode(line, type=PostPrediction) for line in predicted.stdout.splitlines()]
    batch = {prediction.id: prediction for prediction in offline_lines}
    for event in events:
        offline = batch[event.id]
        assert offline.status == ("tagged" if event.status == "tagged" else "review"), event.id
        assert offline.tags == event.tags, event.id
        assert offline.author_tags == event.author_tags

    readable = run(settings, "tail", "--from-beginning", "--max", "5", "--timeout", "20")
    assert readable.returncode == 0, readable.stderr
    lines = readable.stdout.splitlines()
    assert len(lines) == 5
    assert all(line.split()[1] in ids and " ms  model " in line for line in lines)


def test_tail_of_a_topic_that_does_not_exist_says_so(settings: Settings) -> None:
    result = run(settings, "tail", "--topic", "tagged", "--max", "1")
    assert result.returncode == 1
    assert f"topic {settings.topic_tagged} does not exist at {settings.bootstrap_servers}" in result.stderr
