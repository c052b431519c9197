"""Shadow model on the embedded broker: it disagrees on a share known in advance, and the metrics say so."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from stream_tagger.events import ShadowDisagreement
from stream_tagger.model.predictor import Predictor
from stream_tagger.settings import Settings
from stream_tagger.tools.produce import encode
from stream_tagger.tools.sources import dataset_events
from tests.integration.helpers import WorkerProcess, drain, produce
from tests.integration.online_helpers import models_root, relabelled_copy

pytestmark = pytest.mark.integration

EVENTS = 400
SWAP = ("computer-vision", "other")


def test_shadow_agreement_and_disagreements_match_the_known_share(settings: Settings, tmp_path: Path) -> None:
    root, live_version = models_root(tmp_path)
    shadow_dir = relabelled_copy(root, live_version, "shadow-relabelled", SWAP)
    events = dataset_events(EVENTS, id_prefix="sh")
    live = Predictor.load(root / "current")
    top1 = [live.labels[j] for j in live.predict([e.text for e in events]).probs.argmax(axis=1)]
    expected = {e.id: tag for e, tag in zip(events, top1, strict=True) if tag in SWAP}
    assert 0 < len(expected) < EVENTS

    settings = settings.model_copy(update={"model_dir": root / "current", "shadow_model_dir": shadow_dir})
    produce(settings, [(e.id.encode(), encode(e)) for e in events])
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        worker.wait_processed(EVENTS)
        value = worker.metric
        agree = value("stream_tagger_shadow_comparisons_total", {"result": "agree"})
        disagree = value("stream_tagger_shadow_comparisons_total", {"result": "disagree"})
        pairs = {
            (a, b): value("stream_tagger_shadow_disagreements_total", {"live_tag": a, "shadow_tag": b})
            for a, b in (SWAP, SWAP[::-1])
        }
        shadow_runs = value(
            "stream_tagger_inference_seconds_count", {"model_version": "shadow-relabelled", "role": "shadow"}
        )
        info = value("stream_tagger_model_info", {"version": "shadow-relabelled", "role": "shadow"})
        records = drain(
            settings, settings.topic_shadow_disagreements, lambda seen: len(seen) >= len(expected)
        )
        assert worker.terminate() == 0

    assert (agree, disagree) == (EVENTS - len(expected), len(expected))
    assert pairs == {
        SWAP: sum(t == SWAP[0] for t in expected.values()),
        SWAP[::-1]: sum(t == SWAP[1] for t in expected.values()),
    }
    assert shadow_runs > 0 and info == 1
    assert {k.decode() for k in records} == set(expected)
    for key, [value_] in records.items():
        record = msgspec.json.decode(value_, type=ShadowDisagreement)
        assert (record.live_tag, record.shadow_model_version) == (expected[key.decode()], "shadow-relabelled")
        assert record.shadow_tag == SWAP[1 - SWAP.index(record.live_tag)]


def test_a_shadow_that_cannot_be_loaded_leaves_the_worker_serving(settings: Settings, tmp_path: Path) -> None:
    shadow = tmp_path / "no-shadow"
    events = dataset_events(50, id_prefix="noshadow")
    settings = settings.model_copy(update={"shadow_model_dir": shadow})
    produce(settings, [(e.id.encode(), encode(e)) for e in events])
    with WorkerProcess(settings, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        worker.wait_processed(len(events))
        failures = worker.metric("stream_tagger_shadow_failures_total", {"model_version": str(shadow)})
        assert worker.terminate() == 0
    assert failures == 1
    assert f"shadow model not loaded, starting without it: {shadow}" in worker.output()
