"""Text -> sparse n-gram counts for a batch of posts, in one compiled pass.

Why outside the ONNX graph: ONNX's string operators (normaliser, regex tokenizer, n-gram lookup) cost
200-500 µs per post, ten times the budget of the worker. Here a batch is lower-cased once and encoded to
one UTF-8 byte array; one C kernel (``stream_tagger/kernels/featurise.pyx``, Cython) then cleans it,
hashes every n-gram, looks it up in the vocabulary and counts columns per post (a scratch array and a
bitmap of the columns seen, no sort of the batch). The ONNX graph only sees the counts' term weights
as a sparse matrix over vocabulary columns. The kernels release the GIL, so the worker's inference
threads featurise two batches at once on two cores.

The same kernels are the first step of the scikit-learn training pipeline (``sklearn_transformers``
wraps them) and of serving, so training and serving cannot featurise differently. This module imports
neither scikit-learn nor scipy: the worker loads only what serving needs (~65 MB less resident).

Hashes: ``H(s) = sum b_j * P^(len-1-j) mod 2^64`` (Horner, uint64 arithmetic wraps, which is exactly
mod 2^64), XOR a salt per n-gram kind, then a splitmix64 finaliser that spreads the bits before the
vocabulary lookup. These are the values the first, numpy prefix-sum implementation produced, so models
trained with it stay valid (a unit test keeps that implementation as the reference).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any

import numpy as np

from stream_tagger.kernels import featurise as kernels

MAX_PHRASE_WORDS = 3  # longest keyword phrase, in words ("experiment tracking", "question answering")
_NO_HASHES = np.zeros(0, dtype=np.uint64)
_DOC_SEP = 0  # byte that separates posts in the batch buffer; never inside a text after cleaning
_SPACE = 32

# Byte classes: ASCII letters and digits, and every byte of a multi-byte UTF-8 character (accents, CJK,
# emoji) are word bytes; the separator stays; everything else becomes a space. Upper-case ASCII letters
# become lower-case ones, as ``str.lower`` makes them (``_batch_bytes`` leaves ASCII posts to this
# table). A table lookup, independent of the locale.
_CLEAN = np.full(256, _SPACE, dtype=np.uint8)
for _lo, _hi in ((ord("a"), ord("z")), (ord("0"), ord("9")), (0x80, 0xFF)):
    _CLEAN[_lo : _hi + 1] = np.arange(_lo, _hi + 1)
_CLEAN[ord("A") : ord("Z") + 1] = np.arange(ord("a"), ord("z") + 1)
_CLEAN[_DOC_SEP] = _DOC_SEP


def _batch_bytes(texts: Sequence[str], max_chars: int) -> np.ndarray:
    """One UTF-8 buffer ``SEP ␠t0␠ SEP ␠t1␠ SEP ...`` of the posts, each cut at max_chars and lower-cased.

    The space padding gives a word's first and last letters their own n-grams (as scikit-learn's
    char_wb does). Lower-casing: an ASCII post's is ``_CLEAN``'s, in the kernel; any other post goes
    through ``str.lower``, post by post, which gives what lowering the batch at once would (the
    separators end a final sigma's context), at a quarter of the cost. ``surrogatepass`` keeps a lone
    surrogate (invalid UTF-16 from a JSON decoder) as bytes instead of failing the batch."""
    if not texts:
        return np.zeros(1, dtype=np.uint8)  # one separator, no post (the padding would make an empty one)
    cut = [t[:max_chars] for t in texts]
    joined = b"\0 " + b" \0 ".join(_utf8(cut)) + b" \0"
    if joined.count(_DOC_SEP) != len(cut) + 1:  # a post holds NUL itself: blank it out, rare path
        joined = b"\0 " + b" \0 ".join(_utf8([t.replace("\0", " ") for t in cut])) + b" \0"
    return np.frombuffer(joined, dtype=np.uint8)


def _utf8(texts: list[str]) -> list[bytes]:
    return [t.encode() if t.isascii() else t.lower().encode("utf-8", "surrogatepass") for t in texts]


@dataclass(frozen=True)
class FeatureParams:
    """Everything that decides which features a text has; stored in the model's metadata."""

    char_min: int = 2
    # 4, not 5: a quarter fewer distinct n-grams per post (featuriser + graph 0.79x per post), quality
    # level in CV and nested CV (decision 017).
    char_max: int = 4
    word_ngrams: int = 2
    max_chars: int = 4096  # long posts are cut: the first 4 kB carry the topic and bound the cost

    def __post_init__(self) -> None:
        """The featuriser's work per byte grows with the n-gram lengths: a model asking for 100,000-byte
        n-grams would still load and answer, ~400x slower. Longer n-grams would hardly ever recur anyway."""
        bounds = (("char_min", 1, None), ("char_max", 0, 16), ("word_ngrams", 0, 8), ("max_chars", 1, None))
        for name, low, high in bounds:
            value = getattr(self, name)
            if value < low or (high is not None and value > high):
                raise ValueError(
                    f"{name} is {value}, must be {low} or more" + (f" and {high} or less" if high else "")
                )

    def to_dict(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.__dict__.items()}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FeatureParams:
        """``to_dict``'s keys back (a model's metadata has more, which are ignored); raises KeyError,
        TypeError or ValueError on a missing or non-integer one."""
        return cls(*(int(values[f.name]) for f in fields(cls)))


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
    return Hashed(*kernels.hash_batch(_CLEAN, raw, params.char_min, params.char_max, params.word_ngrams))


class Vocabulary:
    """64-bit n-gram hash -> column, with an exact check so unseen n-grams are dropped, not mis-mapped.

    Fitting keeps, of the known hashes that share their top ``table_bits`` bits, only the most frequent
    (decided at fit time, so training and serving agree; the constructor rejects a vocabulary that
    breaks this). Lookups go through an open-addressing table with each key in its slot, keys ascending
    (``build_table``, kernels/featurise.pyx): a lookup reads one cache line, a miss ends at the first
    larger key, and the table (256 kB of keys for the served 13.7 k n-grams) stays in L2 cache, not a cache
    miss per n-gram. At least a third of the slots stays empty: a denser table probes longer."""

    def __init__(self, hashes: np.ndarray, table_bits: int = 20) -> None:
        self.hashes = np.ascontiguousarray(hashes, dtype=np.uint64)  # the kernels' argument types
        self.table_bits = table_bits
        slot = (self.hashes >> np.uint64(64 - table_bits)).astype(np.int64)
        if len(np.unique(slot)) != len(slot):
            raise ValueError("vocabulary hashes collide in the lookup table; build it with from_counts")
        bits = max((len(self.hashes) * 3 // 2).bit_length(), 1)
        self.shift = np.uint64(64 - bits)
        self.keys, self.cols = kernels.build_table(self.hashes, self.shift)

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
        hashes = np.ascontiguousarray(hashes, dtype=np.uint64)
        return kernels.lookup(hashes, self.keys, self.cols, self.shift)


_NO_VOCAB = Vocabulary(_NO_HASHES)  # for ``_without_ngrams``, which has no n-grams to look up


class Keywords:
    """Keyword phrases per tag (model parameters, ``keywords.json``) as word n-gram hashes.

    A phrase is hashed exactly as the featuriser hashes a post's word n-grams (same cleaning, same
    salts), so "CI/CD" and "ci cd" are one phrase and "organ" never contains "gan"; a post's hits are
    then counted in the featuriser's own pass over its words (``count_keywords``, kernels/featurise.pyx),
    ~0.5 µs per post where a regex alternation over the same lists cost ~18 µs. Phrases of up to
    ``MAX_PHRASE_WORDS`` words; the column order of the hits is the order of ``phrases``' tags."""

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
        self.keys, self.cols = kernels.build_table(self.hashes, self.shift)

    def __getstate__(self) -> dict:
        return {"phrases": self.phrases}  # hashes and table are rebuilt

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["phrases"])


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
    """What ``kernels.count_batch`` gets for a model without keywords: no tags, so no lookups."""

    tags: tuple[str, ...] = ()
    tag_index = np.zeros(0, dtype=np.int64)
    longer = np.zeros(0, dtype=np.bool_)
    shift = np.uint64(63)
    keys, cols = kernels.build_table(_NO_HASHES, shift)


_NO_KEYWORDS = _NoKeywords()

PIECE_START = "\u2581"  # "▁": marks a piece that starts a word (WordPiece marks the others, "##")


class Pieces:
    """A pretrained subword vocabulary with a vector per piece (model parameters, ``pieces.npz``).

    A post's ``embedding`` is the unit-length sum of the vectors of the pieces its words are cut into
    (``embed_words``, kernels/featurise.pyx). Why: the n-grams only know words seen in 764 training
    posts; pretrained vectors place an unseen word ("YOLOv8", "Kubeflow") near ones the model has
    weights for. Pieces are what the featuriser can meet: lower-case, of word bytes only (``_CLEAN``),
    ``PIECE_START`` first for a word-start piece. Vectors are stored float16, or float32 when given as
    float32 (per-tag scores, whose float16 rounding would show in the probabilities); the kernels get
    them as float32 (converted once, here), and sum them in float32."""

    def __init__(self, pieces: Sequence[str], vectors: np.ndarray) -> None:
        self.pieces = tuple(pieces)
        given = np.asarray(vectors)
        self.stored = given.astype(np.float32 if given.dtype == np.float32 else np.float16, copy=False)
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
        joined = np.frombuffer(b"".join(encoded), dtype=np.uint8)
        self.hashes = kernels.hash_pieces(joined, bounds, initial.view(np.uint8))
        if len(np.unique(self.hashes)) != len(self.hashes):
            raise ValueError("duplicate pieces")
        self.longest = int(np.diff(bounds).max())
        bits = max((len(self.hashes) * 4).bit_length(), 1)  # most lookups miss: keep >= 3/4 empty
        self.shift = np.uint64(64 - bits)
        self.keys, self.cols = kernels.build_table(self.hashes, self.shift)

    @property
    def dims(self) -> int:
        return self.vectors.shape[1]

    def __getstate__(self) -> dict:
        return {"pieces": self.pieces, "vectors": self.stored}  # hashes and table are rebuilt

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["pieces"], state["vectors"])


class _NoPieces:
    """What ``kernels.count_batch`` gets for a model without pieces: no dims, so no lookups."""

    shift = np.uint64(63)
    keys, cols = kernels.build_table(_NO_HASHES, shift)
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

    def term_weights(self, *, sublinear: bool) -> tuple[np.ndarray, np.ndarray]:
        """float32 [nnz] each, in ``cols``' places: each n-gram's count, or 1 + log(count) with
        ``sublinear``, and its square; the ONNX graph's two sparse inputs (``Predictor.run_graph``)."""
        return kernels.term_weights(self.counts, sublinear)


def featurize(
    texts: Sequence[str],
    params: FeatureParams,
    vocab: Vocabulary,
    keywords: Keywords | None = None,
    pieces: Pieces | None = None,
) -> BatchFeatures:
    """n-gram counts of the batch and, with ``keywords`` and ``pieces``, its keyword hits and piece
    embedding, in one pass over the text."""
    return _featurize(texts, params, vocab, keywords, pieces)


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
    params = FeatureParams(char_min=1, char_max=0, word_ngrams=0, max_chars=max_chars)
    return _featurize(texts, params, _NO_VOCAB, keywords, pieces)


def _featurize(
    texts: Sequence[str],
    params: FeatureParams,
    vocab: Vocabulary,
    keywords: Keywords | None,
    pieces: Pieces | None,
) -> BatchFeatures:
    kw = keywords or _NO_KEYWORDS
    pc = pieces or _NO_PIECES
    raw = _batch_bytes(texts, params.max_chars)
    return BatchFeatures(
        *kernels.count_batch(
            _CLEAN,
            raw,
            params.char_min,
            params.char_max,
            params.word_ngrams,
            vocab.keys,
            vocab.cols,
            vocab.shift,
            len(vocab),
            kw.keys,
            kw.cols,
            kw.tag_index,
            kw.longer.view(np.uint8),
            kw.shift,
            len(kw.tags),
            pc.keys,
            pc.cols,
            pc.shift,
            pc.vectors,
            pc.longest,
        )
    )
