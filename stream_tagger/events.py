"""Every event on every topic, as typed msgspec structs: decoding and validation in one step.

These structs are the single source of truth for the wire format: ``schemas/*.json`` are generated
from them (``python -m stream_tagger.schemas``) and a test fails when the two drift apart. Each event
carries ``schema_version`` so that a producer can move to v2 while old workers dead-letter what they
cannot read instead of misreading it.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal, get_args

import msgspec

SCHEMA_VERSION = 1

ContentId = Annotated[
    str, msgspec.Meta(min_length=1, max_length=128, description="Content id; the message key")
]
Tag = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
Confidence = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
#: Why an input went to the dead letters. The first five are the producer's mistakes; ``internal_error``
#: is an exception the worker raised on that one message (its type and where are in ``detail``), so
#: that no message, however odd, can stop the worker or take its batch down with it.
DeadLetterReason = Literal[
    "not_utf8", "not_json", "schema", "too_large", "unknown_schema_version", "internal_error"
]
DEAD_LETTER_REASONS: tuple[str, ...] = get_args(DeadLetterReason)


def as_utc(moment: datetime) -> datetime:
    """A timestamp an event carries, comparable with every other: one without a timezone (which the
    schema allows) is taken as UTC, rather than raise wherever it meets an aware one."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


#: The latest Kafka record timestamp (ms) a datetime can hold, 9999-12-31T23:59:59.999Z: a client may set
#: any 64-bit value, including negative ones.
LATEST_TIMESTAMP_MS = 253_402_300_799_999
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def record_time(timestamp: tuple[int, int]) -> datetime | None:
    """A Kafka record's timestamp (``Message.timestamp()``: its type, then ms) as a datetime; None when
    the record has none (type 0) or one a datetime cannot hold."""
    kind, ms = timestamp
    if not kind or not 0 <= ms <= LATEST_TIMESTAMP_MS:
        return None
    return _EPOCH + timedelta(milliseconds=ms)


def compose_text(title: str, description: str) -> str:
    """What turns a post into the model's input, for training and serving alike (``RawContent.text``
    writes it out; a test holds the two equal)."""
    return f"{title} {description}"


class RawContent(msgspec.Struct, kw_only=True, frozen=True):
    """A post as the platform publishes it (topic ``content.raw.v1``, key = id)."""

    schema_version: Literal[1] = 1
    id: ContentId
    title: Annotated[str, msgspec.Meta(max_length=1_000)]
    description: Annotated[str, msgspec.Meta(max_length=50_000)] = ""
    author_tags: Annotated[list[Tag], msgspec.Meta(max_length=32)] = msgspec.field(default_factory=list)
    created_at: datetime
    source: str | None = None

    @property
    def text(self) -> str:
        """What the model reads: title and description, as at training time (``compose_text``, written
        out: a call more is a Python frame per event on the hot path)."""
        return f"{self.title} {self.description}"


class TagScore(msgspec.Struct, frozen=True):
    tag: Tag
    confidence: Confidence


class TaggedContent(msgspec.Struct, kw_only=True):
    """The outcome the UI shows (topic ``content.tagged.v1``, key = id).

    ``status`` is ``tagged`` when at least one prediction cleared its threshold (``tags`` may still be
    empty when the author already gave that tag), ``pending_review`` when none did and a human decides.
    """

    schema_version: Literal[1] = 1
    id: ContentId
    status: Literal["tagged", "pending_review"]
    tags: list[TagScore]
    author_tags: list[Tag]
    model_version: str
    event_time: datetime
    processed_at: datetime
    duplicate_of: ContentId | None = None


class ReviewRequest(msgspec.Struct, kw_only=True):
    """A post whose best prediction is under the threshold (topic ``content.review.v1``, key = id)."""

    schema_version: Literal[1] = 1
    id: ContentId
    title: str
    description: str
    author_tags: list[Tag]
    candidates: list[TagScore]
    model_version: str
    event_time: datetime
    processed_at: datetime


class DeadLetter(msgspec.Struct, kw_only=True):
    """An input the worker could not read (topic ``content.dead-letter.v1``, key = original key; a key
    over 16,384 bytes is keyed by ``sha256:`` and its hex digest instead, and ``original_key`` keeps its
    first 16,384 bytes, as ``detail`` says).

    ``original`` holds the exact bytes received (base64 in JSON), so the event can be replayed after
    the producer is fixed. An original too big for a Kafka message once base64-encoded (over ~740 kB)
    keeps its first bytes only and ``detail`` says so; ``topic``/``partition``/``offset`` still point
    at the whole message in the raw topic. ``detail`` keeps its first 4,000 characters.
    """

    schema_version: Literal[1] = 1
    reason: DeadLetterReason
    detail: str
    original: bytes
    original_key: bytes | None = None
    topic: str
    partition: int
    offset: int
    received_at: datetime


class Feedback(msgspec.Struct, kw_only=True, frozen=True):
    """A correction from an author, a reviewer or a user (topic ``content.feedback.v1``, key = id)."""

    schema_version: Literal[1] = 1
    id: ContentId
    tags: Annotated[list[Tag], msgspec.Meta(max_length=4)]
    source: Literal["author", "reviewer", "user"]
    created_at: datetime
    reviewer: str | None = None


class ShadowDisagreement(msgspec.Struct, kw_only=True, frozen=True):
    """The shadow model's top-1 differs from the live one's (topic ``content.shadow-disagreements.v1``).

    Published for inspection before a promotion; never shown to users. Key = content id.
    """

    schema_version: Literal[1] = 1
    id: ContentId
    live_model_version: str
    live_tag: Tag
    live_confidence: Confidence
    shadow_model_version: str
    shadow_tag: Tag
    shadow_confidence: Confidence
    observed_at: datetime


#: Every event type, by the file name of its JSON Schema under ``schemas/``.
EVENTS: dict[str, type[msgspec.Struct]] = {
    "raw_content.v1": RawContent,
    "tagged_content.v1": TaggedContent,
    "review_request.v1": ReviewRequest,
    "dead_letter.v1": DeadLetter,
    "feedback.v1": Feedback,
    "shadow_disagreement.v1": ShadowDisagreement,
}
