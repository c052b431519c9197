"""Text -> sparse n-gram counts, vectorised over a whole micro-batch with numpy.

Why outside the ONNX graph: ONNX's string operators (normaliser, regex tokenizer, n-gram lookup) cost
200-500 µs per post, ten times the budget of the worker. Here a batch is lower-cased once, encoded to
one UTF-8 byte array and every n-gram gets a 64-bit polynomial hash from prefix sums, so there is no
Python loop per post or per n-gram. The ONNX graph then only sees integer column ids and counts.

The same :class:`Featurizer` is the first step of the scikit-learn training pipeline and the first
step of serving, so training and serving cannot featurise differently.

Hashes: ``H(s) = sum b_j * P^(len-1-j) mod 2^64`` via ``S_i = sum_{j<=i} b_j * P^-j`` (P odd, hence
invertible mod 2^64): the hash of bytes ``[s, e)`` is ``P^(e-1) * (S_{e-1} - S_{s-1})``. numpy's
uint64 arithmetic wraps, which is exactly mod 2^64. A splitmix64 finaliser (salted per n-gram kind)
spreads the bits before the vocabulary lookup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

_P = np.uint64(0x100000001B3)  # FNV prime: odd, so invertible mod 2^64
_P_INV = np.uint64(pow(int(_P), -1, 2**64))
_DOC_SEP = 0  # byte that separates posts in the batch buffer; never inside a text after cleaning
_SPACE = 32
_MAX_POWERS = 1 << 16

# Byte classes: ASCII letters and digits, and every byte of a multi-byte UTF-8 character (accents, CJK,
# emoji) are word bytes; everything else is a separator. A pure table lookup, independent of the locale.
_IS_WORD = np.zeros(256, dtype=bool)
_IS_WORD[ord("a") : ord("z") + 1] = True
_IS_WORD[ord("0") : ord("9") + 1] = True
_IS_WORD[0x80:] = True
_CLEAN = np.where(_IS_WORD, np.arange(256), _SPACE).astype(np.uint8)


def _powers(base: np.uint64, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.uint64)
    out[0] = 1
    out[1:] = base
    return np.cumprod(out, dtype=np.uint64)


_POW = _powers(_P, _MAX_POWERS)
_POW_INV = _powers(_P_INV, _MAX_POWERS)


def _mix(h: np.ndarray, salt: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: without it, short n-grams differ only in their low bits."""
    h = h ^ (salt * np.uint64(0x9E3779B97F4A7C15))
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


@dataclass(frozen=True)
class FeatureParams:
    """Everything that decides which features a text has; stored in the model's metadata."""

    char_min: int = 2
    char_max: int = 5
    word_ngrams: int = 2
    max_chars: int = 4096  # long posts are cut: the first 4 kB carry the topic and bound the cost

    def to_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class Hashed:
    """Every n-gram occurrence of a batch: which post it belongs to and its 64-bit hash."""

    doc: np.ndarray  # int64 [m]
    hashes: np.ndarray  # uint64 [m]
    n_docs: int


def _clean_bytes(texts: Sequence[str], max_chars: int) -> tuple[np.ndarray, np.ndarray]:
    """One byte buffer ``SEP ␠t0␠ SEP ␠t1␠ SEP ...``, non-word bytes turned into single spaces.

    The space padding gives a word's first and last letters their own n-grams (as scikit-learn's
    char_wb does). Returns the buffer and, per byte, the post it belongs to."""
    cut = [t[:max_chars] for t in texts]
    joined = "\0 " + " \0 ".join(cut) + " \0"
    if joined.count("\0") != len(cut) + 1:  # a post holds NUL itself: blank it out, rare path
        joined = "\0 " + " \0 ".join(t.replace("\0", " ") for t in cut) + " \0"
    raw = np.frombuffer(joined.lower().encode("utf-8", "surrogatepass"), dtype=np.uint8)
    buf = _CLEAN[raw]
    is_sep = raw == _DOC_SEP
    buf[is_sep] = _DOC_SEP
    space = buf == _SPACE
    keep = np.ones(len(buf), dtype=bool)
    keep[1:] = ~(space[1:] & space[:-1])
    buf = buf[keep]
    docs = np.cumsum(buf == _DOC_SEP) - 1
    return buf, docs


def _prefix(buf: np.ndarray) -> np.ndarray:
    """``S_i`` of the module docstring, with ``S_-1 = 0`` stored at index 0."""
    n = len(buf)
    pinv = _powers(_P_INV, n) if n >= _MAX_POWERS else _POW_INV[:n]
    s = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(buf.astype(np.uint64) * pinv, dtype=np.uint64, out=s[1:])
    return s


def _pow(exps: np.ndarray) -> np.ndarray:
    if len(exps) and exps.max() >= _MAX_POWERS:
        return _powers(_P, int(exps.max()) + 1)[exps]
    return _POW[exps]


def hash_ngrams(texts: Sequence[str], params: FeatureParams) -> Hashed:
    """All character n-grams (char_min..char_max, never across posts) and word 1..k-grams of a batch.

    Every n-gram is a span ``[start, end)`` of the buffer plus a salt naming its kind (char k-gram or
    word k-gram); all spans are hashed in one pass, because a single text's cost is dominated by the
    number of numpy calls, not by the bytes."""
    buf, docs = _clean_bytes(texts, params.max_chars)
    n = len(buf)
    sep_count = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(buf == _DOC_SEP, out=sep_count[1:])
    ks = np.arange(params.char_min, params.char_max + 1)
    n_pos = max(n - params.char_min + 1, 0)
    start = np.tile(np.arange(n_pos), len(ks))
    klen = np.repeat(ks, n_pos)
    end = start + klen
    ok = end <= n
    ok[ok] = sep_count[end[ok]] == sep_count[start[ok]]
    starts, ends, salts = [start[ok]], [end[ok]], [klen[ok]]
    # Words: maximal runs of word bytes; a word k-gram spans k words and the single spaces between.
    is_word = np.zeros(n + 2, dtype=np.int8)
    is_word[1:-1] = (buf != _SPACE) & (buf != _DOC_SEP)
    edges = np.diff(is_word)
    w_start = np.flatnonzero(edges == 1)
    w_end = np.flatnonzero(edges == -1)
    w_doc = docs[w_start]
    for k in range(1, params.word_ngrams + 1):
        m = len(w_doc) - k + 1
        if m <= 0:
            break
        same = w_doc[k - 1 :] == w_doc[:m]
        starts.append(w_start[:m][same])
        ends.append(w_end[k - 1 :][same])
        salts.append(np.full(int(same.sum()), 100 + k))
    start = np.concatenate(starts)
    end = np.concatenate(ends)
    s = _prefix(buf)
    hashes = _mix(_pow(end - 1) * (s[end] - s[start]), np.concatenate(salts).astype(np.uint64))
    return Hashed(docs[start], hashes, len(texts))


class Vocabulary:
    """64-bit n-gram hash -> column, with an exact check so unseen n-grams are dropped, not mis-mapped.

    A power-of-two table indexed by the top bits of the hash gives each known hash its column in one
    gather; two known hashes that share a slot keep only the more frequent (decided at fit time, so
    training and serving agree)."""

    def __init__(self, hashes: np.ndarray, table_bits: int = 20) -> None:
        self.hashes = np.asarray(hashes, dtype=np.uint64)
        self.table_bits = table_bits
        slot = (self.hashes >> np.uint64(64 - table_bits)).astype(np.int64)
        if len(np.unique(slot)) != len(slot):
            raise ValueError("vocabulary hashes collide in the lookup table; build it with from_counts")
        self.table = np.full(1 << table_bits, -1, dtype=np.int32)
        self.table[slot] = np.arange(len(self.hashes), dtype=np.int32)

    @classmethod
    def from_counts(cls, hashes: np.ndarray, df: np.ndarray, min_df: int, table_bits: int = 20) -> Vocabulary:
        keep = df >= min_df
        hashes, df = hashes[keep], df[keep]
        order = np.lexsort((hashes, -df))  # most frequent first, ties by hash: deterministic
        hashes = hashes[order]
        slot = hashes >> np.uint64(64 - table_bits)
        _, first = np.unique(slot, return_index=True)
        return cls(np.sort(hashes[np.sort(first)]), table_bits)

    def __len__(self) -> int:
        return len(self.hashes)

    def __getstate__(self) -> dict:
        return {"hashes": self.hashes, "table_bits": self.table_bits}  # the 4 MB table is rebuilt

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["hashes"], state["table_bits"])

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """Column of each hash, -1 when the n-gram was not in the training vocabulary."""
        col = self.table[(hashes >> np.uint64(64 - self.table_bits)).astype(np.int64)]
        known = col >= 0
        col[known & (self.hashes[np.maximum(col, 0)] != hashes)] = -1
        return col


@dataclass(frozen=True)
class BatchFeatures:
    """Padded per-post features: what the ONNX graph takes, plus the drift signal."""

    ids: np.ndarray  # int64 [B, T] vocabulary columns (0 where padded)
    tf: np.ndarray  # float32 [B, T] counts (0 where padded)
    oov_share: np.ndarray  # float32 [B] share of the post's n-grams that were not in the vocabulary


def featurize(texts: Sequence[str], params: FeatureParams, vocab: Vocabulary) -> BatchFeatures:
    hashed = hash_ngrams(texts, params)
    n_docs = hashed.n_docs
    col = vocab.lookup(hashed.hashes)
    known = col >= 0
    total = np.bincount(hashed.doc, minlength=n_docs)
    hits = np.bincount(hashed.doc[known], minlength=n_docs)
    oov = np.where(total > 0, 1.0 - hits / np.maximum(total, 1), 0.0).astype(np.float32)
    keys = np.sort(hashed.doc[known] * len(vocab) + col[known])
    if len(keys):
        first = np.concatenate(([True], keys[1:] != keys[:-1]))
        starts = np.flatnonzero(first)
        counts = np.diff(np.append(starts, len(keys)))
        uniq = keys[starts]
    else:
        counts = uniq = np.zeros(0, dtype=np.int64)
    doc = uniq // max(len(vocab), 1)
    cols = uniq - doc * len(vocab)
    per_doc = np.bincount(doc, minlength=n_docs)
    width = max(int(per_doc.max()) if n_docs else 0, 1)
    offsets = np.concatenate(([0], np.cumsum(per_doc)[:-1]))
    pos = np.arange(len(uniq)) - offsets[doc]
    ids = np.zeros((n_docs, width), dtype=np.int64)
    tf = np.zeros((n_docs, width), dtype=np.float32)
    ids[doc, pos] = cols
    tf[doc, pos] = counts
    return BatchFeatures(ids, tf, oov)


def to_csr(features: BatchFeatures, n_columns: int) -> sp.csr_matrix:
    """The padded features as a scipy matrix, for scikit-learn (padding has tf 0 and vanishes)."""
    rows = np.repeat(np.arange(features.ids.shape[0]), features.ids.shape[1])
    m = sp.csr_matrix(
        (features.tf.ravel().astype(np.float64), (rows, features.ids.ravel())),
        shape=(features.ids.shape[0], n_columns),
    )
    m.eliminate_zeros()
    return m


class Featurizer(TransformerMixin, BaseEstimator):
    """scikit-learn face of :func:`featurize`: ``fit`` learns the vocabulary (n-grams in >= min_df posts)."""

    def __init__(
        self,
        char_min: int = 2,
        char_max: int = 5,
        word_ngrams: int = 2,
        max_chars: int = 4096,
        min_df: int = 2,
    ) -> None:
        self.char_min = char_min
        self.char_max = char_max
        self.word_ngrams = word_ngrams
        self.max_chars = max_chars
        self.min_df = min_df

    @property
    def params(self) -> FeatureParams:
        return FeatureParams(self.char_min, self.char_max, self.word_ngrams, self.max_chars)

    def fit(self, texts: Sequence[str], y: object = None) -> Featurizer:
        hashed = hash_ngrams(list(texts), self.params)
        pairs = np.unique(np.stack([hashed.hashes, hashed.doc.astype(np.uint64)]), axis=1)
        hashes, df = np.unique(pairs[0], return_counts=True)
        self.vocabulary_ = Vocabulary.from_counts(hashes, df, self.min_df)
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return to_csr(featurize(list(texts), self.params, self.vocabulary_), len(self.vocabulary_))
