#!/usr/bin/env bash
# Regenerate the lock files from pyproject.toml's ranges (after changing a dependency):
#   requirements/dev.lock      everything bootstrap and CI install (runtime + train + demo + dev)
#   requirements/runtime.lock  what the image installs (the worker's runtime set), at the same versions
#   requirements/build.lock    what builds the package (pyproject.toml's build-system: setuptools, Cython,
#                              wheel), at dev.lock's versions where they share a package
# All are installed with `pip install --no-deps --require-hashes -r`: exactly these packages and files
# (sha256 of every wheel and sdist), nothing resolved again.
set -euo pipefail
cd "$(dirname "$0")/.."
UV=${UV:-uv}
command -v "$UV" >/dev/null || { echo "lock.sh: needs uv (pip install uv)" >&2; exit 2; }
common=(--quiet --generate-hashes --python-version 3.11 --python-platform x86_64-unknown-linux-gnu --override requirements/overrides.txt)
"$UV" pip compile "${common[@]}" pyproject.toml --extra train --extra demo --extra dev -o requirements/dev.lock
"$UV" pip compile "${common[@]}" pyproject.toml --constraint requirements/dev.lock -o requirements/runtime.lock
"${PYTHON:-.venv/bin/python}" -c 'import sys, tomllib; print("\n".join(tomllib.load(sys.stdin.buffer)["build-system"]["requires"]))' \
  <pyproject.toml | "$UV" pip compile "${common[@]}" - --constraint requirements/dev.lock -o requirements/build.lock
