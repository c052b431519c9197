"""The compiled kernels: the featuriser's (``featurise.pyx``) and the duplicate check's
(``duplicates.pyx``), C extensions written in Cython and built by the package's own build (``setup.py``):
``pip install`` and ``pip install -e`` compile them, and a worker imports them like any module.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

REBUILD = "./scripts/bootstrap.sh, or .venv/bin/python -m pip install --no-deps --no-build-isolation -e ."


def check_source(built: str, source_sha256: str) -> None:
    """Refuse a kernel whose ``.pyx`` beside it is not the one it was compiled from.

    Each kernel calls this as it is imported, with its file and the digest its build recorded. In a
    checkout, an edited ``.pyx`` whose extension was not rebuilt would otherwise run, and pass tests,
    as the old code. An installed wheel ships no ``.pyx`` and is never checked."""
    module = Path(built)
    pyx = module.with_name(module.name.split(".", 1)[0] + ".pyx")
    if pyx.is_file() and hashlib.sha256(pyx.read_bytes()).hexdigest() != source_sha256:
        raise ImportError(f"{pyx}: differs from the source {module.name} was built from; rebuild: {REBUILD}")
