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
from stream_tagger.metrics import Metrics
from stream_tagger.model.features import _jit
from stream_tagger.pipeline import OutputRecord, ScoredBatch

_PUNCTUATION_AND_SPACE = re.compile(r"[\W_]+", re.UNICODE)
# For ASCII that class is every byte but a-z, A-Z, 0-9: this table lowercases letters, keeps digits and
# turns everything else into a space, so splitting on spaces and joining gives the regex's result.
_ASCII_WORDS = bytes(
    c + 32 if 65 <= c <= 90 else c if 48 <= c <= 57 or 97 <= c <= 122 else 32 for c in range(256)
)
_ASCII_TABLE = np.frombuffer(_ASCII_WORDS, dtype=np.uint8)
_SPACE = np.uint8(32)


def normalise(title: str, description: str) -> str:
    """Case, width, punctuation and whitespace differences are not new content."""
    text = unicodedata.normalize("NFKC", compose_text(title, description)).casefold()
    return _PUNCTUATION_AND_SPACE.sub(" ", text).strip()


def _normalised_bytes(text: str) -> bytes:
    """UTF-8 of ``normalise`` for one composed text: the path of the posts ``fingerprints`` cannot
    take in bulk (non-ASCII ones, ~9% of the dataset).

    For ASCII, NFKC is the identity and casefold is lowercasing, and one ``bytes.translate`` plus
    split/join does the regex's work. Text that NFKC and casefold turn into ASCII (full-width
    letters, ligatures) takes the same path after them.
    """
    if not text.isascii():
        text = unicodedata.normalize("NFKC", text).casefold()
        if not text.isascii():
            return _PUNCTUATION_AND_SPACE.sub(" ", text).strip().encode()
    return b" ".join(text.encode("ascii").translate(_ASCII_WORDS).split())


@_jit
def _normalise_ascii(
    buf: np.ndarray, count: int, table: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``translate`` + split/join of ``_normalised_bytes`` for NUL-separated posts in one pass.

    Returns the normalised bytes of every post back to back, each post's [start, end) in them, and
    whether the post was ASCII (the others' output is meaningless: they take the Python path)."""
    out = np.empty(buf.size, dtype=np.uint8)
    bounds = np.empty((count, 2), dtype=np.int64)
    ascii_only = np.ones(count, dtype=np.bool_)
    row = start = end = 0
    space = False  # a word was written and a separator seen since
    for byte in buf:
        if byte == 0:
            bounds[row, 0], bounds[row, 1] = start, end
            row += 1
            start, space = end, False
            continue
        if byte >= 128:
            ascii_only[row] = False
        mapped = table[byte]
        if mapped == _SPACE:
            space = end > start
        else:
            if space:
                out[end] = _SPACE
                end += 1
                space = False
            out[end] = mapped
            end += 1
    bounds[row, 0], bounds[row, 1] = start, end
    return out[:end], bounds, ascii_only


def fingerprint(text: str) -> int | None:
    """A 64-bit key per normalised text instead of the text.

    Python's own ``hash`` of bytes is SipHash with a key drawn at random per process: nobody can craft
    a post that collides with another, and chance collisions are moot (~3e-10 over a full window of
    100k texts). The index lives in one process, so keys never need to match across processes.
    None for a post with no words at all: empty or punctuation-only posts are not reposts of each other.
    """
    normalised = _normalised_bytes(text)
    return hash(normalised) if normalised else None


def fingerprints(texts: Sequence[str]) -> list[int | None]:
    """``fingerprint`` of every text of a batch, the ASCII ones normalised in one compiled, GIL-free
    pass: ~3.6 µs per post in Python, most of the duplicate check, on the hot-path thread whose Python
    the scoring thread waits for."""
    joined = "\0".join(texts)
    if joined.count("\0") != len(texts) - 1:  # a post holds NUL itself (or no posts): rare path
        return [fingerprint(text) for text in texts]
    buf = np.frombuffer(joined.encode("utf-8", "surrogatepass"), dtype=np.uint8)
    out, bounds, ascii_only = _normalise_ascii(buf, len(texts), _ASCII_TABLE)
    normalised = out.tobytes()
    return [
        (hash(normalised[start:end]) if end > start else None) if fast else fingerprint(text)
        for text, (start, end), fast in zip(texts, bounds.tolist(), ascii_only.tolist(), strict=True)
    ]


class DuplicateIndex:
    """Fingerprint -> id of the first post seen with it, least recently seen dropped first."""

    def __init__(self, max_entries: int = 100_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.max_entries = max_entries
        self._first: OrderedDict[int, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._first)

    def check(self, content_id: str, key: int | None) -> str | None:
        """Id of an earlier post with the same ``fingerprint``, or None; a replay of the same id is not
        a duplicate."""
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
        check = self.index.check
        for event, outcome, key in zip(batch.events, batch.outcomes, fingerprints(batch.texts), strict=True):
            outcome.duplicate_of = check(event.id, key)
            flagged += outcome.duplicate_of is not None
        self._counter.inc(flagged)
        return ()
