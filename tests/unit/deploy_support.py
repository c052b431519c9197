"""Support for the tests of deploy/: load its scripts, find the Prometheus tools.

deploy/ is not a package (it is what an operator runs), so its scripts are imported by path.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def load_script(relative: str) -> ModuleType:
    """Load ``deploy/<relative>`` as a module (registered in sys.modules, as dataclasses need)."""
    path = DEPLOY / relative
    name = f"deploy_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def require_tool(name: str) -> str:
    """Path of a Prometheus binary; skips loudly without it, but fails under CI, which must have it."""
    path = shutil.which(name)
    if path:
        return path
    reason = (
        f"!!! {name} NOT FOUND: the Prometheus config, rules or scrape are NOT being checked. "
        "Install the Debian package `prometheus` (scripts/bootstrap.sh does it when apt is available). !!!"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)
