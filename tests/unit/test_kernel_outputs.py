"""The compiled kernels' outputs on the dataset and nasty texts, bit for bit as recorded in
``kernel_outputs.json`` (see ``kernel_outputs.py``): the features a model was trained on cannot drift."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from tests.conftest import REPO
from tests.unit.kernel_outputs import DIGESTS, digest

SCRIPT = Path(__file__).with_name("kernel_outputs.py")


def test_kernel_outputs_are_the_recorded_ones_bit_for_bit(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONHASHSEED": "0", "PYTHONPATH": str(REPO)}
    subprocess.run([sys.executable, SCRIPT, "out.npz"], env=env, cwd=tmp_path, check=True)
    arrays = np.load(tmp_path / "out.npz")
    recorded = json.loads(DIGESTS.read_text(encoding="utf-8"))
    assert sorted(arrays.files) == sorted(recorded)
    for name in recorded:
        assert digest(arrays[name]) == recorded[name], name
    assert arrays["cols"].size > 100_000 and (arrays["keys"] != -1).sum() > 700  # real work was compared
    assert (np.abs(arrays["embedding"]).sum(axis=1) > 0).sum() > 760
