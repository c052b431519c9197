"""Flag reposts: a post whose normalised title + description was already seen gets the first post's id.

Reposts are common (the same link shared twice, a title with an extra space or different quotes), and
the UI shows them merged. Normalising before hashing catches those; exact semantic near-duplicates are
out of scope. The index is a bounded LRU in the worker's memory: it keeps the most recent
``max_entries`` texts, so memory stays flat on an endless stream, and it forgets on restart (a repost
of something older than the window, or seen by another worker's partitions, is not flagged).
"""

from __future__ import annotations

import re
import unicodedata
from collections import OrderedDict
from collections.abc import Iterable, Sequence

import numpy as np

from stream_tagger.events import compose_text
from stream_tagger.kernels.duplicates import fingerprint_texts
from stream_tagger.metrics import Metrics
from stream_tagger.worker.pipeline import OutputRecord, ScoredBatch

_PUNCTUATION_AND_SPACE = re.compile(r"[\W_]+", re.UNICODE)
# A non-ASCII character that is not a word character: for those, re's \w is str.isalnum (its "_" is ASCII).
_NON_ASCII_NON_WORD = re.compile(r"[^\x00-\x7f\w]")
# The regex's class for ASCII is every byte but a-z, A-Z, 0-9: this table lowercases letters, keeps
# digits and turns everything else into a space; bytes of multi-byte UTF-8 characters are kept (the
# non-word ones were made spaces before, see ``_unicode_ready``).
_TABLE = np.array(
    [c + 32 if 65 <= c <= 90 else c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(128)]
    + list(range(128, 256)),
    dtype=np.uint8,
)


def normalise(title: str, description: str) -> str:
    """Case, width, punctuation and whitespace differences are not new content. The definition;
    ``fingerprints`` computes the same thing faster."""
    text = unicodedata.normalize("NFKC", compose_text(title, description)).casefold()
    return _PUNCTUATION_AND_SPACE.sub(" ", text).strip()


def _unicode_ready(text: str) -> str:
    """A non-ASCII post (~9% of the dataset) made ready for the byte kernel: NFKC and casefold (which
    only Python knows), and its non-ASCII non-word characters (quotes, dashes, emoji) made spaces,
    so that what is left of ``normalise`` is the kernel's ASCII work."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return text if text.isascii() else _NON_ASCII_NON_WORD.sub(" ", text)


def fingerprints(texts: Sequence[str]) -> list[int | None]:
    """A 64-bit key per post of a batch (composed text, as the model reads it) instead of its text.

    The keys are Python's own ``hash`` of the normalised UTF-8: SipHash with a key drawn at random
    per process (unless PYTHONHASHSEED pins it: leave it unset), so nobody can craft a post that
    collides with another, and chance collisions are moot (~3e-10 over a full window of 100k texts);
    the index lives in one process, so keys never need to match across processes. None for a post
    with no words at all: empty or punctuation-only posts are not reposts of each other.
    The normalisation and the hash run in one compiled, GIL-free pass over the posts as they lie in
    memory (in Python the normalisation was ~3.6 µs per post, most of the duplicate check, on the
    hot-path thread whose Python the scoring thread waits for; an encoded copy of each post and a bytes
    object to hash were ~0.35 µs more).
    """
    keys = fingerprint_texts(texts, _TABLE, _unicode_ready)
    if (keys == -1).any():
        return [None if key == -1 else key for key in keys.tolist()]
    return keys.tolist()


class DuplicateIndex:
    """Fingerprint -> id of the first post seen with it, least recently seen dropped first."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._first: OrderedDict[int, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._first)

    def check(self, content_ids: Sequence[str], keys: Sequence[int | None]) -> list[str | None]:
        """Per post in order (id, key from ``fingerprints``): the id of an earlier post with the same key,
        or None; a replay of the same id is not a duplicate. One call per batch: the loop keeps its
        lookups local, where a call per post cost about as much as the dict work."""
        first, most = self._first, self.max_entries
        get, seen_again, forget_oldest = first.get, first.move_to_end, first.popitem
        found: list[str | None] = []
        add = found.append
        for content_id, key in zip(content_ids, keys, strict=True):
            if key is None:
                add(None)
                continue
            earlier = get(key)
            if earlier is None:
                first[key] = content_id
                if len(first) > most:
                    forget_oldest(last=False)
                add(None)
            else:
                seen_again(key)
                add(None if earlier == content_id else earlier)
        return found


class DuplicateObserver:
    """Batch observer: sets ``duplicate_of`` on the outcome, which the tagged event then carries."""

    def __init__(self, index: DuplicateIndex, metrics: Metrics) -> None:
        self.index = index
        self._counter = metrics.duplicates

    def observe(self, batch: ScoredBatch) -> Iterable[OutputRecord]:
        found = self.index.check([event.id for event in batch.events], fingerprints(batch.texts))
        for outcome, duplicate_of in zip(batch.outcomes, found, strict=True):
            outcome.duplicate_of = duplicate_of
        self._counter.inc(len(found) - found.count(None))
        return ()
