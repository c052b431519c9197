"""The kernels built ahead of time (``aot``): no numba in a worker, the GIL released, a digest per source."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stream_tagger.kernels import load as compiled
from tests.conftest import REPO


@pytest.fixture(scope="module")
def built() -> None:
    """The package's module for this source, as bootstrap.sh leaves it (quick when it is there)."""
    subprocess.run([Path(sys.executable).parent / "stream-tagger", "compile"], check=True, cwd=REPO)


def _run(code_or_script: list[str], kernels: str, tmp_path: Path) -> str:
    env = {**os.environ, "STREAM_TAGGER_KERNELS": kernels, "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, *code_or_script], env=env, cwd=tmp_path, capture_output=True, text=True, check=True
    )
    return done.stdout


def test_a_worker_with_built_kernels_never_imports_numba(built: None, tmp_path: Path) -> None:
    code = (
        "import sys; from stream_tagger.app import Worker; from stream_tagger.online.attach import Online; "
        "from stream_tagger.settings import Settings; from stream_tagger.model.predictor import Predictor; "
        f"s = Settings(model_dir={str(REPO / 'models' / 'current')!r}); "
        "w = Worker(s, Predictor.load(s.model_dir)); Online(w); "  # loads every kernel
        "print('numba' in sys.modules, 'llvmlite' in sys.modules)"
    )
    assert _run(["-c", code], "auto", tmp_path).split() == ["False", "False"]


def test_the_built_kernels_release_the_gil(built: None) -> None:
    # pycc's wrappers keep the GIL unless the build sets release_gil (aot._releasing_gil); the scoring
    # and hot-path threads featurise side by side only if they drop it.
    (path,) = compiled.PACKAGE_DIR.glob(f"{compiled.module_name()}.*")
    assert b"PyEval_SaveThread" in path.read_bytes()


def test_a_kernel_outside_the_digested_sources_is_refused() -> None:
    def outside(x: int) -> int:
        return x

    with pytest.raises(RuntimeError, match=r"not in compiled\.KERNEL_SOURCES"):
        compiled.jit(outside)


def test_editing_a_kernel_source_names_another_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in compiled.KERNEL_SOURCES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(compiled.SOURCE_ROOT / name, tmp_path / name)
    monkeypatch.setattr(compiled, "SOURCE_ROOT", tmp_path)
    before = compiled.module_name()
    assert before.startswith("_kernels_") and before == compiled.module_name()
    features = tmp_path / "model" / "featurise.py"
    features.write_text(features.read_text().replace("_SPACE = 32", "_SPACE = 33"))
    assert compiled.module_name() != before
