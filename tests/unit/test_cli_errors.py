"""Every CLI failure is one line naming what is wrong (address, path, file:line, variable, flag) and a
non-zero exit: 2 for settings that cannot be used, whatever the command."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
import typer
from typer.testing import CliRunner

from stream_tagger.cli import app
from stream_tagger.kafka.admin import BrokerRefused, BrokerWaitExpired, TopicsMismatch
from stream_tagger.kafka.embedded_broker import free_port
from stream_tagger.settings import Settings
from stream_tagger.tools.demo import DemoSummary
from stream_tagger.tools.produce import BrokerUnreachable
from stream_tagger.tools.tail import TopicMissing
from tests.conftest import DATASET

runner = CliRunner()

HEADER = "id,created_on,title,description,tag\n"


def flat(text: str) -> str:
    """Output without whitespace: rich wraps long lines, and a path or address must match whole."""
    return "".join(text.split())


@pytest.mark.timeout(10)  # a clear message within 10 s, not a hang
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


# --- settings: one line naming the variable or flag, exit 2, for every command ---

# The least each command needs on its command line to get as far as reading its settings.
ARGUMENTS = {
    "compare": ["--model", "m", "--baseline", "b", "--data", "d.csv"],
    "evaluate": ["--data", "d.csv"],
    "export-feedback": ["--out", "out.csv"],
    "predict": ["--file", "posts.csv"],
    "produce": ["--file", "posts.csv"],
    "promote": ["v1"],
    "train": ["--data", "d.csv"],
}
COMMANDS = sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_an_unknown_variable(command: str) -> None:
    result = runner.invoke(
        app, [command, *ARGUMENTS.get(command, [])], env={"STREAM_TAGGER_BOOTSTRAP_SERVER": "kafka:9092"}
    )
    assert result.exit_code == 2, result.output
    assert one_line(result.stderr) == (
        "error: STREAM_TAGGER_BOOTSTRAP_SERVER: not a setting "
        "(did you mean STREAM_TAGGER_BOOTSTRAP_SERVERS?); see `stream-tagger config` for every one"
    )
    assert result.stdout == ""


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_refuses_a_bad_value(command: str) -> None:
    result = runner.invoke(app, [command, *ARGUMENTS.get(command, [])], env={"STREAM_TAGGER_WEB_PORT": "abc"})
    assert result.exit_code == 2, result.output
    assert one_line(result.stderr) == (
        "error: STREAM_TAGGER_WEB_PORT='abc': Input should be a valid "
        "integer, unable to parse string as an integer"
    )


def test_a_bad_flag_value_is_named_by_its_flag() -> None:
    result = runner.invoke(app, ["worker", "--batch-size", "0"])
    assert result.exit_code == 2
    assert one_line(result.stderr) == "error: --batch-size=0: Input should be greater than or equal to 1"


def test_help_works_whatever_the_environment() -> None:
    result = runner.invoke(app, ["worker", "--help"], env={"STREAM_TAGGER_THRESHOLD": "abc"})
    assert result.exit_code == 0 and "Usage" in result.output


def test_an_error_is_not_wrapped_when_stderr_is_not_a_terminal() -> None:
    variable = "STREAM_TAGGER_" + "VERY_LONG_NAME_" * 8
    result = runner.invoke(app, ["config"], env={variable: "1"})
    assert result.exit_code == 2
    assert one_line(result.stderr).startswith(f"error: {variable}: not a setting")


def test_config_prints_the_settings_in_force_with_secrets_masked(tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("hunter2\n")
    env = {
        "STREAM_TAGGER_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "STREAM_TAGGER_SASL_MECHANISM": "PLAIN",
        "STREAM_TAGGER_SASL_USERNAME": "tagger",
        "STREAM_TAGGER_SASL_PASSWORD_FILE": str(secret),
    }
    result = runner.invoke(app, ["config"], env=env)
    assert result.exit_code == 0, result.output
    assert "hunter2" not in result.output
    lines = result.stdout.splitlines()
    assert "STREAM_TAGGER_SASL_PASSWORD=**********" in lines
    assert "STREAM_TAGGER_BOOTSTRAP_SERVERS=127.0.0.1:19092" in lines
    assert len(lines) == len(Settings.model_fields)
    changed = runner.invoke(app, ["config", "--changed"], env=env).stdout.splitlines()
    assert changed == [
        "STREAM_TAGGER_SECURITY_PROTOCOL=SASL_PLAINTEXT",
        "STREAM_TAGGER_SASL_MECHANISM=PLAIN",
        "STREAM_TAGGER_SASL_USERNAME=tagger",
        "STREAM_TAGGER_SASL_PASSWORD=**********",
        f"STREAM_TAGGER_SASL_PASSWORD_FILE={secret}",
    ]


def test_configs_output_reads_back_as_the_same_settings() -> None:
    env = {"STREAM_TAGGER_MIN_INSYNC_REPLICAS": "", "STREAM_TAGGER_KAFKA_EXTRA": '{"client.rack": "a"}'}
    printed = runner.invoke(app, ["config"], env=env)
    assert printed.exit_code == 0, printed.output
    assert "STREAM_TAGGER_MIN_INSYNC_REPLICAS=" in printed.stdout.splitlines()  # unset: the broker's
    fed_back = dict(line.split("=", 1) for line in printed.stdout.splitlines())
    again = runner.invoke(app, ["config"], env=fed_back)
    assert again.exit_code == 0, again.output
    assert again.stdout == printed.stdout


@pytest.mark.parametrize(
    "properties",
    [
        '{"ssl.keystore.password": "hunter2"}',
        '{"sasl.oauthbearer.assertion.private.key.passphrase": "hunter2"}',
        '{"compression.type": "hunter2"}',
    ],
)
def test_config_never_shows_a_pass_through_value_it_refuses(properties: str) -> None:
    result = runner.invoke(app, ["config"], env={"STREAM_TAGGER_KAFKA_PRODUCER_EXTRA": properties})
    assert result.exit_code == 2
    assert one_line(result.stderr).startswith("error: STREAM_TAGGER_KAFKA_PRODUCER_EXTRA: ")
    assert "hunter2" not in result.output


@pytest.mark.parametrize("key", ["delivery.report.only.error", "error_cb", "stats_cb"])
def test_confluent_kafkas_own_properties_in_the_pass_through_are_one_line(key: str) -> None:
    result = runner.invoke(app, ["config"], env={"STREAM_TAGGER_KAFKA_PRODUCER_EXTRA": f'{{"{key}": false}}'})
    assert result.exit_code == 2
    assert one_line(result.stderr) == (
        f"error: STREAM_TAGGER_KAFKA_PRODUCER_EXTRA: {key} is confluent-kafka's own property, which the "
        "package sets"
    )


def test_broker_with_an_address_it_cannot_read_is_one_line() -> None:
    result = runner.invoke(app, ["broker"], env={"STREAM_TAGGER_BOOTSTRAP_SERVERS": "kafka:port"})
    assert result.exit_code == 2
    assert one_line(result.stderr) == (
        "error: STREAM_TAGGER_BOOTSTRAP_SERVERS='kafka:port': kafka:port is not host or host:port; give "
        "such entries, comma-separated"
    )


# --- busy ports ---


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


@pytest.mark.parametrize("command", ["worker", "feedback-worker"])
def test_a_busy_web_port_is_one_line_before_anything_starts(command: str, busy_port: int) -> None:
    result = runner.invoke(
        app, [command, "--web-port", str(busy_port)], env={"STREAM_TAGGER_WEB_HOST": "127.0.0.1"}
    )
    assert result.exit_code == 1
    assert one_line(result.stderr) == (
        f"error: cannot serve /metrics, /healthz and /ready on 127.0.0.1:{busy_port} "
        "(Address already in use); set another with --web-port or STREAM_TAGGER_WEB_PORT"
    )


def test_broker_on_a_busy_port_fails_instead_of_saying_it_listens(busy_port: int) -> None:
    result = runner.invoke(app, ["broker", "--port", str(busy_port)])
    assert result.exit_code == 1
    assert one_line(result.stderr) == (
        f"error: embedded broker cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    )
    assert "listening" not in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["worker", "--web-port", "abc"],
            "error: Invalid value for '--web-port': Input should be a valid "
            "integer, unable to parse string as an integer "
            "(see `stream-tagger worker --help`)",
        ),
        (["tale"], "error: No such command 'tale'. Did you mean 'tail'? (see `stream-tagger --help`)"),
        (["produce"], "error: Missing option '--file' / '-f'. (see `stream-tagger produce --help`)"),
    ],
)
def test_a_command_line_typer_cannot_parse_is_one_line_too(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert one_line(result.stderr) == expected


@pytest.mark.parametrize(
    ("command", "module"),
    [
        (["evaluate", "--data", "d.csv"], "stream_tagger.model.evaluate"),
        (["train", "--data", "d.csv"], "stream_tagger.model.train"),
        (
            ["compare", "--model", "a", "--baseline", "b", "--data", "d.csv"],
            "stream_tagger.online.promotion_gate",
        ),
    ],
)
def test_a_command_that_needs_the_train_extra_says_so_in_one_line_without_it(
    command: list[str], module: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # what importing it does in a worker's install
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 1
    assert result.output.count("\n") == 1 and "needs the train extra" in result.output


# --- a command never writes over its input, and finds out before the work that it cannot write ---


def test_predict_refuses_to_write_over_its_input(tmp_path: Path) -> None:
    posts = tmp_path / "posts.csv"
    posts.write_text(HEADER + "1,2020-02-20 06:43:18,A post,about models,mlops\n")
    before = posts.read_bytes()
    (tmp_path / "symlink.csv").symlink_to(posts)
    os.link(posts, tmp_path / "hardlink.csv")
    for out in (posts, tmp_path / "symlink.csv", tmp_path / "hardlink.csv", tmp_path / "." / "posts.csv"):
        result = runner.invoke(app, ["predict", "--file", str(posts), "--out", str(out)])
        assert result.exit_code == 1, out
        assert one_line(result.stderr) == (
            f"error: --out {out} is the input file --file {posts}: choose another output file"
        )
        assert posts.read_bytes() == before, out


def test_predict_to_an_unwritable_path_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["predict", "--file", str(DATASET), "--out", str(tmp_path)])
    assert result.exit_code == 1
    assert one_line(result.stderr) == f"error: cannot write {tmp_path}: Is a directory"


def _demo_must_not_start(*_args: object, **_kwargs: object) -> NoReturn:
    raise AssertionError("the demo started")


@pytest.mark.parametrize("where", ["directory", "missing folder", "the input"])
def test_demo_summary_json_it_cannot_write_is_one_line_before_the_demo(
    where: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("stream_tagger.cli.tools.run_demo", _demo_must_not_start)
    data = tmp_path / "posts.csv"
    shutil.copy(DATASET, data)
    path, said = {
        "directory": (tmp_path, f"cannot write {tmp_path}: Is a directory"),
        "missing folder": (
            tmp_path / "no" / "summary.json",
            f"cannot write {tmp_path / 'no' / 'summary.json'}: No such file or directory",
        ),
        "the input": (
            data,
            f"--summary-json {data} is the input file --data {data}: choose another output file",
        ),
    }[where]
    result = runner.invoke(
        app, ["demo", "--events", "20", "--rate", "0", "--data", str(data), "--summary-json", str(path)]
    )
    assert result.exit_code == 1, result.output
    assert one_line(result.stderr) == f"error: {said}"
    assert data.read_bytes() == DATASET.read_bytes()


def test_demo_summary_json_that_fails_after_the_demo_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "summary.json"

    def run_demo(*_args: object, **_kwargs: object) -> DemoSummary:
        path.mkdir()  # the file could be written when the demo started, not when it ends
        counts = dict.fromkeys(DemoSummary.__struct_fields__, 0)
        return DemoSummary(**{**counts, "bootstrap_servers": "", "metrics_url": ""})

    monkeypatch.setattr("stream_tagger.cli.tools.run_demo", run_demo)
    result = runner.invoke(app, ["demo", "--events", "20", "--summary-json", str(path)])
    assert result.exit_code == 1, result.output
    assert one_line(result.stderr) == f"error: cannot write {path}: Is a directory"


@pytest.mark.parametrize(
    "error",
    [
        BrokerRefused("the Kafka broker at 127.0.0.1:1 refused this client: SSL handshake failed"),
        BrokerWaitExpired("no Kafka broker answered at 127.0.0.1:1 within 3s"),
        TopicsMismatch("topic tagged has 1 partitions, but STREAM_TAGGER_PARTITIONS is 3"),
        BrokerUnreachable("no Kafka broker answered at 127.0.0.1:1 within 5s"),
        TopicMissing("topic tagged does not exist at 127.0.0.1:1"),
    ],
    ids=type,
)
def test_a_broker_error_in_the_demo_is_one_line(error: Exception, monkeypatch: pytest.MonkeyPatch) -> None:
    def run_demo(*_args: object, **_kwargs: object) -> NoReturn:
        raise error

    monkeypatch.setattr("stream_tagger.cli.tools.run_demo", run_demo)
    result = runner.invoke(app, ["demo", "--events", "20"])
    assert result.exit_code == 1, result.output
    assert one_line(result.stderr) == f"error: {error}"
