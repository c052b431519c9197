"""``stream-tagger evaluate`` / ``train``: JSON keys other tools read, one-line errors, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from typer.testing import CliRunner

from stream_tagger.cli import app
from stream_tagger.settings import APPROVED_TAGS
from tests.conftest import DATASET, MODELS


def _said(expected: str, output: str) -> bool:
    """rich wraps long lines at the terminal width: compare without whitespace."""
    return "".join(expected.split()) in "".join(output.split())


def test_evaluate_writes_the_documented_json_keys(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        app, ["evaluate", "--data", str(DATASET), "--model", str(MODELS / "current"), "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    for path in (
        "weighted.f1",
        "weighted.precision",
        "auto_tag.precision",
        "auto_tag.coverage",
        "parity.label_agreement",
        "parity.max_prob_diff",
        "macro.f1",
        "baseline.weighted.f1",
    ):
        node = report
        for key in path.split("."):
            node = node[key]
        assert isinstance(node, float), path
    assert set(report["per_class"]) == set(APPROVED_TAGS)
    assert report["parity"]["label_agreement"] == 1.0 and report["parity"]["max_prob_diff"] < 1e-4
    assert {"short_text", "empty_description", "other_class_keywords"} <= set(report["slices"])
    assert sum(map(sum, report["confusion_matrix"]["matrix"])) == report["n"]


def test_evaluate_bad_csv_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,created_on,title,description,tag\n1,2020,t,d,robotics\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["evaluate", "--data", str(bad), "--model", str(MODELS / "current")])
    assert result.exit_code == 1
    assert _said("bad.csv:2: unknown tag 'robotics'", result.output)


def test_evaluate_missing_model_names_the_path(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["evaluate", "--data", str(DATASET), "--model", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert _said("none: no such model directory", result.output)


def test_train_bad_csv_exits_non_zero_and_writes_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,title,tag\n1,t,mlops\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["train", "--data", str(bad), "--out", str(tmp_path / "models")])
    assert result.exit_code == 1
    assert _said("bad.csv:1: missing column(s) created_on, description", result.output)
    assert not (tmp_path / "models").exists()


def test_evaluate_json_it_cannot_write_is_one_line_before_the_evaluation(tmp_path: Path) -> None:
    args = ["evaluate", "--data", str(DATASET), "--model", str(MODELS / "current"), "--json"]
    result = CliRunner().invoke(app, [*args, str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == f"error: cannot write {tmp_path}: Is a directory"


def test_evaluate_json_never_writes_over_its_data(tmp_path: Path) -> None:
    data = tmp_path / "labelled.csv"
    shutil.copy(DATASET, data)
    result = CliRunner().invoke(
        app, ["evaluate", "--data", str(data), "--model", str(MODELS / "current"), "--json", str(data)]
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == (
        f"error: --json {data} is the input file --data {data}: choose another output file"
    )
    assert data.read_bytes() == DATASET.read_bytes()


def test_evaluate_calls_precision_over_no_auto_tagged_post_undefined(tmp_path: Path) -> None:
    model = tmp_path / "timid"
    shutil.copytree(MODELS / (MODELS / "current").read_text().strip(), model)
    meta = json.loads((model / "metadata.json").read_text())
    meta["thresholds"] = dict.fromkeys(meta["thresholds"], 1.0)  # only a probability of exactly 1 passes
    (model / "metadata.json").write_text(json.dumps(meta))
    vague = tmp_path / "vague.csv"
    rows = [f"{i},2020-02-20 06:43:18,notes {i},,{tag}" for i, tag in enumerate(APPROVED_TAGS)]
    vague.write_text("\n".join(["id,created_on,title,description,tag", *rows]) + "\n", encoding="utf-8")
    result = CliRunner().invoke(app, ["evaluate", "--data", str(vague), "--model", str(model)])
    assert result.exit_code == 0, result.output
    assert _said("auto-tag: precision undefined at coverage 0.000 (0 posts)", result.output)


def test_evaluate_without_parity_never_reads_the_pickle(tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(MODELS / (MODELS / "current").read_text().strip(), model)
    (model / "pipeline.joblib").write_bytes(b"\x80\x05not a pickle")  # evaluate with parity fails on it
    out = tmp_path / "report.json"
    args = ["evaluate", "--data", str(DATASET), "--model", str(model), "--json", str(out)]
    result = CliRunner().invoke(app, [*args, "--no-parity"])
    assert result.exit_code == 0, result.output
    assert _said("parity (scikit-learn vs ONNX): not checked (--no-parity)", result.output)
    assert json.loads(out.read_text())["parity"] == {
        "available": False,
        "checked": False,
        "label_agreement": None,
        "max_prob_diff": None,
    }
    assert CliRunner().invoke(app, args).exit_code == 1
