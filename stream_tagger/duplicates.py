"""Flag reposts: a post whose normalised title + description was already seen gets the first post's id.

Reposts are common (the same link shared twice, a title with an extra space or different quotes), and
the UI shows them merged. Normalising before hashing catches those; exact semantic near-duplicates are
out of scope. The index is a bounded LRU in the worker's memory: it keeps the most recent
``max_entries`` texts, so memory stays flat on an endless stream, and it forgets on restart (a repost
of something older than the window, or seen by another worker's partitions, is not flagged).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable

from stream_tagger.metrics import Metrics
from stream_tagger.pipeline import OutputRecord, ScoredBatch

_PUNCTUATION_AND_SPACE = re.compile(r"[\W_]+", re.UNICODE)
# For ASCII that class is every byte but a-z, A-Z, 0-9: this table lowercases letters, keeps digits and
# turns everything else into a space, so splitting on spaces and joining gives the regex's result.
_ASCII_WORDS = bytes(
    c + 32 if 65 <= c <= 90 else c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(256)
)


def normalise(title: str, description: str) -> str:
    """Case, width, punctuation and whitespace differences are not new content."""
    text = unicodedata.normalize("NFKC", f"{title} {description}").casefold()
    return _PUNCTUATION_AND_SPACE.sub(" ", text).strip()


def _normalised_bytes(title: str, description: str) -> bytes:
    """UTF-8 of ``normalise``, fast for ASCII text (most posts, and it is on the hot path).

    For ASCII, NFKC is the identity and casefold is lowercasing, and one ``bytes.translate`` plus
    split/join does the regex's work (fingerprint 12.2 -> 5.2 µs per post on the dataset, A/B on a
    loaded machine). Text that NFKC and casefold turn into ASCII (full-width letters, ligatures)
    takes the same path after them.
    """
    text = f"{title} {description}"
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).casefold()
        if not text.isascii():
            return _PUNCTUATION_AND_SPACE.sub(" ", text).strip().encode()
    return b" ".join(text.encode("ascii").translate(_ASCII_WORDS).split())


def fingerprint(title: str, description: str) -> bytes | None:
    """16 bytes per post instead of its text (collisions are moot at 2^-64 odds over a 100k window).

    None for a post with no words at all: empty or punctuation-only posts are not reposts of each other.
    """
    text = _normalised_bytes(title, description)
    return hashlib.blake2b(text, digest_size=16).digest() if text else None


class DuplicateIndex:
    """Fingerprint -> id of the first post seen with it, least recently seen dropped first."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._first: OrderedDict[bytes, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._first)

    def check(self, content_id: str, title: str, description: str) -> str | None:
        """Id of an earlier post with the same text, or None; a replay of the same id is not a duplicate."""
        key = fingerprint(title, description)
        if key is None:
            return None
        first = self._first.get(key)
        if first is None:
            self._first[key] = content_id
            if len(self._first) > self.max_entries:
                self._first.popitem(last=False)
            return None
        self._first.move_to_end(key)
        return None if first == content_id else first


class DuplicateObserver:
    """Batch observer: sets ``duplicate_of`` on the outcome, which the tagged event then carries."""

    def __init__(self, index: DuplicateIndex, metrics: Metrics) -> None:
        self.index = index
        self._counter = metrics.duplicates

    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        flagged = 0
        for event, outcome in zip(batch.events, batch.outcomes, strict=True):
            outcome.duplicate_of = self.index.check(event.id, event.title, event.description)
            flagged += outcome.duplicate_of is not None
        self._counter.inc(flagged)
        return ()
