"""Import the scripts under deploy/ by path: deploy/ is not a package, it is what an operator runs."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

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
