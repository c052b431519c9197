"""Where the package's compiled kernels (the featuriser's, the duplicate check's) come from.

They are written once, as numba code, and served one of two ways:

- Ahead of time: ``stream-tagger compile`` (bootstrap.sh and the Docker build run it) builds them into
  a C extension, ``stream_tagger/kernels/_kernels_<digest>`` (``build.py``). A process that finds the
  module built for exactly this source never imports numba: a worker is ~120 MB smaller (numba's
  import ~64 MB, and LLVM starting up to load the first kernel from numba's cache ~57 MB, measured),
  which is what lets it take micro-batches of 1,024 within its memory budget, and it starts without
  compiling anything.
- Just in time (numba's ``njit``, cached on disk) when that module is missing, was built from other
  sources or other numba/LLVM/numpy versions (its name carries a digest of them, so an edited kernel
  can never run stale machine code), or when ``STREAM_TAGGER_KERNELS=jit``.

Both release the GIL and run the same LLVM-compiled code (bit-identical outputs: ``tests/unit/test_aot.py``).
A kernel called from Python is declared with :func:`kernel`; one only other kernels call, with :func:`jit`.
Unlike numba's dispatcher, a built kernel does not check its arguments (another dtype or a strided view
is read as if it were the compiled type): the Python functions that call kernels pass arrays they made
themselves, or ``np.ascontiguousarray`` of the compiled dtype.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from stream_tagger.settings import KernelSettings

log = logging.getLogger(__name__)

# Where the built module lives (imported as ``stream_tagger.kernels._kernels_<digest>``).
PACKAGE_DIR = Path(__file__).parent
SOURCE_ROOT = PACKAGE_DIR.parent
# Every file whose content decides the compiled code: the kernels, and how they are compiled.
KERNEL_SOURCES = ("kernels/load.py", "kernels/build.py", "model/featurise.py", "online/duplicates.py")


def module_name() -> str:
    """``_kernels_<digest>``: the kernel sources and the numba, LLVM and numpy versions that compile them."""
    digest = hashlib.sha256()
    for name in KERNEL_SOURCES:
        digest.update((SOURCE_ROOT / name).read_bytes())
    for dist in ("numba", "llvmlite", "numpy"):
        digest.update(f"{dist}=={importlib.metadata.version(dist)}".encode())
    return f"_kernels_{digest.hexdigest()[:16]}"


def _load_built() -> ModuleType | None:
    if KernelSettings().kernels == "jit":
        return None
    name = module_name()
    try:
        return importlib.import_module(f"{__package__}.{name}")
    except ModuleNotFoundError:
        log.info("no compiled kernels for this source (%s; `stream-tagger compile`): numba JIT", name)
    except ImportError as exc:  # built, but not loadable here (another platform's build, a broken file)
        log.warning("compiled kernels %s not loadable (%s): numba JIT", name, exc)
    return None


BUILT: ModuleType | None = _load_built()
# Export name -> the kernel as numba dispatches it (JIT mode only): what ``aot.build`` compiles.
KERNELS: dict[str, Any] = {}


def describe() -> str:
    """For the worker's start-up log: which of the two the process runs."""
    return f"ahead of time ({BUILT.__name__})" if BUILT else "numba JIT (run `stream-tagger compile`)"


def export_name(fn: Callable) -> str:
    """Unique within the package: ``stream_tagger.model.featurise._pad`` -> ``model_features___pad``."""
    return f"{fn.__module__.removeprefix(__package__ + '.').replace('.', '_')}__{fn.__name__}"


def kernel(fn: Callable) -> Callable:
    """A kernel called from Python: the built module's function, else numba's."""
    _check_source(fn)
    if BUILT is not None:
        return getattr(BUILT, export_name(fn))
    KERNELS[export_name(fn)] = dispatcher = _njit(fn)
    return dispatcher


def jit(fn: Callable) -> Callable:
    """A kernel only other kernels call. With the built module nothing calls it: it stays plain Python."""
    _check_source(fn)
    return fn if BUILT is not None else _njit(fn)


_SOURCE_PATHS = frozenset((SOURCE_ROOT / name).resolve() for name in KERNEL_SOURCES)


def _check_source(fn: Callable) -> None:
    """A kernel outside ``KERNEL_SOURCES`` would not be part of the digest: an edit to it could run
    the machine code of an older version."""
    source = Path(inspect.getfile(fn)).resolve()
    if source not in _SOURCE_PATHS:
        raise RuntimeError(f"kernel {fn.__qualname__} is in {source}, not in compiled.KERNEL_SOURCES")


def _njit(fn: Callable) -> Callable:
    """Compiled, GIL-free, cached on disk when numba finds a writable place for the cache.

    A read-only install with an unwritable home (a container's non-root user without NUMBA_CACHE_DIR)
    has none: then each process compiles once (seconds) rather than failing at import."""
    import numba

    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(fn)
