"""One log format for every logger: text lines or JSON lines, with the message's context where known."""

from __future__ import annotations

import json
import logging
import sys
import warnings
from collections.abc import Iterator

import pytest

from stream_tagger.logs import JsonFormatter, TextFormatter, configure_logging


def record(message: str = "feedback dead-lettered (%s)", *args: object, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord(
        "stream_tagger.online.feedback", logging.WARNING, __file__, 1, message, args or ("x",), None
    )
    made.__dict__.update(extra)
    return made


def test_text_lines_end_with_the_known_context() -> None:
    context = {"topic": "content.feedback.v1", "partition": 3, "offset": 42, "content_id": "a b"}
    line = TextFormatter().format(record(**context))
    assert line.endswith(
        " WARNING stream_tagger.online.feedback: feedback dead-lettered (x) "
        'topic="content.feedback.v1" partition=3 offset=42 content_id="a b"'
    )


def test_text_lines_without_context_are_the_plain_format() -> None:
    line = TextFormatter().format(record())
    assert line.endswith(" WARNING stream_tagger.online.feedback: feedback dead-lettered (x)")


def test_json_lines_carry_the_context_as_fields() -> None:
    entry = json.loads(JsonFormatter().format(record(topic="raw", partition=0, content_id="id-1")))
    assert entry.pop("time").endswith("+00:00")
    assert entry == {
        "level": "WARNING",
        "logger": "stream_tagger.online.feedback",
        "message": "feedback dead-lettered (x)",
        "topic": "raw",
        "partition": 0,
        "content_id": "id-1",
    }


def test_json_lines_hold_a_traceback_in_one_field() -> None:
    made = record()
    try:
        raise ValueError("boom")
    except ValueError:
        made.exc_info = sys.exc_info()
    line = JsonFormatter().format(made)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exception"]


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.captureWarnings(False)


@pytest.mark.usefixtures("restore_root")
def test_every_logger_and_warnings_go_through_the_one_json_handler(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logging.getLogger().addHandler(logging.StreamHandler())  # what a library might have left there
    configure_logging("INFO", "json")
    logging.getLogger("faust.worker").info("Signal received: %s", "SIGTERM")
    logging.getLogger("aiokafka.consumer").debug("below the level")
    logging.getLogger("stream_tagger.librdkafka").error("FAIL [rdkafka#producer-1] connection refused")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("deprecated thing", DeprecationWarning, stacklevel=1)
    lines = capsys.readouterr().err.splitlines()
    entries = [json.loads(line) for line in lines]
    assert [(e["logger"], e["level"]) for e in entries] == [
        ("faust.worker", "INFO"),
        ("stream_tagger.librdkafka", "ERROR"),
        ("py.warnings", "WARNING"),
    ]
    assert "deprecated thing" in entries[2]["message"]
