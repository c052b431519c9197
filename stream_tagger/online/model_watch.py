"""Hot reload: a new model version starts serving between two batches, without a consumer-group restart.

Promoting a model is one atomic rename of the ``models/current`` pointer (``versions.set_current``).
A thread polls the pointer; when it names another folder, the thread loads that version (seconds of
ONNX session setup, off the hot path) and parks it. The hot path calls ``apply()`` between batches,
in its own thread: every batch is scored by exactly one version, and no partition is revoked, so no
event is lost or held up by a rebalance. A version that fails to load is logged and the old one keeps
serving: a bad deploy must not take a running worker down. It is tried again once its files change (a
copy still in progress when the pointer moved) or the pointer names it again after another.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from stream_tagger.model.versions import ModelLoadError, resolve

log = logging.getLogger(__name__)

M = TypeVar("M")


class ModelWatcher(Generic[M]):
    """Watches one model pointer; ``apply()`` hands a freshly loaded model to ``on_swap`` callbacks."""

    def __init__(
        self,
        model_dir: Path,
        loader: Callable[[Path], M],
        serving_from: Path | None,
        on_swap: list[Callable[[M], None]],
        interval: float = 1.0,
    ) -> None:
        """``serving_from``: the folder of the model served now (the one loaded, which the pointer may no
        longer name by the time the watcher starts), or None when none could be loaded."""
        self.model_dir = Path(model_dir)
        self._loader = loader
        self._serving_from = serving_from.resolve() if serving_from is not None else None
        self._on_swap = on_swap
        self._interval = interval
        self._lock = threading.Lock()
        self._pending: tuple[Path, M] | None = None
        # The folder that failed to load and what its files were then: tried again once they change
        # (a copy that was still in progress), or once the pointer names it again after another.
        self._failed: tuple[Path, tuple] | None = None
        self._pointer_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check(self) -> bool:
        """One poll: True when a new version was loaded and waits for ``apply()``."""
        try:
            target = resolve(self.model_dir).resolve()
        except ModelLoadError as exc:
            if self._pointer_error != str(exc):
                log.error("model pointer unreadable, still serving %s: %s", self._serving_from, exc)
                self._pointer_error = str(exc)
            return False
        self._pointer_error = None
        with self._lock:
            known = self._pending[0] if self._pending else self._serving_from
        if target == known:
            self._failed = None
            return False
        files = _files(target)
        if self._failed == (target, files):
            return False
        try:
            model = self._loader(target)
        except Exception as exc:  # ModelLoadError, or whatever a broken model raises while loading
            log.error("new model not loaded, still serving %s: %s", self._serving_from, exc)
            self._failed = (target, files)
            return False
        with self._lock:
            self._pending = (target, model)
        self._failed = None
        log.info("model %s loaded, serving it from the next batch", target)
        return True

    def apply(self) -> M | None:
        """Called by the hot path between batches: switch to the loaded model, if any."""
        with self._lock:
            pending, self._pending = self._pending, None
            if pending is None:
                return None
            self._serving_from, model = pending
        for swap in self._on_swap:
            swap(model)
        return model

    def start(self) -> ModelWatcher[M]:
        self._thread = threading.Thread(target=self._run, name=f"model-watch:{self.model_dir}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.check()
            except Exception:  # the watcher must outlive any surprise, the worker keeps serving
                log.exception("model watcher failed; will retry")


def _files(folder: Path) -> tuple:
    """Name, size and modification time of each file of a version folder: what changes when a copy
    into it goes on or a file is replaced."""
    files = []
    try:
        for path in sorted(folder.iterdir()):
            stat = path.stat()
            files.append((path.name, stat.st_size, stat.st_mtime_ns))
    except OSError:
        return ()
    return tuple(files)
