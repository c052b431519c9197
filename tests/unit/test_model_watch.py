"""Hot reload: the pointer moves, the new model is loaded once, and handed over only on apply()."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from stream_tagger.model.versions import ModelLoadError
from stream_tagger.online.model_watch import ModelWatcher


def version(root: Path, name: str) -> Path:
    folder = root / name
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"x")
    return folder


def point(root: Path, name: str) -> None:
    (root / "current").write_text(name + "\n")


def loader(calls: list[str]):
    def load(path: Path) -> str:
        calls.append(path.name)
        if path.name.startswith("broken"):
            raise ModelLoadError(f"{path}: broken")
        if path.name.startswith("crashing"):  # a model whose loading raises something unforeseen
            raise RuntimeError("onnxruntime: bad alloc")
        return path.name

    return load


def test_swap_happens_on_apply_only_and_once(tmp_path: Path) -> None:
    v1 = version(tmp_path, "v1")
    version(tmp_path, "v2")
    point(tmp_path, "v1")
    calls: list[str] = []
    swapped: list[str] = []
    watcher = ModelWatcher(tmp_path / "current", loader(calls), serving_from=v1, on_swap=[swapped.append])
    assert watcher.check() is False and calls == []
    point(tmp_path, "v2")
    assert watcher.check() is True
    assert watcher.check() is False  # already loaded, waiting
    assert swapped == []
    assert watcher.apply() == "v2"
    assert swapped == ["v2"] and calls == ["v2"]
    assert watcher.apply() is None
    assert watcher.check() is False


@pytest.mark.parametrize("bad", ["broken", "crashing"])
def test_a_broken_version_is_tried_once_and_the_old_one_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, bad: str
) -> None:
    v1 = version(tmp_path, "v1")
    version(tmp_path, bad)
    version(tmp_path, "v3")
    point(tmp_path, "v1")
    calls: list[str] = []
    watcher = ModelWatcher(tmp_path / "current", loader(calls), serving_from=v1, on_swap=[])
    point(tmp_path, bad)
    assert watcher.check() is False
    assert watcher.check() is False
    assert calls == [bad]
    assert "still serving" in caplog.text
    (tmp_path / "current").write_text("nowhere\n")
    assert watcher.check() is False
    point(tmp_path, "v3")
    assert watcher.check() is True
    assert watcher.apply() == "v3"


def test_background_thread_picks_up_a_promotion(tmp_path: Path) -> None:
    v1 = version(tmp_path, "v1")
    version(tmp_path, "v2")
    point(tmp_path, "v1")
    watcher = ModelWatcher(tmp_path / "current", loader([]), serving_from=v1, on_swap=[], interval=0.01)
    watcher.start()
    try:
        point(tmp_path, "v2")
        for _ in range(500):
            model = watcher.apply()
            if model is not None:
                break
            time.sleep(0.01)
        assert model == "v2"
    finally:
        watcher.stop()


def test_a_failed_version_is_tried_again_once_its_files_change(tmp_path: Path) -> None:
    v1 = version(tmp_path, "v1")
    partial = version(tmp_path, "broken-copy")
    point(tmp_path, "v1")
    calls: list[str] = []
    watcher = ModelWatcher(tmp_path / "current", loader(calls), serving_from=v1, on_swap=[])
    point(tmp_path, "broken-copy")
    assert watcher.check() is False and watcher.check() is False
    assert calls == ["broken-copy"]  # a failure is not retried while nothing changed
    (partial / "vocabulary.npy").write_bytes(b"the copy goes on")
    assert watcher.check() is False
    assert calls == ["broken-copy", "broken-copy"]


def test_a_failed_version_pointed_to_again_after_another_is_tried_again(tmp_path: Path) -> None:
    v1 = version(tmp_path, "v1")
    version(tmp_path, "broken")
    point(tmp_path, "v1")
    calls: list[str] = []
    watcher = ModelWatcher(tmp_path / "current", loader(calls), serving_from=v1, on_swap=[])
    for name in ("broken", "v1", "broken"):  # promoted, rolled back, promoted again once fixed
        point(tmp_path, name)
        assert watcher.check() is False
    assert calls == ["broken", "broken"]


def test_an_unreadable_pointer_is_logged_each_time_it_breaks(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v1 = version(tmp_path, "v1")
    point(tmp_path, "v1")
    watcher = ModelWatcher(tmp_path / "current", loader([]), serving_from=v1, on_swap=[])
    for name in ("nowhere", "nowhere", "v1", "nowhere"):
        point(tmp_path, name)
        watcher.check()
    assert caplog.text.count("model pointer unreadable") == 2


def test_with_nothing_served_the_pointed_version_is_loaded(tmp_path: Path) -> None:
    version(tmp_path, "v1")
    point(tmp_path, "v1")
    watcher = ModelWatcher(tmp_path / "current", loader([]), serving_from=None, on_swap=[])
    assert watcher.check() is True and watcher.apply() == "v1"


def test_a_pointer_in_another_encoding_is_logged_once_and_the_old_model_keeps_serving(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    v1 = version(tmp_path, "v1")
    version(tmp_path, "v2")
    point(tmp_path, "v1")
    watcher = ModelWatcher(tmp_path / "current", loader([]), serving_from=v1, on_swap=[])
    (tmp_path / "current").write_text("v2\n", encoding="utf-16")
    assert watcher.check() is False and watcher.check() is False
    assert caplog.text.count("model pointer unreadable") == 1
    assert not [record for record in caplog.records if record.exc_info]
    point(tmp_path, "v2")
    assert watcher.check() is True
