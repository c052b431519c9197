"""Build the kernels ahead of time into a C extension that workers load without numba (``compiled``).

Only ``stream-tagger compile`` and the tests import this module: it needs numba, LLVM and a C compiler
(numba's ``pycc``, pending deprecation upstream; numba is pinned, and without the built module every
process falls back to numba's JIT, so losing pycc would cost memory, not function).

Each kernel is compiled for the argument types it gets when serving and training call it, read off
numba's own dispatchers after :func:`warm_up` has called every one of them: the signatures cannot drift
from the code that calls them. The machine code targets the generic CPU of the architecture, not this
host's, so an image built on one machine runs on another; measured no slower than numba's JIT on the
featuriser (17.2 vs 17.1 µs per post).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from stream_tagger.kernels import load as compiled


class BuildError(RuntimeError):
    """The kernels cannot be built here; the message says why."""


def warm_up() -> None:
    """Call every kernel once as serving and training call them; in JIT mode this also fills numba's
    disk cache, so a process that cannot use the built module does not compile at start."""
    from stream_tagger.model.featurise import (
        FeatureParams,
        Keywords,
        Pieces,
        Vocabulary,
        featurize,
        hash_ngrams,
    )
    from stream_tagger.online.duplicates import fingerprints

    texts = ["Warm-up: object detection with CI/CD", "Café ☕ naïve", ""]
    hashed = hash_ngrams(texts, FeatureParams())
    vocab = Vocabulary.from_counts(*np.unique(hashed.hashes, return_counts=True), min_df=1)
    vocab.lookup(hashed.hashes)
    keywords = Keywords({"mlops": ["ci cd", "mlflow"]})
    pieces = Pieces(["\u2581object", "\u2581detect", "ion", "é"], np.eye(4, dtype=np.float16))
    featurize(texts, FeatureParams(), vocab, keywords, pieces).padded()
    fingerprints(texts)


def build(out_dir: Path = compiled.PACKAGE_DIR) -> Path:
    """Compile every kernel into ``out_dir/_kernels_<digest>.<ext>``; older builds there are removed.

    The extension is linked in a temporary folder and moved into place in one step: a file cut short
    by an interrupted build would crash every process that imports it (a bus error, not an ImportError
    that the JIT fallback could catch)."""
    if compiled.BUILT is not None:
        raise BuildError(
            f"this process already runs the built kernels ({compiled.BUILT.__file__}); "
            "build with STREAM_TAGGER_KERNELS=jit"
        )
    warm_up()
    try:
        with tempfile.TemporaryDirectory(dir=out_dir, prefix=".kernels-build-") as scratch:
            built = _compile(Path(scratch))
            path = out_dir / built.name
            os.replace(built, path)
    except BuildError:
        raise
    except Exception as exc:  # setuptools, distutils and the C compilers raise their own types
        raise BuildError(f"cannot build the kernels in {out_dir}: {exc}") from exc
    for old in out_dir.glob("_kernels_*"):
        if old != path:
            old.unlink()
    return path


def _compile(scratch: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pycc's pending-deprecation notice
        from numba.pycc import CC
    cc = CC(compiled.module_name())
    cc.output_dir = str(scratch)
    for name, dispatcher in compiled.KERNELS.items():
        if len(dispatcher.signatures) != 1:
            raise BuildError(
                f"kernel {name} was called with {len(dispatcher.signatures)} argument type signatures "
                "by warm_up(); it must be called exactly once, as serving calls it"
            )
        (args,) = dispatcher.signatures
        cc.export(name, dispatcher.overloads[args].signature.return_type(*args))(dispatcher.py_func)
    with _releasing_gil():
        cc.compile()
    return scratch / cc.output_file


@contextlib.contextmanager
def _releasing_gil() -> Iterator[None]:
    """pycc wraps each kernel for Python without releasing the GIL (its flags leave ``release_gil``
    off; ``njit(nogil=True)`` sets it): the worker featurises in two threads at once, so set it."""
    import numba.pycc.compiler as pycc

    class NoGilFlags(pycc.Flags):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)
            self.release_gil = True

    original, pycc.Flags = pycc.Flags, NoGilFlags
    try:
        yield
    finally:
        pycc.Flags = original
