"""Every CLI failure is one line naming what is wrong (address, path, file:line) and a non-zero exit."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from stream_tagger.broker import free_port
from stream_tagger.cli import app
from tests.conftest import DATASET

runner = CliRunner()

HEADER = "id,created_on,title,description,tag\n"


def flat(text: str) -> str:
    """Output without whitespace: rich wraps long lines, and a path or address must match whole."""
    return "".join(text.split())


@pytest.mark.timeout(10)  # the bound: a message within 10 s, not a hang
def test_produce_without_broker_names_the_address(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["produce", "--file", str(DATASET), "--bootstrap-servers", address])
    assert result.exit_code == 1
    assert f"noKafkabrokeransweredat{address}" in flat(result.output)


@pytest.mark.timeout(10)
def test_tail_without_broker_names_the_address() -> None:
    address = f"127.0.0.1:{free_port()}"
    result = runner.invoke(app, ["tail", "--bootstrap-servers", address, "--max", "1"])
    assert result.exit_code == 1
    assert address in flat(result.output)


def test_produce_reports_bad_rows_by_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_text(HEADER + "1,2020-02-20 06:43:18,Good,desc,mlops\n" + "2,yesterday,Bad date,desc,mlops\n")
    result = runner.invoke(app, ["produce", "--file", str(path), "--check"])
    assert result.exit_code == 1
    assert flat(f"{path}:3: Invalid RFC3339 encoded datetime - at `$.created_on`") in flat(result.output)
    assert "1valid,1bad" in flat(result.output)


def test_produce_check_passes_a_clean_file() -> None:
    result = runner.invoke(app, ["produce", "--file", str(DATASET), "--check"])
    assert result.exit_code == 0, result.output
    assert "764valid,0bad" in flat(result.output)


def test_unreadable_file_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "posts.csv"
    path.write_bytes(HEADER.encode() + b"1,2020-02-20 06:43:18,\xff,desc,mlops\n")
    for command in (["produce", "--check"], ["predict"]):
        result = runner.invoke(app, [*command, "--file", str(path)])
        assert result.exit_code == 1, command
        assert f"{path}:2:notUTF-8" in flat(result.output), command


def test_missing_file_is_named(tmp_path: Path) -> None:
    result = runner.invoke(app, ["produce", "--file", str(tmp_path / "nope.jsonl"), "--check"])
    assert result.exit_code == 1
    assert f"{tmp_path / 'nope.jsonl'}:nosuchfile" in flat(result.output)


def test_predict_with_missing_model_names_the_path(tmp_path: Path) -> None:
    model = tmp_path / "models" / "current"
    result = runner.invoke(app, ["predict", "--file", str(DATASET), "--model", str(model)])
    assert result.exit_code == 1
    assert flat(f"cannot load the model: {model}") in flat(result.output)


def test_demo_with_missing_model_names_the_path_before_starting_anything(tmp_path: Path) -> None:
    model = tmp_path / "no-model"
    result = runner.invoke(app, ["demo", "--events", "10"], env={"STREAM_TAGGER_MODEL_DIR": str(model)})
    assert result.exit_code == 1
    assert flat(f"cannot load the model: {model}: no such model directory") in flat(result.output)
    assert "broker on" not in result.output


def test_every_command_help_has_an_example() -> None:
    for command in ("broker", "produce", "tail", "predict", "demo"):
        result = runner.invoke(app, [command, "--help"])
        assert result.exit_code == 0, command
        assert f"Example:stream-tagger{command}" in flat(result.output), command
