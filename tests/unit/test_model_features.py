"""The featuriser: same n-grams whatever the batch, the locale or the neighbours of a text."""

from __future__ import annotations

import numpy as np
import pytest

from stream_tagger.model.features import FeatureParams, Featurizer, Vocabulary, featurize, hash_ngrams

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
    ids, tf = batch.padded()
    assert ids.shape == tf.shape and ids.shape[0] == 3
    single_ids, single_tf = featurize(["object detection"], PARAMS, feat.vocabulary_).padded()
    row = {int(i): float(t) for i, t in zip(ids[0], tf[0], strict=True) if t}
    assert row == {int(i): float(t) for i, t in zip(single_ids[0], single_tf[0], strict=True) if t}
    assert 0.0 <= batch.oov_share[1] <= 1.0


def test_padded_rows_and_csr_agree() -> None:
    feat = Featurizer(char_min=2, char_max=4, min_df=1).fit(CORPUS)
    batch = featurize(CORPUS, PARAMS, feat.vocabulary_)
    dense = batch.to_csr(len(feat.vocabulary_)).toarray()
    ids, tf = batch.padded(np.array([3, 1]))
    for r, row in enumerate((3, 1)):
        assert tf[r].sum() == dense[row].sum()
        assert np.array_equal(np.bincount(ids[r], weights=tf[r], minlength=dense.shape[1]), dense[row])


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
    ids, tf = out.padded()
    assert len(out.cols) == 0 and ids.shape == (3, 1) and not tf.any()
    assert out.oov_share.tolist() == [0.0, 1.0, 0.0]
