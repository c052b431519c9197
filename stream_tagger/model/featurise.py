"""Text -> sparse n-gram counts for a whole micro-batch, in one compiled (numba) pass.

Why outside the ONNX graph: ONNX's string operators (normaliser, regex tokenizer, n-gram lookup) cost
200-500 µs per post, ten times the budget of the worker. Here a batch is lower-cased once and encoded to
one UTF-8 byte array; one numba kernel then cleans it, hashes every n-gram, looks it up in the
vocabulary and counts columns per post (a scratch array and a touched-list, no sort of the batch). The
ONNX graph only sees integer column ids and counts. The kernels release the GIL (``nogil``), so the
worker's inference threads featurise two batches at once on two cores.

The same kernels are the first step of the scikit-learn training pipeline (``featurizer.Featurizer``
wraps them) and of serving, so training and serving cannot featurise differently. This module imports
neither scikit-learn nor scipy: the worker loads only what serving needs (~65 MB less resident).

Hashes: ``H(s) = sum b_j * P^(len-1-j) mod 2^64`` (Horner, uint64 arithmetic wraps, which is exactly
mod 2^64), XOR a salt per n-gram kind, then a splitmix64 finaliser that spreads the bits before the
vocabulary lookup. These are the values the first, numpy prefix-sum implementation produced, so models
trained with it stay valid (a unit test keeps that implementation as the reference).

The kernels are built ahead of time into a C extension by ``stream-tagger compile`` (the worker then
never imports numba), else compiled by numba's JIT and cached on disk: see ``compiled``. Without either,
each process compiles them when it first builds a :class:`Vocabulary` (~10 s on this machine).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from stream_tagger.kernels.load import jit, kernel

_P = np.uint64(0x100000001B3)  # FNV prime
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)  # salt of kind k: k * golden ratio mod 2^64
_WORD_KIND = 100  # word k-grams are kind 100 + k, char k-grams kind k
_PIECE_KIND = 200  # subword pieces: kind 200 at a word's start ("▁graph"), 201 inside one ("s")
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
MAX_PHRASE_WORDS = 3  # longest keyword phrase, in words ("experiment tracking", "question answering")
_NO_HASHES = np.zeros(0, dtype=np.uint64)
_DOC_SEP = 0  # byte that separates posts in the batch buffer; never inside a text after cleaning
_SPACE = 32

# Byte classes: ASCII letters and digits, and every byte of a multi-byte UTF-8 character (accents, CJK,
# emoji) are word bytes; the separator stays; everything else becomes a space. A table lookup,
# independent of the locale.
_CLEAN = np.full(256, _SPACE, dtype=np.uint8)
for _lo, _hi in ((ord("a"), ord("z")), (ord("0"), ord("9")), (0x80, 0xFF)):
    _CLEAN[_lo : _hi + 1] = np.arange(_lo, _hi + 1)
_CLEAN[_DOC_SEP] = _DOC_SEP

# Index of a 64-bit word's only set bit: multiply by a de Bruijn sequence, the top 6 bits are unique.
_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_INDEX = np.zeros(64, dtype=np.int64)
for _bit in range(64):
    _DEBRUIJN_INDEX[((int(_DEBRUIJN) << _bit) & (2**64 - 1)) >> 58] = _bit


@jit
def _mix(h: np.uint64) -> np.uint64:
    """splitmix64 finaliser: without it, short n-grams differ only in their low bits."""
    h = (h ^ (h >> np.uint64(30))) * _M1
    h = (h ^ (h >> np.uint64(27))) * _M2
    return h ^ (h >> np.uint64(31))


@jit
def _clean(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Bytes mapped through ``_CLEAN`` with runs of spaces collapsed to one; and where each separator is."""
    buf = np.empty(len(raw), dtype=np.uint8)
    n = 0
    n_seps = 0
    for b in raw:
        c = _CLEAN[b]
        if c == _SPACE and n and buf[n - 1] == _SPACE:
            continue
        buf[n] = c
        n += 1
        if c == _DOC_SEP:
            n_seps += 1
    seps = np.empty(n_seps, dtype=np.int64)
    j = 0
    for i in range(n):
        if buf[i] == _DOC_SEP:
            seps[j] = i
            j += 1
    return buf[:n], seps


@jit
def _bound(seps: np.ndarray, kinds: int) -> int:
    """Most n-grams one post can have: ``kinds`` per byte (a word k-gram needs a word end)."""
    return int((seps[1:] - seps[:-1]).max()) * kinds + 1 if len(seps) > 1 else 1


@jit
def _split_words(buf: np.ndarray, start: int, end: int, words: np.ndarray) -> int:
    """Start and end of each word of the post ``buf[start:end]`` into ``words``; returns how many."""
    n_words = 0
    i = start
    while i < end:
        if buf[i] == _SPACE:
            i += 1
            continue
        words[n_words, 0] = i
        while i < end and buf[i] != _SPACE:
            i += 1
        words[n_words, 1] = i
        n_words += 1
    return n_words


@jit
def _extend(h: np.uint64, buf: np.ndarray, words: np.ndarray, w: int, k: int) -> np.uint64:
    """Hash of word k-gram ``words[w : w + k]`` from the hash ``h`` of its first k - 1 words: the
    bytes from the end of word k - 1 (its space included) to the end of word k."""
    i = words[w, 0] if k == 1 else words[w + k - 2, 1]
    for j in range(i, words[w + k - 1, 1]):
        h = h * _P + np.uint64(buf[j])
    return h


@jit
def _post_ngrams(
    buf: np.ndarray,
    start: int,
    end: int,
    char_min: int,
    char_max: int,
    word_ngrams: int,
    words: np.ndarray,
    n_words: int,
    out: np.ndarray,
    pos: int,
) -> int:
    """Hashes of the n-grams of one post ``buf[start:end]`` written to ``out[pos:]``; returns the new pos.

    Char n-grams span word boundaries (the single spaces are part of them); word k-grams span k words
    and the spaces between. ``words`` holds the post's ``n_words`` words (``_split_words``)."""
    for i in range(start, end):
        h = np.uint64(0)
        for k in range(1, min(char_max, end - i) + 1):
            h = h * _P + np.uint64(buf[i + k - 1])
            if k >= char_min:
                out[pos] = _mix(h ^ (np.uint64(k) * _GOLDEN))
                pos += 1
    for w in range(n_words):
        h = np.uint64(0)
        for k in range(1, min(word_ngrams, n_words - w) + 1):
            h = _extend(h, buf, words, w, k)
            out[pos] = _mix(h ^ (np.uint64(_WORD_KIND + k) * _GOLDEN))
            pos += 1
    return pos


@jit
def _count_keywords(
    buf: np.ndarray,
    words: np.ndarray,
    n_words: int,
    table: np.ndarray,
    hashes: np.ndarray,
    tags: np.ndarray,
    longer: np.ndarray,
    shift: np.uint64,
    out: np.ndarray,
) -> None:
    """Keyword phrases of one post, counted per tag into ``out``, leftmost-longest and not overlapping
    (as a regex alternation scans): "object detection" is one hit, not also one for "detection".

    The table holds every phrase (``tags`` >= 0) and every proper prefix of one (``longer``), so a
    word that starts nothing costs one hash and one lookup, and a phrase is extended only while it
    can still grow into a longer one."""
    w = 0
    while w < n_words:
        h = np.uint64(0)
        found = 0
        tag = -1
        for k in range(1, n_words - w + 1):
            h = _extend(h, buf, words, w, k)
            col = _column(_mix(h ^ (np.uint64(_WORD_KIND + k) * _GOLDEN)), table, hashes, shift)
            if col < 0:
                break
            if tags[col] >= 0:
                found, tag = k, tags[col]
            if not longer[col]:
                break
        if found:
            out[tag] += 1
            w += found
        else:
            w += 1


@jit
def _piece_salt(initial: bool) -> np.uint64:
    return np.uint64(_PIECE_KIND + (0 if initial else 1)) * _GOLDEN


@jit
def _embed_words(
    buf: np.ndarray,
    words: np.ndarray,
    n_words: int,
    table: np.ndarray,
    hashes: np.ndarray,
    shift: np.uint64,
    vectors: np.ndarray,
    prefix: np.ndarray,
    out: np.ndarray,
) -> None:
    """Sum of the vectors of one post's pieces into ``out``, then scaled to unit length (zero when no
    piece matched).

    Each word is cut greedily into the longest known pieces, left to right: the first may be a
    word-start piece ("▁graph"), the rest are inner pieces ("s"); a byte no piece starts with is
    skipped. That is WordPiece's own cut (greedy longest-match-first, ``pretrained``), except that a
    word WordPiece cannot cut whole becomes [UNK] there and keeps its known pieces here; training and
    serving both cut this way. A piece never spans two words.
    The hashes of every prefix of the rest of the word (at most ``len(prefix)``, the longest piece) are
    computed first and looked up longest first: most words are a piece, found by one lookup (probing
    shortest first cost a lookup per byte: this pass alone took 8.5 µs per post instead of 3.9)."""
    for w in range(n_words):
        i, end = words[w, 0], words[w, 1]
        initial = True
        while i < end:
            salt = _piece_salt(initial)
            h = np.uint64(0)
            reach = min(len(prefix), end - i)
            for k in range(reach):
                h = h * _P + np.uint64(buf[i + k])
                prefix[k] = h
            best, best_col = 0, -1
            for k in range(reach, 0, -1):
                col = _column(_mix(prefix[k - 1] ^ salt), table, hashes, shift)
                if col >= 0:
                    best, best_col = k, col
                    break
            if best:
                for j in range(len(out)):
                    out[j] += vectors[best_col, j]
                i += best
            elif not initial:
                i += 1
            initial = False
    norm = np.float32(0.0)
    for j in range(len(out)):
        norm += out[j] * out[j]
    if norm > 0:
        out /= np.sqrt(norm)


@kernel
def _hash_pieces(buf: np.ndarray, bounds: np.ndarray, initial: np.ndarray) -> np.ndarray:
    out = np.empty(len(initial), dtype=np.uint64)
    for p in range(len(initial)):
        h = np.uint64(0)
        for i in range(bounds[p], bounds[p + 1]):
            h = h * _P + np.uint64(buf[i])
        out[p] = _mix(h ^ _piece_salt(initial[p]))
    return out


@kernel
def _hash_batch(
    raw: np.ndarray, char_min: int, char_max: int, word_ngrams: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    buf, seps = _clean(raw)
    n_docs = len(seps) - 1
    kinds = max(char_max - char_min + 1, 0) + max(word_ngrams, 0)
    total = 0
    for d in range(n_docs):
        total += (seps[d + 1] - seps[d] - 1) * kinds
    hashes = np.empty(total, dtype=np.uint64)
    doc = np.empty(total, dtype=np.int32)
    totals = np.zeros(n_docs, dtype=np.int64)
    words = np.empty((_bound(seps, 1), 2), dtype=np.int64)
    pos = 0
    for d in range(n_docs):
        n_words = _split_words(buf, seps[d] + 1, seps[d + 1], words)
        stop = _post_ngrams(
            buf, seps[d] + 1, seps[d + 1], char_min, char_max, word_ngrams, words, n_words, hashes, pos
        )
        doc[pos:stop] = d
        totals[d] = stop - pos
        pos = stop
    return doc[:pos], hashes[:pos], totals


@jit
def _column(h: np.uint64, table: np.ndarray, vocab: np.ndarray, shift: np.uint64) -> int:
    """Vocabulary column of hash ``h``, -1 when it was not in the training vocabulary.

    Open addressing with linear probing from the slot named by the top bits of ``h``; the table is
    at least a third empty, so a probe ends after one or two slots."""
    mask = len(table) - 1
    slot = np.int64(h >> shift)
    while True:
        col = table[slot]
        if col < 0 or vocab[col] == h:
            return col
        slot = (slot + 1) & mask


@kernel
def _build_table(vocab: np.ndarray, shift: np.uint64, size: int) -> np.ndarray:
    table = np.full(size, -1, dtype=np.int32)
    for col in range(len(vocab)):
        slot = np.int64(vocab[col] >> shift)
        while table[slot] >= 0:
            slot = (slot + 1) & (size - 1)
        table[slot] = col
    return table


@kernel
def _lookup(hashes: np.ndarray, table: np.ndarray, vocab: np.ndarray, shift: np.uint64) -> np.ndarray:
    out = np.empty(len(hashes), dtype=np.int32)
    for i in range(len(hashes)):
        out[i] = _column(hashes[i], table, vocab, shift)
    return out


@kernel
def _count_batch(
    raw: np.ndarray,
    char_min: int,
    char_max: int,
    word_ngrams: int,
    table: np.ndarray,
    vocab: np.ndarray,
    shift: np.uint64,
    kw_table: np.ndarray,
    kw_hashes: np.ndarray,
    kw_tags: np.ndarray,
    kw_longer: np.ndarray,
    kw_shift: np.uint64,
    n_tags: int,
    pc_table: np.ndarray,
    pc_hashes: np.ndarray,
    pc_shift: np.uint64,
    pc_vectors: np.ndarray,
    pc_longest: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """CSR of per-post column counts (columns ascending within a post), each post's oov share,
    log1p of its keyword hits per tag ([n_docs, n_tags]; no columns when the model has no keywords),
    and its unit-length sum of piece vectors ([n_docs, dims]; no columns without pieces)."""
    buf, seps = _clean(raw)
    n_docs = len(seps) - 1
    kinds = max(char_max - char_min + 1, 0) + max(word_ngrams, 0)
    scratch = np.empty(_bound(seps, kinds), dtype=np.uint64)
    words = np.empty((_bound(seps, 1), 2), dtype=np.int64)
    counts = np.zeros(max(len(vocab), 1), dtype=np.int32)
    seen = np.zeros((len(counts) + 63) >> 6, dtype=np.uint64)  # bitmap of the post's columns
    indptr = np.zeros(n_docs + 1, dtype=np.int64)
    capacity = 0  # most entries the posts can have; pages never written are never mapped in
    for d in range(n_docs):
        capacity += min((seps[d + 1] - seps[d] - 1) * kinds, len(counts))
    cols = np.empty(capacity, dtype=np.int64)
    vals = np.empty(len(cols), dtype=np.float32)
    oov = np.zeros(n_docs, dtype=np.float32)
    keyword_hits = np.zeros((n_docs, n_tags), dtype=np.float32)
    hits_of_tag = np.zeros(n_tags, dtype=np.int64)
    embedding = np.zeros((n_docs, pc_vectors.shape[1]), dtype=np.float32)
    prefix = np.empty(pc_longest, dtype=np.uint64)
    nnz = 0
    for d in range(n_docs):
        n_words = _split_words(buf, seps[d] + 1, seps[d + 1], words)
        if n_tags:
            hits_of_tag[:] = 0
            _count_keywords(
                buf, words, n_words, kw_table, kw_hashes, kw_tags, kw_longer, kw_shift, hits_of_tag
            )
            for t in range(n_tags):
                keyword_hits[d, t] = np.log1p(hits_of_tag[t])
        if pc_vectors.shape[1]:
            _embed_words(
                buf, words, n_words, pc_table, pc_hashes, pc_shift, pc_vectors, prefix, embedding[d]
            )
        m = _post_ngrams(
            buf, seps[d] + 1, seps[d + 1], char_min, char_max, word_ngrams, words, n_words, scratch, 0
        )
        hits = 0
        for j in range(m):
            c = _column(scratch[j], table, vocab, shift)
            if c < 0:
                continue
            hits += 1
            if counts[c] == 0:
                seen[c >> 6] |= np.uint64(1) << np.uint64(c & 63)
            counts[c] += 1
        # Columns in ascending order by scanning the bitmap: a few hundred words, where sorting the
        # post's ~300 columns costs ~9 µs in numba.
        for w in range(len(seen)):
            bits = seen[w]
            seen[w] = 0
            while bits:
                low = bits & (~bits + np.uint64(1))
                c = (w << 6) + _DEBRUIJN_INDEX[(low * _DEBRUIJN) >> np.uint64(58)]
                cols[nnz] = c
                vals[nnz] = counts[c]
                counts[c] = 0
                nnz += 1
                bits ^= low
        indptr[d + 1] = nnz
        if m:
            oov[d] = 1.0 - hits / m
    return indptr, cols[:nnz], vals[:nnz], oov, keyword_hits, embedding


@kernel
def _pad(
    indptr: np.ndarray, cols: np.ndarray, counts: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    width = 1
    for r in rows:
        width = max(width, indptr[r + 1] - indptr[r])
    ids = np.zeros((len(rows), width), dtype=np.int64)
    tf = np.zeros((len(rows), width), dtype=np.float32)
    for i, r in enumerate(rows):
        n = indptr[r + 1] - indptr[r]
        ids[i, :n] = cols[indptr[r] : indptr[r + 1]]
        tf[i, :n] = counts[indptr[r] : indptr[r + 1]]
    return ids, tf


def _batch_bytes(texts: Sequence[str], max_chars: int) -> np.ndarray:
    """One UTF-8 buffer ``SEP ␠t0␠ SEP ␠t1␠ SEP ...`` of the lower-cased posts, each cut at max_chars.

    The space padding gives a word's first and last letters their own n-grams (as scikit-learn's
    char_wb does). ``surrogatepass`` keeps a lone surrogate (invalid UTF-16 from a JSON decoder) as
    bytes instead of failing the batch."""
    cut = [t[:max_chars] for t in texts]
    joined = "\0 " + " \0 ".join(cut) + " \0"
    if joined.count("\0") != len(cut) + 1:  # a post holds NUL itself: blank it out, rare path
        joined = "\0 " + " \0 ".join(t.replace("\0", " ") for t in cut) + " \0"
    return np.frombuffer(joined.lower().encode("utf-8", "surrogatepass"), dtype=np.uint8)


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

    doc: np.ndarray  # int32 [m], ascending
    hashes: np.ndarray  # uint64 [m]
    totals: np.ndarray  # int64 [n_docs] n-grams per post (the denominator of oov_share)

    @property
    def n_docs(self) -> int:
        return len(self.totals)


def hash_ngrams(texts: Sequence[str], params: FeatureParams) -> Hashed:
    """All character n-grams (char_min..char_max, never across posts) and word 1..k-grams of a batch,
    post by post (what ``Featurizer.fit`` counts document frequencies from)."""
    raw = _batch_bytes(texts, params.max_chars)
    return Hashed(*_hash_batch(raw, params.char_min, params.char_max, params.word_ngrams))


class Vocabulary:
    """64-bit n-gram hash -> column, with an exact check so unseen n-grams are dropped, not mis-mapped.

    Fitting keeps, of the known hashes that share their top ``table_bits`` bits, only the most frequent
    (decided at fit time, so training and serving agree; the constructor rejects a vocabulary that
    breaks this). Lookups go through a compact open-addressing table (256 kB for 24 k n-grams, in
    L2 cache) rather than a 4 MB direct-mapped one: a cache miss per n-gram was most of the cost."""

    def __init__(self, hashes: np.ndarray, table_bits: int = 20) -> None:
        self.hashes = np.ascontiguousarray(hashes, dtype=np.uint64)  # the kernels' argument types
        self.table_bits = table_bits
        slot = (self.hashes >> np.uint64(64 - table_bits)).astype(np.int64)
        if len(np.unique(slot)) != len(slot):
            raise ValueError("vocabulary hashes collide in the lookup table; build it with from_counts")
        bits = max((len(self.hashes) * 3 // 2).bit_length(), 1)  # >= 1/3 of the slots stay empty
        self.shift = np.uint64(64 - bits)
        self.table = _build_table(self.hashes, self.shift, 1 << bits)
        # Compile the serving kernels (or load them from the disk cache) now, while a model loads, not
        # in the worker's first batch: a cold compile holds the GIL for ~10 s, starving the event loop.
        featurize([""], FeatureParams(), self).padded()

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
        return {"hashes": self.hashes, "table_bits": self.table_bits}  # the table is rebuilt

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["hashes"], state["table_bits"])

    def lookup(self, hashes: np.ndarray) -> np.ndarray:
        """Column of each hash, -1 when the n-gram was not in the training vocabulary."""
        return _lookup(np.ascontiguousarray(hashes, dtype=np.uint64), self.table, self.hashes, self.shift)


class Keywords:
    """Keyword phrases per tag (model parameters, ``keywords.json``) as word n-gram hashes.

    A phrase is hashed exactly as the featuriser hashes a post's word n-grams (same cleaning, same
    salts), so "CI/CD" and "ci cd" are one phrase and "organ" never contains "gan"; a post's hits are
    then counted in the featuriser's own pass over its words (``_count_keywords``), ~0.5 µs per post
    where a regex alternation over the same lists cost ~18 µs. Phrases of up to ``MAX_PHRASE_WORDS``
    words; the column order of the hits is the order of ``phrases``' tags."""

    def __init__(self, phrases: Mapping[str, Sequence[str]]) -> None:
        self.phrases = {tag: tuple(words) for tag, words in phrases.items()}
        self.tags = tuple(self.phrases)
        tag_of: dict[int, int] = {}  # hash of a phrase or of a phrase's prefix -> tag, -1 for a prefix only
        prefixes: set[int] = set()
        for t, tag in enumerate(self.tags):
            for phrase in self.phrases[tag]:
                *heads, h = _phrase_hashes(phrase)
                prefixes.update(heads)
                if tag_of.get(h, -1) not in (-1, t):
                    raise ValueError(
                        f"keyword {phrase!r} of {tag!r} is also listed under {self.tags[tag_of[h]]!r}"
                    )
                tag_of[h] = t
        for h in prefixes:
            tag_of.setdefault(h, -1)
        self.hashes = np.array(sorted(tag_of), dtype=np.uint64)
        self.tag_index = np.array([tag_of[int(h)] for h in self.hashes], dtype=np.int64)
        self.longer = np.array([int(h) in prefixes for h in self.hashes], dtype=np.bool_)
        bits = max((len(self.hashes) * 8).bit_length(), 1)  # >= 7/8 empty: a miss ends at its first slot
        self.shift = np.uint64(64 - bits)
        self.table = _build_table(self.hashes, self.shift, 1 << bits)


def _phrase_hashes(phrase: str) -> list[int]:
    """The hashes a post's word 1-, 2-, ... n-grams get when they read as the first 1, 2, ... n words of
    ``phrase`` after cleaning: the last one is the phrase's."""
    if not isinstance(phrase, str):
        raise ValueError(f"keyword {phrase!r} is not a string")
    n_words = int(hash_ngrams([phrase], FeatureParams(char_min=1, char_max=0, word_ngrams=1)).totals[0])
    if not 1 <= n_words <= MAX_PHRASE_WORDS:
        raise ValueError(f"keyword {phrase!r} has {n_words} words after cleaning, not 1-{MAX_PHRASE_WORDS}")
    # The word k-grams of a text start with those of its first word, k = 1, 2, ...
    return (
        hash_ngrams([phrase], FeatureParams(char_min=1, char_max=0, word_ngrams=n_words))
        .hashes[:n_words]
        .tolist()
    )


class _NoKeywords:
    """What ``_count_batch`` gets for a model without keywords: no tags, so no lookups."""

    tags: tuple[str, ...] = ()
    hashes = _NO_HASHES
    tag_index = np.zeros(0, dtype=np.int64)
    longer = np.zeros(0, dtype=np.bool_)
    shift = np.uint64(63)
    table = np.full(2, -1, dtype=np.int32)


_NO_KEYWORDS = _NoKeywords()

PIECE_START = "\u2581"  # "▁": marks a piece that starts a word (WordPiece marks the others, "##")


class Pieces:
    """A pretrained subword vocabulary with a vector per piece (model parameters, ``pieces.npz``).

    A post's ``embedding`` is the unit-length sum of the vectors of the pieces its words are cut into
    (``_embed_words``). Why: the n-grams only know words seen in 764 training posts; pretrained vectors
    place an unseen word ("YOLOv8", "Kubeflow") near ones the model has weights for. Pieces are what
    the featuriser can meet: lower-case, of word bytes only (``_CLEAN``), ``PIECE_START`` first for a
    word-start piece. Vectors are float16, as stored; the kernels get them as float32."""

    def __init__(self, pieces: Sequence[str], vectors: np.ndarray) -> None:
        self.pieces = tuple(pieces)
        self.stored = np.asarray(vectors, dtype=np.float16)
        if self.stored.ndim != 2 or len(self.stored) != len(self.pieces) or not self.pieces:
            raise ValueError(f"{len(self.pieces)} pieces need a [{len(self.pieces)}, dims] vector table")
        self.vectors = self.stored.astype(np.float32)
        encoded = [piece.removeprefix(PIECE_START).encode("utf-8") for piece in self.pieces]
        for piece, raw in zip(self.pieces, encoded, strict=True):
            b = np.frombuffer(raw, dtype=np.uint8)
            if not len(b) or (_CLEAN[b] != b).any() or (b == _SPACE).any() or (b == _DOC_SEP).any():
                raise ValueError(f"piece {piece!r} can never match: pieces are lower-case word characters")
        bounds = np.zeros(len(encoded) + 1, dtype=np.int64)
        bounds[1:] = np.cumsum([len(raw) for raw in encoded])
        initial = np.array([piece.startswith(PIECE_START) for piece in self.pieces], dtype=np.bool_)
        self.hashes = _hash_pieces(np.frombuffer(b"".join(encoded), dtype=np.uint8), bounds, initial)
        if len(np.unique(self.hashes)) != len(self.hashes):
            raise ValueError("duplicate pieces")
        self.longest = int(np.diff(bounds).max())
        bits = max((len(self.hashes) * 4).bit_length(), 1)  # most lookups miss: keep >= 3/4 empty
        self.shift = np.uint64(64 - bits)
        self.table = _build_table(self.hashes, self.shift, 1 << bits)

    @property
    def dims(self) -> int:
        return self.vectors.shape[1]

    def __getstate__(self) -> dict:
        return {"pieces": self.pieces, "vectors": self.stored}  # hashes and table are rebuilt

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["pieces"], state["vectors"])


class _NoPieces:
    """What ``_count_batch`` gets for a model without pieces: no dims, so no lookups."""

    hashes = _NO_HASHES
    shift = np.uint64(63)
    table = np.full(2, -1, dtype=np.int32)
    vectors = np.zeros((0, 0), dtype=np.float32)
    longest = 0


_NO_PIECES = _NoPieces()


@dataclass(frozen=True)
class BatchFeatures:
    """Per-post n-gram counts in CSR form (posts are rows), the drift signal, the keyword hits and the
    piece embedding."""

    indptr: np.ndarray  # int64 [B + 1]: post i's entries are [indptr[i], indptr[i + 1])
    cols: np.ndarray  # int64 [nnz] vocabulary columns, ascending within a post
    counts: np.ndarray  # float32 [nnz] occurrences
    oov_share: np.ndarray  # float32 [B] share of the post's n-grams that were not in the vocabulary
    keyword_hits: np.ndarray  # float32 [B, K] log1p(keyword hits) per tag of ``Keywords``; K = 0 without
    embedding: np.ndarray  # float32 [B, D] unit-length sum of piece vectors (``Pieces``); D = 0 without

    @property
    def lengths(self) -> np.ndarray:
        return self.indptr[1:] - self.indptr[:-1]

    def padded(self, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``ids`` int64 [R, T] and ``tf`` float32 [R, T] for the ONNX graph; padding is id 0 with tf 0,
        which adds nothing to any sum in the graph. T is the longest of these rows."""
        if rows is None:
            rows = np.arange(len(self.oov_share))
        return _pad(self.indptr, self.cols, self.counts, np.ascontiguousarray(rows, dtype=np.int64))


def featurize(
    texts: Sequence[str],
    params: FeatureParams,
    vocab: Vocabulary,
    keywords: Keywords | None = None,
    pieces: Pieces | None = None,
) -> BatchFeatures:
    """n-gram counts of the batch and, with ``keywords`` and ``pieces``, its keyword hits and piece
    embedding, in one pass over the text."""
    return _featurize(texts, params, vocab.table, vocab.hashes, vocab.shift, keywords, pieces)


def keyword_hits(texts: Sequence[str], keywords: Keywords, max_chars: int) -> np.ndarray:
    """``featurize(...).keyword_hits`` without the n-grams (training's keyword columns): the same kernel
    with no n-gram kinds, so the hits cannot differ from what serving computes."""
    return _without_ngrams(texts, max_chars, keywords=keywords).keyword_hits


def piece_embedding(texts: Sequence[str], pieces: Pieces, max_chars: int) -> np.ndarray:
    """``featurize(...).embedding`` without the n-grams (training's embedding columns), as above."""
    return _without_ngrams(texts, max_chars, pieces=pieces).embedding


def _without_ngrams(
    texts: Sequence[str], max_chars: int, keywords: Keywords | None = None, pieces: Pieces | None = None
) -> BatchFeatures:
    no_vocab = np.full(1, -1, dtype=np.int32)
    params = FeatureParams(char_min=1, char_max=0, word_ngrams=0, max_chars=max_chars)
    return _featurize(texts, params, no_vocab, _NO_HASHES, np.uint64(63), keywords, pieces)


def _featurize(
    texts: Sequence[str],
    params: FeatureParams,
    table: np.ndarray,
    hashes: np.ndarray,
    shift: np.uint64,
    keywords: Keywords | None,
    pieces: Pieces | None,
) -> BatchFeatures:
    kw = keywords or _NO_KEYWORDS
    pc = pieces or _NO_PIECES
    raw = _batch_bytes(texts, params.max_chars)
    return BatchFeatures(
        *_count_batch(
            raw,
            params.char_min,
            params.char_max,
            params.word_ngrams,
            table,
            hashes,
            shift,
            kw.table,
            kw.hashes,
            kw.tag_index,
            kw.longer,
            kw.shift,
            len(kw.tags),
            pc.table,
            pc.hashes,
            pc.shift,
            pc.vectors,
            pc.longest,
        )
    )
