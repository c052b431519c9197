"""Outcomes and rejections -> the records the hot path publishes, keyed by content id.

A post that a person must review gets a review request first, then its status (``pending_review``) on
the tagged topic; a tagged post gets its status only; an input that cannot be read gets a dead letter
keyed by its original key (``decode.dead_letter_key``). One msgspec encode per record, each record built
directly (no generator, no intermediate list): this runs once per event in the hot-path thread.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple, Protocol

import msgspec

from stream_tagger.events import RawContent, ReviewRequest, TaggedContent
from stream_tagger.worker.decode import Rejection, dead_letter
from stream_tagger.worker.route import Outcome


class MessageLike(Protocol):
    """What the worker reads from a message: confluent-kafka's ``Message`` satisfies it as is."""

    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def timestamp(self) -> tuple[int, int]: ...


class OutputRecord(NamedTuple):
    topic: str
    key: bytes | None
    value: bytes


@dataclass(frozen=True, slots=True)
class Topics:
    tagged: str
    review: str
    dead_letter: str


# Builds an OutputRecord without NamedTuple's own __new__, a Python function: a frame per record.
_record = tuple.__new__


class OutputEncoder:
    def __init__(self, topics: Topics) -> None:
        self.topics = topics
        self._encode = msgspec.json.Encoder().encode

    def outcome(
        self, event: RawContent, outcome: Outcome, event_time: datetime, now: datetime, version: str
    ) -> tuple[OutputRecord, ...]:
        """The records of one post's outcome, decided by the model ``version``."""
        key = event.id.encode()
        encode = self._encode
        if outcome.status == "tagged":
            status = TaggedContent(
                id=event.id,
                status="tagged",
                tags=outcome.scores,
                author_tags=event.author_tags,
                model_version=version,
                event_time=event_time,
                processed_at=now,
                duplicate_of=outcome.duplicate_of,
            )
            return (_record(OutputRecord, (self.topics.tagged, key, encode(status))),)
        review = ReviewRequest(
            id=event.id,
            title=event.title,
            description=event.description,
            author_tags=event.author_tags,
            candidates=outcome.scores,
            model_version=version,
            event_time=event_time,
            processed_at=now,
        )
        status = TaggedContent(
            id=event.id,
            status="pending_review",
            tags=[],
            author_tags=event.author_tags,
            model_version=version,
            event_time=event_time,
            processed_at=now,
            duplicate_of=outcome.duplicate_of,
        )
        return (
            _record(OutputRecord, (self.topics.review, key, encode(review))),
            _record(OutputRecord, (self.topics.tagged, key, encode(status))),
        )

    def rejection(self, message: MessageLike, rejection: Rejection, now: datetime) -> OutputRecord:
        """The dead letter of ``message``: its one outcome."""
        record_key, letter = dead_letter(
            rejection,
            message.value(),
            message.key(),
            message.topic() or "",
            message.partition() or 0,
            message.offset() or 0,
            now,
        )
        return OutputRecord(self.topics.dead_letter, record_key, self._encode(letter))
