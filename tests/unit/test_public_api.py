"""The package's public API: every exported name resolves, and importing the package stays cheap."""

from __future__ import annotations

import subprocess
import sys

import pytest

import stream_tagger


@pytest.mark.parametrize("name", stream_tagger.__all__)
def test_every_exported_name_resolves(name: str) -> None:
    value = getattr(stream_tagger, name)
    assert getattr(stream_tagger, name) is value  # cached after the first import
    assert name in dir(stream_tagger)


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = stream_tagger.nope  # type: ignore[attr-defined]


def test_importing_the_package_loads_no_heavy_dependency() -> None:
    heavy = ("sklearn", "onnxruntime", "faust", "confluent_kafka", "rich")
    code = f"import sys, stream_tagger; print([m for m in {heavy!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"


@pytest.mark.parametrize("module", ["stream_tagger.app", "stream_tagger.online.feedback"])
def test_serving_processes_do_not_load_the_training_stack(module: str) -> None:
    """scikit-learn is ~60 MB resident: the worker and the feedback worker must not pay for it."""
    training_stack = ("sklearn", "skl2onnx", "matplotlib")
    code = f"import sys, {module}; print([m for m in {training_stack!r} if m in sys.modules])"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "[]"
