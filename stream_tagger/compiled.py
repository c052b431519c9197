"""numba's ``njit`` as every kernel of the package wants it (the featuriser's, the duplicate check's)."""

from __future__ import annotations

from collections.abc import Callable

import numba


def jit(fn: Callable) -> Callable:
    """Compiled, GIL-free, cached on disk when numba finds a writable place for the cache.

    A read-only install with an unwritable home (a container's non-root user without NUMBA_CACHE_DIR)
    has none: then each process compiles once (seconds) rather than failing at import."""
    try:
        return numba.njit(cache=True, nogil=True)(fn)
    except RuntimeError:  # numba: "cannot cache function ...: no locator available"
        return numba.njit(nogil=True)(fn)
