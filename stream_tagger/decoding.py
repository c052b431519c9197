"""Message bytes -> a valid event (raw content, feedback), or the reason it goes to the dead letters.

The valid case is one msgspec call (parse and validate together, ~1 µs for a typical post), because
it is the case that happens tens of thousands of times a second. Only when that call fails do we
spend time finding out *why*, so that the dead letter names the producer's actual mistake.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, TypeVar

import msgspec

from stream_tagger.events import SCHEMA_VERSION, Feedback, RawContent

Reason = Literal["not_utf8", "not_json", "schema", "too_large", "unknown_schema_version"]


class Rejection(msgspec.Struct, frozen=True):
    """Why an input cannot be read: ``reason`` is the dead-letter reason and metric label."""

    reason: Reason
    detail: str


E = TypeVar("E", RawContent, Feedback)
_untyped = msgspec.json.Decoder()


def event_decoder(event_type: type[E]) -> Callable[[bytes | None, int], E | Rejection]:
    """A decoder for one event type that never raises: a bad message becomes its ``Rejection``.

    Every topic a worker reads dead-letters with the same reasons, so raw content and feedback share
    it. A closure rather than a decoder argument keeps the hot path at one call per message.
    """
    decode = msgspec.json.Decoder(event_type).decode

    def decode_event(value: bytes | None, max_bytes: int) -> E | Rejection:
        if not value:
            return Rejection("not_json", "empty message")
        if len(value) > max_bytes:
            return Rejection("too_large", f"{len(value)} bytes > limit of {max_bytes}")
        try:
            return decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError, UnicodeDecodeError) as exc:
            return _explain(value, exc)

    return decode_event


decode_raw = event_decoder(RawContent)


def _explain(value: bytes, exc: Exception) -> Rejection:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Rejection("not_utf8", f"invalid UTF-8 at byte {bad.start}")
    try:
        document = _untyped.decode(value)
    except msgspec.DecodeError as bad:
        return Rejection("not_json", str(bad))
    if isinstance(document, dict):
        version = document.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
            return Rejection(
                "unknown_schema_version", f"schema_version {version}; this worker reads {SCHEMA_VERSION}"
            )
    return Rejection("schema", str(exc))
