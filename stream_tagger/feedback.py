"""Join people's corrections with what the worker predicted, keyed by content id.

Why a join over two topics: the worker's hot path must not wait for feedback, and feedback arrives
minutes to days after the prediction, possibly on another worker. So predictions are read back from
the tagged topic into a table keyed by id, and corrections from the feedback topic are matched
against it. Both topics are keyed by content id with the same partition count (``settings.partitions``),
so they are co-partitioned: the worker owning partition p of one owns partition p of the other, and
every lookup is local. Tables are Faust tables backed by changelog topics, so a restarted or
rebalanced worker gets its state back.

The join is symmetric because the two agents run independently: feedback that arrives before its
prediction is parked and judged when the prediction comes. The first prediction for an id is kept
(later ones are at-least-once replays, or the echo of a review resolution this module published).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime

import msgspec

from stream_tagger.events import Feedback, TaggedContent, TagScore
from stream_tagger.online_eval import Judged
from stream_tagger.routing import normalise_tag
from stream_tagger.settings import APPROVED_TAGS


class Prediction(msgspec.Struct, kw_only=True, frozen=True):
    """What the table keeps per id: the little that judging and resolving a prediction need."""

    status: str
    suggested: list[str]
    author_tags: list[str]
    model_version: str
    event_time: datetime
    processed_at: datetime
    resolved: bool = False


_encode = msgspec.json.Encoder().encode
_decode_prediction = msgspec.json.Decoder(Prediction).decode
_decode_parked = msgspec.json.Decoder(list[Feedback]).decode


@dataclass(frozen=True)
class Verdict:
    """What one correction, matched with its prediction, means for the metrics and the tagged topic."""

    feedback: Feedback
    judged: Judged
    review_seconds: float | None = None  # set when this correction resolved a pending review
    resolution: TaggedContent | None = None  # the reviewed outcome to publish


class FeedbackJoin:
    """The join's logic over two byte-valued mappings (Faust tables in the worker, dicts in tests)."""

    def __init__(self, predictions: MutableMapping[str, bytes], parked: MutableMapping[str, bytes]) -> None:
        self.predictions = predictions
        self.parked = parked

    def on_tagged(self, event: TaggedContent) -> list[Verdict]:
        """Remember a prediction; judge the corrections that were waiting for it."""
        if event.id in self.predictions:
            return []
        record = Prediction(
            status=event.status, suggested=[t.tag for t in event.tags], author_tags=list(event.author_tags),
            model_version=event.model_version, event_time=event.event_time, processed_at=event.processed_at,
        )
        self.predictions[event.id] = _encode(record)
        waiting = self.parked.pop(event.id, None)
        if waiting is None:
            return []
        return [self._judge(fb, self._record(event.id)) for fb in _decode_parked(waiting)]

    def on_feedback(self, feedback: Feedback) -> Verdict | None:
        """Judge a correction against its prediction, or park it until the prediction is known."""
        if feedback.id not in self.predictions:
            waiting = _decode_parked(self.parked[feedback.id]) if feedback.id in self.parked else []
            self.parked[feedback.id] = _encode([*waiting, feedback])
            return None
        return self._judge(feedback, self._record(feedback.id))

    def _record(self, content_id: str) -> Prediction:
        return _decode_prediction(self.predictions[content_id])

    def _judge(self, feedback: Feedback, record: Prediction) -> Verdict:
        corrected = [t for t in map(normalise_tag, feedback.tags) if t in APPROVED_TAGS]
        judged = Judged.of(record.suggested, corrected, record.author_tags)
        if not (feedback.source == "reviewer" and record.status == "pending_review" and not record.resolved):
            return Verdict(feedback, judged)
        self.predictions[feedback.id] = _encode(msgspec.structs.replace(record, resolved=True))
        resolution = TaggedContent(
            id=feedback.id, status="tagged",
            tags=[TagScore(t, 1.0) for t in corrected if t in judged.truth],
            author_tags=record.author_tags, model_version=record.model_version,
            event_time=record.event_time, processed_at=datetime.now(UTC),
        )
        waited = max(0.0, (feedback.created_at - record.processed_at).total_seconds())
        return Verdict(feedback, judged, review_seconds=waited, resolution=resolution)
