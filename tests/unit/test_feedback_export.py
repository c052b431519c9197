"""export-feedback reads the topics as the workers do: what a worker dead-letters, the export skips."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
from confluent_kafka import TIMESTAMP_CREATE_TIME, TIMESTAMP_NOT_AVAILABLE
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stream_tagger.events import LATEST_TIMESTAMP_MS, Feedback, RawContent, record_time
from stream_tagger.model.dataset import load_dataset
from stream_tagger.online import feedback_export
from stream_tagger.online.feedback_export import (
    ExportReport,
    export_feedback,
    latest_corrections,
    posts_by_id,
)
from stream_tagger.settings import APPROVED_TAGS, Settings
from tests.conftest import DATASET


class Message:
    """The members of a confluent-kafka message the export reads."""

    def __init__(
        self, value: bytes | None, timestamp: tuple[int, int] = (TIMESTAMP_NOT_AVAILABLE, 0)
    ) -> None:
        self._value = value
        self._timestamp = timestamp

    def value(self) -> bytes | None:
        return self._value

    def timestamp(self) -> tuple[int, int]:
        return self._timestamp


def correction(content_id: str, tag: str, at: str, extra: bytes = b"") -> bytes:
    return b'{%s"id":"%s","tags":["%s"],"source":"user","created_at":"2026-03-01T%sZ"}' % (
        extra,
        content_id.encode(),
        tag.encode(),
        at.encode(),
    )


def test_messages_a_worker_would_dead_letter_are_skipped_not_fatal() -> None:
    nested = b'"x":' + b"[" * 20_000 + b"]" * 20_000 + b","  # RecursionError for a plain msgspec decode
    padded = b'"pad":"' + b"p" * 70_000 + b'",'  # valid JSON, over the default max_event_bytes (64 KiB)
    messages = [
        Message(correction("1", "mlops", "12:00:00", nested)),
        Message(correction("2", "mlops", "12:00:00")),
        Message(correction("2", "other", "13:00:00", padded)),
        Message(None),
        Message(b"\xff"),
        Message(correction("3", "mlops", "12:00:00")),
    ]
    latest = latest_corrections(iter(messages), 64 * 1024)
    assert {cid: fb.tags for cid, fb in latest.items()} == {"2": ["mlops"], "3": ["mlops"]}


def _at(hhmmss: str) -> tuple[int, int]:
    """A record timestamp on 2026-03-01, as the broker kept it."""
    moment = datetime.fromisoformat(f"2026-03-01T{hhmmss}+00:00")
    return TIMESTAMP_CREATE_TIME, int(moment.timestamp() * 1000)


def test_a_correction_is_never_later_than_its_record() -> None:
    messages = [
        # Claims a time far ahead of when it was written: it counts as written at 12:00.
        Message(correction("1", "mlops", "23:59:59").replace(b"2026-03-01", b"2099-01-01"), _at("12:00:00")),
        Message(correction("1", "other", "12:30:00"), _at("12:30:01")),  # so this later one wins
        Message(correction("2", "mlops", "13:00:00"), _at("13:00:01")),
        Message(correction("2", "other", "12:00:00"), _at("14:00:00")),  # a replay of an older one
        Message(correction("3", "mlops", "12:00:00"), (TIMESTAMP_CREATE_TIME, -1)),  # no usable stamp
        Message(correction("3", "other", "11:00:00"), _at("15:00:00")),
    ]
    latest = latest_corrections(iter(messages), 64 * 1024)
    assert {cid: fb.tags for cid, fb in latest.items()} == {"1": ["other"], "2": ["mlops"], "3": ["mlops"]}


def test_raw_posts_over_the_workers_size_limit_are_skipped() -> None:
    post = b'{"id":"%s","title":"t","description":"%s","created_at":"2026-03-01T12:00:00Z"}'
    messages = [Message(post % (b"big", b"d" * 2_000)), Message(post % (b"small", b"d"))]
    assert set(posts_by_id(iter(messages), {"big", "small"}, 1_000)) == {"small"}


def export(
    monkeypatch: pytest.MonkeyPatch, out: Path, posts: list[bytes], corrections: list[bytes]
) -> ExportReport:
    """``export_feedback`` over these topics' contents (the broker faked: this tests the join and the CSV)."""
    topics = {Settings().topic_raw: posts, Settings().topic_feedback: corrections}
    monkeypatch.setattr(feedback_export, "check_broker", lambda _settings: set(topics))
    monkeypatch.setattr(
        feedback_export, "read_to_end", lambda _settings, topic: iter(map(Message, topics[topic]))
    )
    return export_feedback(Settings(), out)


def test_a_post_the_trainer_would_refuse_is_counted_not_written(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    post = b'{"id":"%s","title":"%s","created_at":"2026-03-01T12:00:00Z"}'
    posts = [post % (b"blank-title", b"  "), post % (b" ", b"A title"), post % (b"ok", b"A title")]
    corrections = [correction(cid, "mlops", "13:00:00") for cid in ("blank-title", " ", "ok")]
    out = tmp_path / "feedback.csv"
    report = export(monkeypatch, out, posts, corrections)
    assert (report.written, report.unusable) == (1, 2)
    assert load_dataset([DATASET, out], min_per_class=0).ids[-1] == "ok"


# Text that is often blank once stripped, or holds what a CSV must quote (separators, quotes, newlines).
_text = st.text(st.sampled_from(' \t\r\n\u3000,"a\u00e9\u2028\x00'), max_size=6) | st.text(max_size=20)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    rows=st.lists(
        st.tuples(
            st.text(st.sampled_from(" \t\u00a0,x1"), min_size=1, max_size=5)
            | st.text(min_size=1, max_size=12),
            _text,
            _text,
            st.lists(st.sampled_from([*APPROVED_TAGS, "MLOps", "robotics"]), max_size=3),
        ),
        max_size=6,
    )
)
def test_whatever_the_workers_accept_the_export_writes_a_file_the_trainer_reads(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, rows: list[tuple[str, str, str, list[str]]]
) -> None:
    at = datetime(2026, 3, 1, tzinfo=UTC)
    posts = [
        msgspec.json.encode(RawContent(id=cid, title=title, description=description, created_at=at))
        for cid, title, description, _tags in rows
    ]
    corrections = [
        msgspec.json.encode(Feedback(id=cid, tags=tags, source="user", created_at=at))
        for cid, _title, _description, tags in rows
    ]
    out = tmp_path / "feedback.csv"
    report = export(monkeypatch, out, posts, corrections)
    if report.written:
        assert load_dataset([DATASET, out], min_per_class=0).sources[-1]["rows"] == report.written
    else:
        assert out.read_text(encoding="utf-8").splitlines() == [",".join(feedback_export.CSV_COLUMNS)]
    ids = {cid for cid, *_ in rows}
    assert report.written + report.unusable + report.without_approved_tag == len(ids)


def test_a_record_time_is_exact_up_to_the_last_millisecond_a_datetime_holds() -> None:
    assert record_time((TIMESTAMP_CREATE_TIME, LATEST_TIMESTAMP_MS)) == datetime(
        9999, 12, 31, 23, 59, 59, 999_000, tzinfo=UTC
    )
    assert record_time((TIMESTAMP_CREATE_TIME, 1)) == datetime(1970, 1, 1, 0, 0, 0, 1_000, tzinfo=UTC)
    for unusable in ((TIMESTAMP_CREATE_TIME, LATEST_TIMESTAMP_MS + 1), (TIMESTAMP_CREATE_TIME, -1)):
        assert record_time(unusable) is None
    assert record_time((TIMESTAMP_NOT_AVAILABLE, 1)) is None
