"""Helpers for the online-evaluation integration tests: model folders to shadow/promote, polling a metric."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import onnx

from stream_tagger.model.versions import METADATA_FILE, MODEL_FILE, resolve, set_current
from tests.conftest import MODELS, as_exported
from tests.integration.helpers import WorkerProcess, wait_value


def models_root(tmp_path: Path) -> tuple[Path, str]:
    """A private ``models/`` holding a copy of the committed model, ``current`` pointing at it."""
    root = tmp_path / "models"
    root.mkdir()
    live = resolve(MODELS / "current")
    shutil.copytree(live, root / live.name)
    set_current(root, live.name)
    return root, live.name


def relabelled_copy(root: Path, source: str, version: str, swap: tuple[str, str]) -> Path:
    """The same model under another version with two labels swapped: it disagrees with the original
    exactly where the original's top-1 is one of the two, a share the test can count in advance."""
    target = root / version
    shutil.copytree(root / source, target)
    meta = json.loads((target / METADATA_FILE).read_text())
    a, b = swap
    meta["labels"] = [b if label == a else a if label == b else label for label in meta["labels"]]
    meta["version"] = version
    # The graph says which labels and version it was exported with: the same, or it does not load.
    graph = onnx.load(target / MODEL_FILE)
    props = {p.key: p.value for p in graph.metadata_props}
    onnx.helper.set_model_props(graph, {**props, "labels": ",".join(meta["labels"]), "version": version})
    onnx.save(graph, target / MODEL_FILE)
    (target / METADATA_FILE).write_text(json.dumps(meta))
    as_exported(target)
    return target


def wait_metric(
    worker: WorkerProcess,
    name: str,
    labels: dict[str, str] | None,
    done: Callable[[float], bool],
    timeout: float = 30.0,
) -> float:
    """Poll one sample until ``done(value)``; returns the last value (the caller asserts on it)."""
    return wait_value(lambda: worker.metric(name, labels), done, timeout)
