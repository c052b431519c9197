"""Every way a raw message can be unreadable maps to its own dead-letter reason."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stream_tagger.events import RawContent, compose_text
from stream_tagger.worker.decode import Rejection, decode_raw

LIMIT = 1_000
VALID = {
    "id": "p1",
    "title": "YOLO vs RCNN",
    "description": "detection",
    "author_tags": ["cv"],
    "created_at": "2020-02-20T06:43:18Z",
}


def encode(doc: object) -> bytes:
    return msgspec.json.encode(doc)


def test_valid_event_decodes_with_defaults() -> None:
    event = decode_raw(encode({k: v for k, v in VALID.items() if k != "description"}), LIMIT)
    assert isinstance(event, RawContent)
    assert (event.id, event.description, event.schema_version, event.author_tags) == ("p1", "", 1, ["cv"])


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"\xff\xfe not text", "not_utf8"),
        (b'{"id": "p1", "title": "\xc3\x28", "created_at": "2020-01-01T00:00:00Z"}', "not_utf8"),
        (b"{not json", "not_json"),
        (b"", "not_json"),
        (None, "not_json"),
        (encode({**VALID, "title": 42}), "schema"),
        (encode({k: v for k, v in VALID.items() if k != "id"}), "schema"),
        (encode({**VALID, "id": ""}), "schema"),
        (encode({**VALID, "created_at": "yesterday"}), "schema"),
        (encode({**VALID, "author_tags": "cv"}), "schema"),
        (encode([VALID]), "schema"),
        (encode({**VALID, "schema_version": "2"}), "schema"),
        (encode({**VALID, "schema_version": True}), "schema"),
        (encode({**VALID, "schema_version": 2}), "unknown_schema_version"),
        (encode({**VALID, "title": 42, "schema_version": 99}), "unknown_schema_version"),
        (encode({**VALID, "description": "x" * LIMIT}), "too_large"),
    ],
)
def test_bad_input_is_rejected_with_its_reason(value: bytes | None, reason: str) -> None:
    rejection = decode_raw(value, LIMIT)
    assert isinstance(rejection, Rejection)
    assert rejection.reason == reason
    assert rejection.detail


def test_schema_detail_names_the_field() -> None:
    rejection = decode_raw(encode({**VALID, "title": 42}), LIMIT)
    assert isinstance(rejection, Rejection)
    assert "$.title" in rejection.detail


def test_size_limit_is_inclusive() -> None:
    value = encode(VALID)
    assert isinstance(decode_raw(value, len(value)), RawContent)
    assert decode_raw(value, len(value) - 1) == Rejection(
        "too_large", f"{len(value)} bytes > limit of {len(value) - 1}"
    )


@given(st.text(max_size=1_000), st.text())
def test_a_post_reads_as_the_model_was_trained(title: str, description: str) -> None:
    post = RawContent(id="p", title=title, description=description, created_at=datetime.now(UTC))
    assert post.text == compose_text(title, description)
