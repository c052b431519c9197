"""Keyword hits inside the featuriser: whole words and phrases, leftmost-longest, the same in training
and serving, whatever the batch."""

from __future__ import annotations

import re

import numpy as np
import pytest

from stream_tagger.model.dataset import load_dataset
from stream_tagger.model.featurise import FeatureParams, Keywords, Vocabulary, featurize, keyword_hits
from stream_tagger.model.keyword_baseline import KEYWORDS
from stream_tagger.model.sklearn_transformers import KeywordHits
from stream_tagger.settings import APPROVED_TAGS
from tests.conftest import DATASET

LISTS = {tag: KEYWORDS[tag] for tag in APPROVED_TAGS}
NASTY = [
    "",
    "   ",
    "!!!",
    "\0",
    "a\0b docker",
    "\ud800 docker \udfff",
    "Café naïve 🙂 日本語 image",
    "x" * 20_000,
]


@pytest.fixture(scope="module")
def keywords() -> Keywords:
    return Keywords(LISTS)


def _counts(texts: list[str], keywords: Keywords, max_chars: int = 4096) -> np.ndarray:
    return np.rint(np.expm1(keyword_hits(texts, keywords, max_chars))).astype(int)


def _reference(text: str, keywords: Keywords, max_chars: int = 4096) -> np.ndarray:
    """Plain Python: the cleaned words, scanned left to right, longest listed phrase first."""

    def words(t: str) -> list[bytes]:
        cleaned = t[:max_chars].lower().encode("utf-8", "surrogatepass")
        return re.sub(rb"[^a-z0-9\x80-\xff]+", b" ", cleaned).split()

    tag_of = {tuple(words(p)): t for t, tag in enumerate(keywords.tags) for p in keywords.phrases[tag]}
    longest = max(map(len, tag_of))
    out, w, i = np.zeros(len(keywords.tags), dtype=int), words(text), 0
    while i < len(w):
        k = next((k for k in range(longest, 0, -1) if tuple(w[i : i + k]) in tag_of and i + k <= len(w)), 0)
        if k:
            out[tag_of[tuple(w[i : i + k])]] += 1
        i += max(k, 1)
    return out


def test_hand_written_texts(keywords: Keywords) -> None:
    got = _counts(
        [
            "Deploy with Docker and MLflow",
            "An organ of the body; Imagery",
            "Object detection with YOLO",
            "GPT-2 on CI/CD",
            "IMAGE SEGMENTATION",
        ],
        keywords,
    )
    assert got[0].tolist() == [0, 3, 0, 0]
    assert got[1].tolist() == [0, 0, 0, 0]  # "organ" does not hit "gan", "imagery" not "image"
    assert got[2].tolist() == [2, 0, 0, 0]  # the phrase once (not also "detection") + yolo
    assert got[3].tolist() == [0, 1, 1, 0]  # "gpt-2" is one phrase, not "gpt" too; "ci/cd" = "ci cd"
    assert got[4].tolist() == [2, 0, 0, 0]


def test_counts_equal_a_plain_python_scan(keywords: Keywords) -> None:
    texts = [*load_dataset([DATASET]).texts, *NASTY, "object object detection detection"]
    want = np.array([_reference(t, keywords) for t in texts])
    assert want.sum() > 1000  # the dataset does name its keywords
    assert np.array_equal(_counts(texts, keywords), want)
    short = ["docker " * 10 + "kubernetes"]
    assert _counts(short, keywords, max_chars=20).tolist() == [_reference(short[0], keywords, 20).tolist()]


def test_three_word_phrases_and_their_prefixes() -> None:
    kw = Keywords({"a": ("model", "model registry server"), "b": ("registry",)})
    got = _counts(["model registry server", "model registry", "model registry servers"], kw)
    assert got.tolist() == [[1, 0], [1, 1], [1, 1]]


def test_serving_computes_the_training_columns_whatever_the_batch(keywords: Keywords) -> None:
    texts = [*load_dataset([DATASET]).texts[:50], *NASTY]
    vocab = Vocabulary(np.zeros(0, dtype=np.uint64))
    served = featurize(texts, FeatureParams(), vocab, keywords).keyword_hits
    assert served.dtype == np.float32 and served.shape == (len(texts), len(APPROVED_TAGS))
    assert np.array_equal(served, keyword_hits(texts, keywords, FeatureParams().max_chars))
    alone = np.vstack([featurize([t], FeatureParams(), vocab, keywords).keyword_hits for t in texts])
    assert np.array_equal(alone, served)
    trained = KeywordHits(LISTS).fit(texts).transform(texts).toarray()
    assert np.array_equal(trained, served.astype(np.float64))
    assert featurize(texts, FeatureParams(), vocab).keyword_hits.shape == (len(texts), 0)


@pytest.mark.parametrize(
    ("lists", "message"),
    [
        ({"a": ("one two three four",)}, "4 words after cleaning"),
        ({"a": ("!!!",)}, "0 words after cleaning"),
        ({"a": ("CI/CD",), "b": ("ci cd",)}, "also listed under 'a'"),
        ({"a": (3,)}, "not a string"),
    ],
)
def test_bad_lists_are_refused(lists: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Keywords(lists)


def test_the_baseline_lists_compile() -> None:
    kw = Keywords(LISTS)
    assert kw.tags == APPROVED_TAGS
    assert (kw.tag_index >= 0).sum() == sum(map(len, LISTS.values()))  # no two phrases clean alike
