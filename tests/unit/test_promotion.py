"""The promotion gate and ``stream-tagger compare``: worse on weighted F1 or auto-tag precision, or
auto-tag coverage more than 0.05 below, fails."""

from __future__ import annotations

import copy
import errno
import json
import shutil
import tempfile
from pathlib import Path
from typing import NoReturn

import joblib
import pytest
from typer.testing import CliRunner

from stream_tagger.cli import app
from stream_tagger.model.predictor import Predictor
from stream_tagger.online.promotion_gate import compare_reports
from tests.conftest import DATASET
from tests.integration.online_helpers import models_root, relabelled_copy

LABELS = ["computer-vision", "mlops", "natural-language-processing", "other"]


def report(version: str, f1: float, precision: float, coverage: float, n_auto: int = 100) -> dict:
    per_class = {label: {"f1": f1} for label in LABELS}
    return {
        "model": {"version": version},
        "weighted": {"f1": f1, "precision": f1, "recall": f1},
        "macro": {"f1": f1},
        "accuracy": f1,
        "auto_tag": {"precision": precision, "coverage": coverage, "n_auto": n_auto},
        "per_class": per_class,
        "confusion_matrix": {"labels": LABELS},
    }


def test_better_coverage_does_not_buy_back_precision() -> None:
    baseline = report("v1", 0.90, 0.97, 0.50)
    assert compare_reports(report("v2", 0.91, 0.97, 0.46), baseline).passed
    worse = compare_reports(report("v2", 0.95, 0.96, 0.90), baseline)
    assert [row.name for row in worse.failures] == ["auto-tag precision"]
    tie = copy.deepcopy(baseline)
    tie["model"]["version"] = "v2"
    assert compare_reports(tie, baseline).passed
    assert not compare_reports(report("v2", float("nan"), 0.97, 0.50), baseline).passed


def test_a_candidate_that_auto_tags_nothing_fails_on_precision_and_coverage() -> None:
    baseline = report("v1", 0.90, 0.97, 0.546)
    # Precision over no post is undefined, not perfect: quality_figures reports 1.0 with n_auto 0.
    result = compare_reports(report("v2", 0.90, 1.0, 0.0, n_auto=0), baseline)
    assert [row.name for row in result.failures] == [
        "auto-tag precision (undefined: no post auto-tagged by the new model)",
        "auto-tag coverage (at most 0.05 below)",
    ]
    assert result.rows[1].new != result.rows[1].new  # NaN, shown as nan beside the baseline's


@pytest.mark.parametrize(
    ("baseline", "coverage", "passed"),
    [(0.50, 0.50, True), (0.50, 0.451, True), (0.50, 0.449, False), (0.50, 0.0, False), (0.20, 0.15, True)],
)
def test_coverage_may_fall_at_most_five_points_below_the_baseline(
    baseline: float, coverage: float, passed: bool
) -> None:
    result = compare_reports(report("v2", 0.90, 0.97, coverage), report("v1", 0.90, 0.97, baseline))
    assert result.passed is passed


def test_a_serving_model_that_auto_tags_nothing_can_be_replaced_by_one_that_does() -> None:
    result = compare_reports(report("v2", 0.95, 0.97, 0.60), report("v1", 0.90, 1.0, 0.0, n_auto=0))
    assert result.passed, [row.name for row in result.failures]
    assert result.rows[1].name == "auto-tag precision (undefined: no post auto-tagged by the baseline)"


def _said(expected: str, output: str) -> bool:
    return "".join(expected.split()) in "".join(output.split())


def test_compare_exits_1_when_the_candidate_is_worse(tmp_path: Path) -> None:
    root, live = models_root(tmp_path)
    broken = relabelled_copy(root, live, "broken", ("computer-vision", "natural-language-processing"))
    args = ["compare", "--data", str(DATASET), "--baseline", str(root / live)]
    same = CliRunner().invoke(app, [*args, "--model", str(root / live)])
    assert same.exit_code == 0, same.output
    assert _said(f"pass: {live} may replace {live}", same.output)
    worse = CliRunner().invoke(app, [*args, "--model", str(broken)])
    assert worse.exit_code == 1, worse.output
    assert _said("new model is worse on weighted F1, auto-tag precision; do not promote", worse.output)


def test_promote_refuses_a_candidate_that_auto_tags_almost_nothing(tmp_path: Path) -> None:
    root, live = models_root(tmp_path)
    shutil.copytree(root / live, root / "timid")
    meta = json.loads((root / "timid" / "metadata.json").read_text())
    meta["thresholds"] = dict.fromkeys(meta["thresholds"], 1.0)  # same top tag, almost none shown
    (root / "timid" / "metadata.json").write_text(json.dumps(meta))
    result = CliRunner().invoke(app, ["promote", "timid", "--models", str(root), "--data", str(DATASET)])
    assert result.exit_code == 1, result.output
    assert _said(f"timid is worse than {live} on auto-tag coverage (at most 0.05 below)", result.output)
    assert (root / "current").read_text().strip() == live


def test_compare_names_a_missing_model(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        [
            "compare",
            "--data",
            str(DATASET),
            "--baseline",
            str(tmp_path / "nope"),
            "--model",
            str(tmp_path / "nope"),
        ],
    )
    assert result.exit_code == 1
    assert _said("nope: no such model directory", result.output)


def test_promote_moves_the_pointer_only_past_the_gate(tmp_path: Path) -> None:
    root, live = models_root(tmp_path)
    relabelled_copy(root, live, "broken", ("computer-vision", "natural-language-processing"))
    relabelled_copy(root, live, "same", ("mlops", "mlops"))
    refused = CliRunner().invoke(app, ["promote", "broken", "--models", str(root), "--data", str(DATASET)])
    assert refused.exit_code == 1
    assert _said(f"broken is worse than {live}", refused.output)
    assert (root / "current").read_text().strip() == live
    done = CliRunner().invoke(app, ["promote", "same", "--models", str(root), "--data", str(DATASET)])
    assert done.exit_code == 0, done.output
    assert (root / "current").read_text().strip() == "same"
    missing = CliRunner().invoke(app, ["promote", "nowhere", "--models", str(root)])
    assert missing.exit_code == 1
    assert _said("nowhere: not a model folder", missing.output)


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("v3/", "'v3/': not a version folder name"),
        ("../elsewhere", "'../elsewhere': not a version folder name"),
        ("no-vocabulary", "vocabulary.npy: missing"),
    ],
)
def test_promote_refuses_what_a_worker_would_refuse_and_leaves_the_pointer(
    tmp_path: Path, name: str, said: str
) -> None:
    root, live = models_root(tmp_path)
    shutil.copytree(root / live, tmp_path / "elsewhere")
    shutil.copytree(root / live, root / "v3")
    shutil.copytree(root / live, root / "no-vocabulary")
    (root / "no-vocabulary" / "vocabulary.npy").unlink()
    result = CliRunner().invoke(app, ["promote", name, "--models", str(root)])
    assert result.exit_code == 1
    assert _said(said, result.output) and len(result.output.strip().splitlines()) == 1
    assert (root / "current").read_text().strip() == live


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("current", "'current': the pointer itself, not a version folder"),
        (".v3.k2j4x", "'.v3.k2j4x': a hidden folder (training stages versions there), not a version folder"),
    ],
)
def test_promote_refuses_the_pointer_and_hidden_folders_even_when_they_hold_a_model(
    tmp_path: Path, name: str, said: str
) -> None:
    root, live = models_root(tmp_path)
    (root / "current").unlink()
    (root / "current").symlink_to(live)  # `ln -sfn VERSION models/current`: workers serve it alike
    shutil.copytree(root / live, root / ".v3.k2j4x")  # what a training run stages before its rename
    result = CliRunner().invoke(app, ["promote", name, "--models", str(root)])
    assert result.exit_code == 1
    assert _said(said, result.output) and len(result.output.strip().splitlines()) == 1
    assert (root / "current").resolve() == (root / live).resolve()
    assert Predictor.load(root / "current").version == live


def _one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1, output
    return lines[0]


def test_promote_by_a_user_who_may_not_write_the_models_folder_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, live = models_root(tmp_path)
    shutil.copytree(root / live, root / "candidate")

    def mkstemp(prefix: str = "", dir: str | Path | None = None, **_kwargs: object) -> NoReturn:
        # What a folder without write permission answers (tests may run as root, who may write anyway).
        raise PermissionError(errno.EACCES, "Permission denied", f"{dir}/{prefix}x1y2z3")

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    result = CliRunner().invoke(app, ["promote", "candidate", "--models", str(root)])
    assert result.exit_code == 1, result.output
    assert _one_line(result.stderr) == (
        f"error: cannot point {root / 'current'} at candidate: {root}/.current.x1y2z3: Permission denied"
    )
    assert (root / "current").read_text().strip() == live


class _RunsOnLoad:
    """Unpickled, it creates ``marker``: what any code in a pickle could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[Path]]:
        return Path.touch, (self.marker,)


def test_compare_and_promote_never_unpickle_the_candidate(tmp_path: Path) -> None:
    root, live = models_root(tmp_path)
    shutil.copytree(root / live, root / "candidate")
    marker = tmp_path / "code-ran"
    joblib.dump(_RunsOnLoad(marker), root / "candidate" / "pipeline.joblib")
    compare = ["compare", "--model", str(root / "candidate"), "--baseline", str(root / live)]
    result = CliRunner().invoke(app, [*compare, "--data", str(DATASET)])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(app, ["promote", "candidate", "--models", str(root), "--data", str(DATASET)])
    assert result.exit_code == 0, result.output
    assert (root / "current").read_text().strip() == "candidate"
    assert not marker.exists()


@pytest.mark.parametrize("damage", ["truncated", "empty"])
def test_evaluate_names_a_damaged_pipeline_in_one_line(damage: str, tmp_path: Path) -> None:
    root, live = models_root(tmp_path)
    pipeline = root / live / "pipeline.joblib"
    pipeline.write_bytes(pipeline.read_bytes()[:100] if damage == "truncated" else b"")
    result = CliRunner().invoke(app, ["evaluate", "--model", str(root / live), "--data", str(DATASET)])
    assert result.exit_code == 1
    line = _one_line(result.stderr)
    assert line.startswith(f"error: {pipeline}: cannot load the scikit-learn pipeline ("), line
