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

import functools
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


def _mix(h: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: without it, short n-grams differ only in their low bits."""
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

    doc: np.ndarray  # int32 [m]
    hashes: np.ndarray  # uint64 [m]
    totals: np.ndarray  # int64 [n_docs] n-grams per post (the denominator of oov_share)

    @property
    def n_docs(self) -> int:
        return len(self.totals)


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
    docs = np.cumsum(buf == _DOC_SEP, dtype=np.int32) - 1
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


@functools.cache
def _salt(kind: int) -> np.uint64:
    """Distinct per n-gram kind, so the char 2-gram "ab" and the word "ab" hash differently."""
    return np.uint64((kind * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)


def hash_ngrams(texts: Sequence[str], params: FeatureParams) -> Hashed:
    """All character n-grams (char_min..char_max, never across posts) and word 1..k-grams of a batch.

    Char k-grams are contiguous slices of the prefix-hash arrays (no gathers); word k-grams are spans
    between word starts and ends. Everything is salted by kind and mixed in one final pass."""
    buf, docs = _clean_bytes(texts, params.max_chars)
    n = len(buf)
    s = _prefix(buf)
    pw = _POW[:n] if n < _MAX_POWERS else _powers(_P, n)
    sep_count = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(buf == _DOC_SEP, out=sep_count[1:])
    doc_parts: list[np.ndarray] = []
    hash_parts: list[np.ndarray] = []
    for k in range(params.char_min, params.char_max + 1):
        m = n - k + 1
        if m <= 0:
            break
        # Span [i, i + k) for every i: P^(i+k-1) * (S[i+k] - S[i]); valid when no separator inside.
        ok = sep_count[k : k + m] == sep_count[:m]
        h = pw[k - 1 : k - 1 + m] * (s[k : k + m] - s[:m])
        hash_parts.append(h[ok] ^ _salt(k))
        doc_parts.append(docs[:m][ok])
    # Words: maximal runs of word bytes; a word k-gram spans k words and the single spaces between.
    is_word = np.zeros(n + 2, dtype=np.int8)
    is_word[1:-1] = (buf != _SPACE) & (buf != _DOC_SEP)
    edges = is_word[1:] - is_word[:-1]
    w_start = np.flatnonzero(edges == 1)
    w_end = np.flatnonzero(edges == -1)
    w_doc = docs[w_start]
    # n-grams per post, counted rather than collected: a post of L buffer bytes and W words has
    # L - k + 1 char k-grams and W - k + 1 word k-grams.
    seps = np.flatnonzero(buf == _DOC_SEP)
    seg_len = seps[1:] - seps[:-1] - 1
    n_words = np.bincount(w_doc, minlength=len(texts))
    char_k = np.arange(params.char_min, params.char_max + 1)
    word_k = np.arange(1, params.word_ngrams + 1)
    totals = np.maximum(seg_len[:, None] - char_k + 1, 0).sum(axis=1, dtype=np.int64)
    totals += np.maximum(n_words[:, None] - word_k + 1, 0).sum(axis=1, dtype=np.int64)
    for k in range(1, params.word_ngrams + 1):
        m = len(w_doc) - k + 1
        if m <= 0:
            break
        same = w_doc[k - 1 :] == w_doc[:m]
        start, end = w_start[:m][same], w_end[k - 1 :][same]
        hash_parts.append((_pow(end - 1) * (s[end] - s[start])) ^ _salt(100 + k))
        doc_parts.append(w_doc[:m][same])
    return Hashed(np.concatenate(doc_parts), _mix(np.concatenate(hash_parts)), totals)


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
    """Per-post n-gram counts in CSR form (posts are rows), plus the drift signal."""

    indptr: np.ndarray  # int64 [B + 1]: post i's entries are [indptr[i], indptr[i + 1])
    cols: np.ndarray  # int64 [nnz] vocabulary columns, ascending within a post
    counts: np.ndarray  # float32 [nnz] occurrences
    oov_share: np.ndarray  # float32 [B] share of the post's n-grams that were not in the vocabulary

    @property
    def lengths(self) -> np.ndarray:
        return self.indptr[1:] - self.indptr[:-1]

    def padded(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``ids`` int64 [R, T] and ``tf`` float32 [R, T] for the ONNX graph; padding is id 0 with tf 0,
        which adds nothing to any sum in the graph. T is the longest of these rows."""
        lens = self.lengths if rows is None else self.lengths[rows]
        n_rows = len(lens)
        width = max(int(lens.max()) if n_rows else 0, 1)
        ids = np.zeros((n_rows, width), dtype=np.int64)
        tf = np.zeros((n_rows, width), dtype=np.float32)
        if rows is None:  # the hot path: entries are already in row order
            src = slice(None)
            flat = np.arange(len(self.cols)) + np.repeat(np.arange(n_rows) * width - self.indptr[:-1], lens)
        else:
            within = np.arange(int(lens.sum())) - np.repeat(np.cumsum(lens) - lens, lens)
            src = np.repeat(self.indptr[rows], lens) + within
            flat = np.repeat(np.arange(n_rows) * width, lens) + within
        ids.ravel()[flat] = self.cols[src]
        tf.ravel()[flat] = self.counts[src]
        return ids, tf

    def to_csr(self, n_columns: int) -> sp.csr_matrix:
        """For scikit-learn: the same counts as a scipy matrix."""
        return sp.csr_matrix(
            (self.counts.astype(np.float64), self.cols, self.indptr), shape=(len(self.oov_share), n_columns)
        )


def featurize(texts: Sequence[str], params: FeatureParams, vocab: Vocabulary) -> BatchFeatures:
    hashed = hash_ngrams(texts, params)
    n_docs, n_cols = hashed.n_docs, max(len(vocab), 1)
    col = vocab.lookup(hashed.hashes)
    known = col >= 0
    # One sort groups equal (post, column) pairs; int32 keys sort 3x faster than int64 (AVX2 sort).
    key_type = np.int32 if n_docs * n_cols < 2**31 else np.int64
    keys = np.sort(hashed.doc[known].astype(key_type) * key_type(n_cols) + col[known].astype(key_type))
    starts = np.flatnonzero(np.concatenate(([True], keys[1:] != keys[:-1]))) if len(keys) else keys
    ends = np.append(starts[1:], len(keys)) if len(keys) else starts
    counts = (ends - starts).astype(np.float32)
    uniq = keys[starts].astype(np.int64)
    indptr = np.searchsorted(uniq, np.arange(n_docs + 1, dtype=np.int64) * n_cols)
    hits = np.concatenate(([0.0], np.cumsum(counts, dtype=np.float64)))
    hits = hits[indptr[1:]] - hits[indptr[:-1]]
    oov = np.where(hashed.totals > 0, 1.0 - hits / np.maximum(hashed.totals, 1), 0.0).astype(np.float32)
    return BatchFeatures(indptr, uniq % n_cols, counts, oov)


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
        return featurize(list(texts), self.params, self.vocabulary_).to_csr(len(self.vocabulary_))
