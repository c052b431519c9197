"""The package's C extensions: the featuriser's and duplicate check's kernels (``stream_tagger/kernels/``).

Everything else is in pyproject.toml. ``pip install .`` and ``pip install -e .`` build them (a C
compiler is needed then, not at run time), with the Cython of requirements/build.lock when given
``--no-build-isolation`` as bootstrap does; after editing a ``.pyx``, run
``pip install --no-deps --no-build-isolation -e .`` again.
"""

from Cython.Build import cythonize
from setuptools import Extension, setup

# -ffp-contract=off: no fused multiply-add on CPUs that have one, so the float features are the same
# bit for bit on every machine (tests/unit/test_kernel_outputs.py); no -ffast-math, for the same reason.
FLAGS = ["-O3", "-ffp-contract=off"]
KERNELS = ("featurise", "duplicates")

setup(
    ext_modules=cythonize(
        [
            Extension(
                f"stream_tagger.kernels.{name}",
                [f"stream_tagger/kernels/{name}.pyx"],
                extra_compile_args=FLAGS,
            )
            for name in KERNELS
        ]
    )
)
