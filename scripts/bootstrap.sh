#!/usr/bin/env bash
# Set up a fresh clone: a virtualenv in .venv with the package and its dev tools, plus Prometheus
# (server + promtool, Debian package) for the observability tests when apt is available.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[dev,train]'
# The featuriser's kernels built ahead of time: workers then run without numba (~120 MB less each).
.venv/bin/stream-tagger compile >/dev/null
if ! command -v promtool >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Prometheus (Debian package) for the observability tests" >&2
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
      || echo "bootstrap: WARNING: could not install prometheus; its tests will be skipped" >&2
    # The package starts a system service we do not want: the tests run their own server.
    (command -v systemctl >/dev/null && systemctl stop prometheus 2>/dev/null) || true
    pkill -x prometheus 2>/dev/null || true
  else
    echo "bootstrap: WARNING: promtool not found and apt-get unavailable; Prometheus tests will be skipped" >&2
  fi
fi
