"""The package's C extensions: the featuriser's and duplicate check's kernels (``stream_tagger/kernels/``).

Everything else is in pyproject.toml. ``pip install .`` and ``pip install -e .`` build them (a C
compiler is needed then, not at run time), with the Cython of requirements/build.lock when given
``--no-build-isolation`` as bootstrap does; after editing a ``.pyx``, run
``pip install --no-deps --no-build-isolation -e .`` again.
"""

import hashlib
from pathlib import Path

from Cython.Build import cythonize
from setuptools import Extension, setup

# -ffp-contract=off: no fused multiply-add on CPUs that have one, so the float features are the same
# bit for bit on every machine (tests/unit/test_kernel_outputs.py); no -ffast-math, for the same reason.
FLAGS = ["-O3", "-ffp-contract=off"]
KERNELS = ("featurise", "duplicates")


def _source_digest(pyx: str) -> tuple[str, str]:
    """The macro a kernel reads as its ``SOURCE_SHA256``: at import it refuses to run when the ``.pyx``
    beside it differs from the one this build hashed (``stream_tagger.kernels.check_source``)."""
    return "KERNEL_SOURCE_SHA256", '"' + hashlib.sha256(Path(pyx).read_bytes()).hexdigest() + '"'


setup(
    # force: the C is regenerated from the .pyx every build. Cython otherwise skips a .pyx whose file time
    # is older than a leftover .c (a copy that kept times), compiling old code under the new digest.
    ext_modules=cythonize(
        [
            Extension(
                f"stream_tagger.kernels.{name}",
                [f"stream_tagger/kernels/{name}.pyx"],
                extra_compile_args=FLAGS,
                define_macros=[_source_digest(f"stream_tagger/kernels/{name}.pyx")],
            )
            for name in KERNELS
        ],
        force=True,
    )
)
