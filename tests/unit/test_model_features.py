"""The featuriser: same n-grams whatever the batch, the locale or the neighbours of a text."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from stream_tagger.model.dataset import load_dataset
from stream_tagger.model.featurise import FeatureParams, Vocabulary, featurize, hash_ngrams
from stream_tagger.model.sklearn_transformers import Featurizer
from stream_tagger.model.versions import VOCAB_FILE, read_metadata, resolve
from tests.conftest import DATASET, MODELS

PARAMS = FeatureParams(char_min=2, char_max=4, word_ngrams=2, max_chars=4096)
CORPUS = [
    "Object detection with YOLO",
    "BERT for text classification",
    "Deploy models with Kubernetes",
    "object detection and text",
    "Café, naïve résumé 🙂 日本語",
]


def _bag(text: str) -> list[int]:
    return sorted(hash_ngrams([text], PARAMS).hashes.tolist())


def test_counts_match_a_plain_python_reference() -> None:
    # "ab cd": padded " ab cd " -> char 2..4-grams, words ab, cd and the bigram "ab cd".
    padded = " ab cd "
    chars = [padded[i : i + k] for k in (2, 3, 4) for i in range(len(padded) - k + 1)]
    assert len(_bag("ab cd")) == len(chars) + 2 + 1
    assert len(_bag("AB,  cd!!")) == len(chars) + 3  # case and separators are normalised away
    assert _bag("AB,  cd!!") == _bag("ab cd")


def test_hashes_do_not_depend_on_batch_neighbours() -> None:
    together = hash_ngrams(CORPUS, PARAMS)
    for i, text in enumerate(CORPUS):
        alone = sorted(hash_ngrams([text], PARAMS).hashes.tolist())
        assert sorted(together.hashes[together.doc == i].tolist()) == alone


def test_char_and_word_ngrams_of_the_same_string_differ() -> None:
    # "ab" is a char 2-gram of "xab" and a word of "ab": distinct salts keep them apart.
    assert not set(_bag("xab")) & set(_bag("ab")) - set(_bag("x ab"))


@pytest.mark.parametrize("text", ["", "   ", "!!!", "\0", "a\0b", "\ud800 lone surrogate", "x" * 50_000])
def test_odd_texts_never_break_the_batch(text: str) -> None:
    feat = Featurizer(char_min=2, char_max=4).fit(CORPUS)
    batch = featurize(["object detection", text, "text"], PARAMS, feat.vocabulary_)
    assert len(batch.indptr) == 4 and len(batch.oov_share) == 3
    single = featurize(["object detection"], PARAMS, feat.vocabulary_)
    first = slice(batch.indptr[0], batch.indptr[1])
    assert np.array_equal(batch.cols[first], single.cols)
    assert np.array_equal(batch.counts[first], single.counts)
    assert 0.0 <= batch.oov_share[1] <= 1.0


def test_oov_share_and_vocabulary_lookup() -> None:
    feat = Featurizer(char_min=2, char_max=4, min_df=1).fit(CORPUS)
    out = featurize([CORPUS[0], "zzqqxx"], PARAMS, feat.vocabulary_)
    assert out.oov_share[0] == 0.0
    assert out.oov_share[1] > 0.5
    unknown = np.array([np.uint64(12345)], dtype=np.uint64)
    assert feat.vocabulary_.lookup(unknown).tolist() == [-1]


def test_vocabulary_keeps_the_more_frequent_of_colliding_hashes() -> None:
    a, b = np.uint64(1 << 63), np.uint64((1 << 63) + 1)  # same top bits: same table slot
    vocab = Vocabulary.from_counts(np.array([a, b]), np.array([3, 5]), min_df=2, table_bits=8)
    assert vocab.hashes.tolist() == [int(b)]
    assert vocab.lookup(np.array([a, b])).tolist() == [-1, 0]


def test_long_posts_are_cut_at_max_chars() -> None:
    short = FeatureParams(2, 3, 1, max_chars=10)
    assert sorted(hash_ngrams(["a" * 10 + "b" * 100], short).hashes.tolist()) == sorted(
        hash_ngrams(["a" * 10], short).hashes.tolist()
    )


def test_counted_totals_equal_collected_ngrams() -> None:
    texts = [*CORPUS, "", "a", "!!", "one two three four"]
    hashed = hash_ngrams(texts, PARAMS)
    assert hashed.totals.tolist() == np.bincount(hashed.doc, minlength=len(texts)).tolist()


def test_batch_without_any_known_ngram() -> None:
    feat = Featurizer(char_min=2, char_max=4, min_df=1).fit(CORPUS)
    out = featurize(["", "qqq zzz", "!!!"], PARAMS, feat.vocabulary_)
    weights, squares = out.term_weights(sublinear=True)
    assert len(out.cols) == 0 and weights.shape == squares.shape == (0,)
    assert out.indptr.tolist() == [0, 0, 0, 0]
    assert out.oov_share.tolist() == [0.0, 1.0, 0.0]


# The first, numpy implementation (prefix-sum hashes, one sort to count), kept as the reference: the
# compiled featuriser must give bit-identical features, or models trained with it would be served
# different inputs than they were trained on.
_P = np.uint64(0x100000001B3)
_CLEAN = np.full(256, 32, dtype=np.uint8)
for _lo, _hi in ((ord("a"), ord("z")), (ord("0"), ord("9")), (0x80, 0xFF)):
    _CLEAN[_lo : _hi + 1] = np.arange(_lo, _hi + 1)


def _powers(base: np.uint64, n: int) -> np.ndarray:
    out = np.full(max(n, 1), base, dtype=np.uint64)
    out[0] = 1
    return np.cumprod(out, dtype=np.uint64)


def _mix(h: np.ndarray) -> np.ndarray:
    h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return h ^ (h >> np.uint64(31))


def _salt(kind: int) -> np.uint64:
    return np.uint64((kind * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF)


def _reference_hashes(texts: Sequence[str], params: FeatureParams) -> tuple[np.ndarray, np.ndarray]:
    """(doc, hash) of every n-gram occurrence, grouped by kind rather than by post."""
    cut = [t[: params.max_chars].replace("\0", " ") for t in texts]
    raw = np.frombuffer(("\0 " + " \0 ".join(cut) + " \0").lower().encode("utf-8", "surrogatepass"), np.uint8)
    buf = _CLEAN[raw]
    buf[raw == 0] = 0
    space = buf == 32
    keep = np.ones(len(buf), dtype=bool)
    keep[1:] = ~(space[1:] & space[:-1])
    buf = buf[keep]
    n = len(buf)
    docs = np.cumsum(buf == 0, dtype=np.int32) - 1
    s = np.zeros(n + 1, dtype=np.uint64)
    np.cumsum(buf.astype(np.uint64) * _powers(pow(int(_P), -1, 2**64), n), dtype=np.uint64, out=s[1:])
    pw = _powers(_P, n)
    sep_count = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(buf == 0, out=sep_count[1:])
    doc_parts, hash_parts = [np.zeros(0, np.int32)], [np.zeros(0, np.uint64)]
    for k in range(params.char_min, min(params.char_max, n) + 1):
        m = n - k + 1
        ok = sep_count[k : k + m] == sep_count[:m]
        hash_parts.append((pw[k - 1 : k - 1 + m] * (s[k : k + m] - s[:m]))[ok] ^ _salt(k))
        doc_parts.append(docs[:m][ok])
    is_word = np.zeros(n + 2, dtype=np.int8)
    is_word[1:-1] = (buf != 32) & (buf != 0)
    edges = is_word[1:] - is_word[:-1]
    w_start, w_end = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    w_doc = docs[w_start]
    for k in range(1, min(params.word_ngrams, len(w_doc)) + 1):
        m = len(w_doc) - k + 1
        same = w_doc[k - 1 :] == w_doc[:m]
        start, end = w_start[:m][same], w_end[k - 1 :][same]
        hash_parts.append((pw[end - 1] * (s[end] - s[start])) ^ _salt(100 + k))
        doc_parts.append(w_doc[:m][same])
    return np.concatenate(doc_parts), _mix(np.concatenate(hash_parts))


def _reference_features(
    texts: Sequence[str], params: FeatureParams, vocab_hashes: np.ndarray
) -> tuple[np.ndarray, ...]:
    doc, hashes = _reference_hashes(texts, params)
    totals = np.bincount(doc, minlength=len(texts))
    n_cols = max(len(vocab_hashes), 1)
    col = np.searchsorted(vocab_hashes, hashes)
    known = (col < len(vocab_hashes)) & (vocab_hashes[np.minimum(col, n_cols - 1)] == hashes)
    keys, counts = np.unique(doc[known].astype(np.int64) * n_cols + col[known], return_counts=True)
    indptr = np.searchsorted(keys, np.arange(len(texts) + 1) * n_cols)
    hits = np.bincount(keys // n_cols, weights=counts, minlength=len(texts))
    oov = np.where(totals > 0, 1.0 - hits / np.maximum(totals, 1), 0.0).astype(np.float32)
    return indptr, keys % n_cols, counts.astype(np.float32), oov


NASTY = [
    "",
    "   ",
    "!!! ... ???",
    "\0",
    "a\0b \0\0 c",
    "\ud800 lone surrogate \udfff",
    "Café naïve RÉSUMÉ 🙂🙂 日本語のテキスト",
    "İstanbul ＦＵＬＬ-ＷＩＤＴＨ ß",
    "see https://example.com/a_b?q=1&x=2 (v2.0)",
    "word " * 4000,  # 20 kB
    "é" * 5000,
]


@pytest.mark.parametrize(
    "params",
    [
        pytest.param(None, id="served"),  # the served model's own parameters and vocabulary
        FeatureParams(2, 5, 2),
        FeatureParams(1, 3, 1, 100),
        FeatureParams(3, 6, 3, 50),
    ],
    ids=str,
)
def test_features_are_bit_identical_to_the_numpy_reference(params: FeatureParams | None) -> None:
    texts = [*load_dataset([DATASET]).texts, *NASTY]
    if params is None:
        version = resolve(MODELS / "current")
        params = FeatureParams.from_dict(read_metadata(version)["featurizer"])
        vocab = Vocabulary(np.load(version / VOCAB_FILE))
    else:
        vocab = (
            Featurizer(params.char_min, params.char_max, params.word_ngrams, params.max_chars)
            .fit(texts[:300])
            .vocabulary_
        )
    for batch in (texts, texts[-len(NASTY) :], *([t] for t in NASTY)):
        got = featurize(batch, params, vocab)
        want = _reference_features(batch, params, vocab.hashes)
        for name, a, b in zip(
            ("indptr", "cols", "counts", "oov_share"),
            (got.indptr, got.cols, got.counts, got.oov_share),
            want,
            strict=True,
        ):
            assert a.dtype == b.dtype and np.array_equal(a, b), name
        doc, hashes = _reference_hashes(batch, params)
        hashed = hash_ngrams(batch, params)
        assert np.array_equal(hashed.totals, np.bincount(doc, minlength=len(batch)))
        order = np.lexsort((hashes, doc))
        mine = np.lexsort((hashed.hashes, hashed.doc))
        assert np.array_equal(hashed.doc[mine], doc[order]) and np.array_equal(
            hashed.hashes[mine], hashes[order]
        )


def test_lower_casing_post_by_post_is_the_whole_batchs() -> None:
    # ASCII posts are lowered by the cleaning table, others by str.lower one post at a time: the same
    # bytes as lowering the whole batch, final sigmas at a post's edges included.
    texts = ["ΟΔΟΣ", "ΟΔΟΣ.", "Σ", "AΣ", "ΣA", "HELLO World 42", "ÀB Σ'", "ΑΣ'", "'Σ", "İSTANBUL", "ZZ"]
    for batch in (texts, texts[::-1], *([t] for t in texts)):
        doc, hashes = _reference_hashes(batch, PARAMS)
        hashed = hash_ngrams(batch, PARAMS)
        assert np.array_equal(hashed.doc, np.sort(doc, kind="stable"))
        for d in range(len(batch)):
            assert sorted(hashed.hashes[hashed.doc == d].tolist()) == sorted(hashes[doc == d].tolist())


def test_an_empty_batch_has_no_posts() -> None:
    vocab = Vocabulary(np.load(resolve(MODELS / "current") / VOCAB_FILE))
    feats = featurize([], PARAMS, vocab)
    assert feats.indptr.tolist() == [0] and len(feats.oov_share) == 0
    assert feats.term_weights(sublinear=True)[0].shape == (0,)
    assert hash_ngrams([], PARAMS).n_docs == 0


def test_feature_params_come_back_from_a_models_metadata() -> None:
    params = FeatureParams(3, 6, 1, 100)
    assert FeatureParams.from_dict({**params.to_dict(), "min_df": 2, "vocabulary_size": 9}) == params
    with pytest.raises(ValueError):
        FeatureParams.from_dict({**params.to_dict(), "char_max": "five"})
    with pytest.raises(KeyError):
        FeatureParams.from_dict({"char_min": 2})
