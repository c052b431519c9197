"""What ``Online`` starts a worker with: the models it actually loaded, and no shadow it cannot load."""

from __future__ import annotations

from pathlib import Path

from stream_tagger.app import Worker
from stream_tagger.model.predictor import Predictor
from stream_tagger.model.versions import set_current
from stream_tagger.online.attach import Online
from stream_tagger.settings import Settings
from tests.integration.online_helpers import models_root, relabelled_copy


def test_a_promotion_while_the_worker_starts_is_picked_up(tmp_path: Path) -> None:
    root, live = models_root(tmp_path)
    predictor = Predictor.load(root / "current")
    relabelled_copy(root, live, "v2", ("mlops", "other"))
    set_current(root, "v2")  # after the worker loaded its model, while it waited for the broker
    online = Online(Worker(Settings(model_dir=root / "current"), predictor))
    assert online.watchers[0].check() is True
    online.apply_model_swaps()
    assert online.worker.pipeline.serving.predictor.version == "v2"


def test_a_shadow_that_cannot_be_loaded_at_start_is_left_out_and_counted(tmp_path: Path) -> None:
    root, _ = models_root(tmp_path)
    (root / "shadow").write_text("not-there\n")
    settings = Settings(model_dir=root / "current", shadow_model_dir=root / "shadow")
    worker = Worker(settings, Predictor.load(settings.model_dir))
    online = Online(worker)
    assert online.shadow is None
    failures = "stream_tagger_shadow_failures_total"
    assert worker.metrics.registry.get_sample_value(failures, {"model_version": str(root / "shadow")}) == 1
    relabelled_copy(root, worker.predictor.version, "candidate", ("mlops", "other"))
    (root / "shadow").write_text("candidate\n")  # pointed at a version that loads: picked up
    assert online.watchers[1].check() is True
    online.apply_model_swaps()
    assert online.shadow is not None and online.shadow.version == "candidate"
