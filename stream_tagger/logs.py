"""One log format for everything a long-running process logs: ours, Faust's and mode's, aiokafka's, and
librdkafka's (its clients log through ``stream_tagger.librdkafka``).

All of them go to the root logger's one handler on stderr, as text lines or, with
``STREAM_TAGGER_LOG_FORMAT=json``, as one JSON object per line. A record that concerns a message says
which one: ``extra={"topic": ..., "partition": ..., "offset": ..., "content_id": ...}`` (those known)
become fields of the JSON object, or ``key=value`` pairs at the end of the text line.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

#: The ``extra`` fields a record may carry about the message it concerns, in the order they are shown.
CONTEXT = ("topic", "partition", "offset", "content_id")

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def _context(record: logging.LogRecord) -> dict[str, Any]:
    return {name: value for name in CONTEXT if (value := getattr(record, name, None)) is not None}


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``, then the traceback if any."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        line = super().formatMessage(record)
        context = _context(record)
        if context:
            line += " " + " ".join(f"{name}={json.dumps(value)}" for name, value in context.items())
        return line


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time (UTC, ISO 8601), level, logger, message, the message context
    fields that are known, and the traceback as ``exception``."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **_context(record),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str, log_format: Literal["text", "json"] = "text") -> None:
    """Send every logger's records to one stderr handler in ``log_format``, at ``level``.

    Replaces whatever handlers the root logger had, so that nothing logs twice or in another format;
    Faust's worker must then be told not to set up logging itself (``override_logging=False``).
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for previous in root.handlers[:]:
        root.removeHandler(previous)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # warnings.warn from libraries: a record like any other. Off first: captureWarnings(True) does
    # nothing when it was already on, even if something (Faust's worker) replaced the hook since.
    logging.captureWarnings(False)
    logging.captureWarnings(True)
