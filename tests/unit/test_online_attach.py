"""What ``Online`` starts a worker with: the models it actually loaded, and no shadow it cannot load."""

from __future__ import annotations

from pathlib import Path

import pytest

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


@pytest.mark.parametrize("failure", ["utf-16 pointer", "unforeseen error"])
def test_a_shadow_that_fails_to_load_in_any_way_leaves_the_worker_serving(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, failure: str
) -> None:
    root, live = models_root(tmp_path)
    settings = Settings(model_dir=root / "current", shadow_model_dir=root / "shadow")
    worker = Worker(settings, Predictor.load(settings.model_dir))
    if failure == "utf-16 pointer":
        (root / "shadow").write_text(live + "\n", encoding="utf-16")  # Windows PowerShell 5's default
    else:
        (root / "shadow").write_text(live + "\n")

        def load(model_dir: Path) -> Predictor:
            raise RuntimeError("onnxruntime: bad alloc")

        monkeypatch.setattr(Predictor, "load", load)
    online = Online(worker)
    assert online.shadow is None
    failures = "stream_tagger_shadow_failures_total"
    assert worker.metrics.registry.get_sample_value(failures, {"model_version": str(root / "shadow")}) == 1
    said = [r for r in caplog.records if "shadow model not loaded" in r.getMessage()]
    assert len(said) == 1 and not said[0].exc_info and "\n" not in said[0].getMessage()
