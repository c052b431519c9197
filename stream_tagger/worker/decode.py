"""Message bytes -> a valid event (raw content, feedback), or the reason it goes to the dead letters,
and the dead letter itself.

The valid case is one msgspec call (parse and validate together, ~1 µs for a typical post), because
it is the case that happens tens of thousands of times a second. Only when that call fails do we
spend time finding out *why*, so that the dead letter names the producer's actual mistake.
"""

from __future__ import annotations

import hashlib
import traceback
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TypeVar, final

import msgspec

from stream_tagger.events import SCHEMA_VERSION, DeadLetter, DeadLetterReason, Feedback, RawContent


@final
class Rejection(msgspec.Struct, frozen=True):
    """Why an input cannot be read: ``reason`` is the dead-letter reason and metric label."""

    reason: DeadLetterReason
    detail: str


def internal_error(stage: str, exc: BaseException) -> Rejection:
    """The rejection of a message on which the worker itself raised: the exception's type, the stage it
    was in and the innermost frame it came from, so the dead letter points at the code, not the input.
    The message text is cut short: it can quote the input, which ``original`` already carries."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno} in {frames[-1].name}" if frames else ""
    return Rejection("internal_error", f"{type(exc).__name__} while {stage}{where}: {str(exc)[:200]}")


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
        except RecursionError:
            # msgspec recurses once per nesting level: ~10 kB of "[" is enough.
            return Rejection("not_json", "nested too deeply")
        except Exception as exc:  # whatever else a decoder can raise must not stop the worker
            return internal_error("decoding", exc)

    return decode_event


decode_raw = event_decoder(RawContent)
decode_feedback = event_decoder(Feedback)


def _explain(value: bytes, exc: Exception) -> Rejection:
    try:
        value.decode("utf-8")
    except UnicodeDecodeError as bad:
        return Rejection("not_utf8", f"invalid UTF-8 at byte {bad.start}")
    try:
        document = _untyped.decode(value)
    except msgspec.DecodeError as bad:
        return Rejection("not_json", str(bad))
    except RecursionError:
        return Rejection("not_json", "nested too deeply")
    if isinstance(document, dict):
        version = document.get("schema_version", SCHEMA_VERSION)
        if isinstance(version, int) and not isinstance(version, bool) and version != SCHEMA_VERSION:
            return Rejection(
                "unknown_schema_version", f"schema_version {version}; this worker reads {SCHEMA_VERSION}"
            )
    return Rejection("schema", str(exc))


# librdkafka refuses to produce a message over its message.max.bytes (1,000,000 by default; the
# settings refuse a lower one), counting the key and ~100 bytes of record framing on top of the value.
DEAD_LETTER_MAX_BYTES = 990_000
# Of the input's key, a dead letter keeps at most this much (in ``original_key``, and as its record key).
# The broker takes keys of up to ~1 MB: such a key as the record key beside its base64 copy would
# make a letter the producer refuses, whatever is cut from ``original``.
DEAD_LETTER_MAX_KEY_BYTES = 16 * 1024
# A rejection's detail can quote the input (msgspec quotes a bad enum value whole, escaped: ~2.7 times
# its bytes); the letter keeps its first characters, ``original`` the input itself.
DEAD_LETTER_MAX_DETAIL_CHARS = 4_000
_encode = msgspec.json.Encoder().encode


def dead_letter_key(key: bytes | None) -> bytes | None:
    """The record key of a dead letter: the input's key, or, when that is longer than
    ``DEAD_LETTER_MAX_KEY_BYTES``, ``sha256:`` and its hex digest (the same for the same key)."""
    if key is None or len(key) <= DEAD_LETTER_MAX_KEY_BYTES:
        return key
    return b"sha256:" + hashlib.sha256(key).hexdigest().encode()


def dead_letter(
    rejection: Rejection,
    original: bytes | None,
    key: bytes | None,
    topic: str,
    partition: int,
    offset: int,
    received_at: datetime,
) -> tuple[bytes | None, DeadLetter]:
    """The record key (``dead_letter_key``) and the dead letter of an input every reader (worker, feedback
    worker) publishes: the rejection, where the input was, and the input itself, cut to fit one Kafka
    message with that key (``fit_dead_letter``; a key over ``DEAD_LETTER_MAX_KEY_BYTES`` to its first
    bytes)."""
    detail, record_key = rejection.detail, dead_letter_key(key)
    if len(detail) > DEAD_LETTER_MAX_DETAIL_CHARS:
        detail = f"{detail[:DEAD_LETTER_MAX_DETAIL_CHARS]}... ({len(detail)} characters)"
    if key is not None and len(key) > DEAD_LETTER_MAX_KEY_BYTES:
        detail += (
            f"; key truncated to its first {DEAD_LETTER_MAX_KEY_BYTES} of {len(key)} bytes, "
            "the record keyed by its sha256"
        )
        key = key[:DEAD_LETTER_MAX_KEY_BYTES]
    letter = DeadLetter(
        reason=rejection.reason,
        detail=detail,
        original=original or b"",
        original_key=key,
        topic=topic,
        partition=partition,
        offset=offset,
        received_at=received_at,
    )
    return record_key, fit_dead_letter(letter, record_key)


def fit_dead_letter(letter: DeadLetter, record_key: bytes | None) -> DeadLetter:
    """The letter, with ``original`` cut to a prefix when the whole would not fit in one message.

    ``original`` travels base64-encoded (4/3 larger), so a raw message over ~740 kB, which the broker
    accepts, would make a dead letter the producer refuses: the hot path would die on it and crash-loop
    on the same offset. A prefix still shows the producer's mistake; ``detail`` gives the full length.
    """
    size = len(letter.original)
    note = f"; original truncated to its first {size} of {size} bytes"  # the longest the note can be
    envelope = len(_encode(msgspec.structs.replace(letter, original=b"", detail=letter.detail + note)))
    room = DEAD_LETTER_MAX_BYTES - envelope - len(record_key or b"")
    if 4 * -(-size // 3) <= room:
        return letter
    keep = 3 * (max(room, 0) // 4)
    return msgspec.structs.replace(
        letter,
        original=letter.original[:keep],
        detail=f"{letter.detail}; original truncated to its first {keep} of {size} bytes",
    )
