#!/usr/bin/env bash
# Set up a fresh clone: a virtualenv in .venv with the package and its dev tools, Apache Kafka's jars
# for the integration tests (Maven, deploy/kafka), plus Prometheus (server + promtool, Debian package)
# for the observability tests when apt is available. Safe to run again: each step skips what is done.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# Exactly the locked versions (requirements/dev.lock: runtime, train, demo and dev extras; build.lock: what
# builds the package; scripts/lock.sh writes both), then the package itself without resolving anything
# again; installing it compiles the featuriser's kernels with the locked Cython (no build isolation, which
# would fetch the newest setuptools and Cython instead), which needs a C compiler.
.venv/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements/dev.lock
.venv/bin/python -m pip install --quiet --no-deps --require-hashes -r requirements/build.lock
# setuptools warns at every editable install that a folder named like the package could shadow it:
# here that folder is the package itself.
PYTHONWARNINGS="ignore:Editable installation:UserWarning" \
  .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e .
# A .venv made from older locks keeps packages these dropped: remove them, so the tests run on exactly
# what the locks list (and the venv's own pip).
.venv/bin/python - requirements/dev.lock requirements/build.lock <<'EOF' | xargs -r .venv/bin/python -m pip uninstall --quiet --yes
import re, sys
from importlib.metadata import distributions
def key(name): return re.sub(r"[-_.]+", "-", name).lower()
# A requirement line starts with the name (then ==, [extras], a marker); hashes and comments are indented.
locked = {key(m[0]) for lock in sys.argv[1:] for line in open(lock)
          if (m := re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", line))}
kept = locked | {"pip", "stream-tagger"}
names = {d.metadata["Name"] for d in distributions()} - {None}  # None: a half-removed dist-info
print("\n".join(sorted(name for name in names if key(name) not in kept)))
EOF

# Apache Kafka (KRaft) for the integration tests: the pinned broker's jars from Maven Central into
# deploy/kafka/target/libs, where stream_tagger/kafka/local_cluster.py starts brokers from. The stamp
# it reads is written only after Maven succeeded, so an interrupted copy is redone.
kafka_version=$(sed -n 's:.*<kafka\.version>\(.*\)</kafka\.version>.*:\1:p' deploy/kafka/pom.xml)
kafka_stamp=deploy/kafka/target/installed-version
missing_tools=""
for tool in mvn java; do command -v "$tool" >/dev/null || missing_tools="$missing_tools $tool"; done
if [ -n "$missing_tools" ] && [ "$(cat "$kafka_stamp" 2>/dev/null)" != "$kafka_version" ]; then
  # The demo runs on its embedded broker and needs neither; the integration tests and CI do.
  echo "bootstrap: WARNING:$missing_tools not found; Apache Kafka for the integration tests is not installed (Java 17+ and Maven)" >&2
  [ "${CI:-}" = true ] && exit 1
elif [ "$(cat "$kafka_stamp" 2>/dev/null)" != "$kafka_version" ]; then
  echo "bootstrap: installing Apache Kafka $kafka_version for the tests (Maven, deploy/kafka)" >&2
  mvn_log=$(mktemp)
  if ! mvn -B -q -Dstyle.color=never -f deploy/kafka/pom.xml clean package >"$mvn_log" 2>&1; then
    cat "$mvn_log" >&2
    rm -f "$mvn_log"
    echo "bootstrap: ERROR: Maven could not install Apache Kafka $kafka_version" >&2
    exit 1
  fi
  rm -f "$mvn_log"
  echo "$kafka_version" >"$kafka_stamp"
fi

if ! command -v promtool >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "bootstrap: installing Prometheus (Debian package) for the observability tests" >&2
    # The package starts a system service at install; the tests run their own servers. A policy-rc.d
    # that answers 101 ("action forbidden") keeps invoke-rc.d and deb-systemd-invoke from starting it.
    # One already there is the machine's and stays; one made here is removed again, even on failure.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
      trap 'rm -f "$policy"' EXIT
      printf '#!/bin/sh\nexit 101\n' >"$policy"
      chmod 755 "$policy"
    fi
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null) \
      || echo "bootstrap: WARNING: could not install prometheus; its tests will be skipped" >&2
  else
    echo "bootstrap: WARNING: promtool not found and apt-get unavailable; Prometheus tests will be skipped" >&2
  fi
fi
