"""export-feedback reads the topics as the workers do: what a worker dead-letters, the export skips."""

from __future__ import annotations

from stream_tagger.online.feedback_export import latest_corrections, posts_by_id


class Message:
    """The one member of a confluent-kafka message the export reads."""

    def __init__(self, value: bytes | None) -> None:
        self._value = value

    def value(self) -> bytes | None:
        return self._value


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


def test_raw_posts_over_the_workers_size_limit_are_skipped() -> None:
    post = b'{"id":"%s","title":"t","description":"%s","created_at":"2026-03-01T12:00:00Z"}'
    messages = [Message(post % (b"big", b"d" * 2_000)), Message(post % (b"small", b"d"))]
    assert set(posts_by_id(iter(messages), {"big", "small"}, 1_000)) == {"small"}
