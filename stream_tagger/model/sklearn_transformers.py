"""scikit-learn face of the featuriser (n-gram counts, keyword hits, piece embedding): what the training
pipeline fits and transforms with.

Kept apart from ``features`` so that serving never imports scikit-learn or scipy; both halves call
the same compiled kernels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin

from stream_tagger.model.featurise import (
    BatchFeatures,
    FeatureParams,
    Keywords,
    Pieces,
    Vocabulary,
    featurize,
    hash_ngrams,
    keyword_hits,
    piece_embedding,
)


def to_csr(batch: BatchFeatures, n_columns: int) -> sp.csr_matrix:
    """The same counts as a scipy matrix (posts are rows)."""
    return sp.csr_matrix(
        (batch.counts.astype(np.float64), batch.cols, batch.indptr), shape=(len(batch.oov_share), n_columns)
    )


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

    def fit(self, texts: Sequence[str], y: object = None, posts: int | None = None) -> Featurizer:
        """``posts``: only the first ``posts`` texts count towards document frequency (the real posts;
        the augmentation copies of their titles and descriptions follow them). Counting the copies
        would let an n-gram of a single post pass min_df=2 through its own copy (measured on five
        held-out folds: weighted F1 0.893 that way, 0.907 with the posts alone)."""
        hashed = hash_ngrams(list(texts)[:posts], self.params)
        pairs = np.unique(np.stack([hashed.hashes, hashed.doc.astype(np.uint64)]), axis=1)
        hashes, df = np.unique(pairs[0], return_counts=True)
        self.vocabulary_ = Vocabulary.from_counts(hashes, df, self.min_df)
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return to_csr(featurize(list(texts), self.params, self.vocabulary_), len(self.vocabulary_))


class KeywordHits(TransformerMixin, BaseEstimator):
    """log1p of each text's keyword hits per tag (``keywords`` order) as dense columns.

    Why: the n-gram vector is L2-normalised, so in a long post the evidence of a few telling words is
    diluted; these counts are not (+0.005 to +0.012 weighted F1 under 5 x 5-fold CV, README). Nothing
    is learned: ``fit`` compiles the lists. The texts are cut at ``max_chars`` as the n-grams are."""

    def __init__(self, keywords: Mapping[str, Sequence[str]], max_chars: int = 4096) -> None:
        self.keywords = keywords
        self.max_chars = max_chars

    def fit(self, texts: Sequence[str], y: object = None, **fit_params: object) -> KeywordHits:
        """``fit_params``: a FeatureUnion hands every part the parameters meant for the n-gram part
        (``features__posts``); nothing here depends on them."""
        self.keywords_ = Keywords(self.keywords)
        return self

    def transform(self, texts: Sequence[str]) -> sp.csr_matrix:
        return sp.csr_matrix(keyword_hits(list(texts), self.keywords_, self.max_chars).astype(np.float64))


class PieceEmbedding(TransformerMixin, BaseEstimator):
    """Each text's unit-length sum of pretrained piece vectors (``features.Pieces``) as dense columns.

    Why: pretrained vectors carry what 764 posts cannot teach, that an unseen word is close to known
    ones (all-MiniLM-L6-v2's pieces, ``pretrained``: weighted F1 0.913 -> 0.921, mlops F1 0.850 -> 0.880
    under 2 x 5-fold CV).
    Nothing is learned: ``fit`` only builds the lookup of the given pieces."""

    def __init__(self, pieces: Sequence[str], vectors: np.ndarray, max_chars: int = 4096) -> None:
        self.pieces = pieces
        self.vectors = vectors
        self.max_chars = max_chars

    def fit(self, texts: Sequence[str], y: object = None, **fit_params: object) -> PieceEmbedding:
        """``fit_params``: meant for the n-gram part of the FeatureUnion (see ``KeywordHits.fit``)."""
        self.pieces_ = Pieces(self.pieces, self.vectors)
        return self

    def __getstate__(self) -> dict:
        """Without the fitted lookup, rebuilt on load: pickled beside the parameters it would store the
        3 MB of vectors twice (joblib writes each array on its own)."""
        state = dict(super().__getstate__())  # a copy: scikit-learn may hand out __dict__ itself
        if state.pop("pieces_", None) is not None:
            state["_fitted"] = True
        return state

    def __setstate__(self, state: dict) -> None:
        fitted = state.pop("_fitted", False)
        super().__setstate__(state)
        if fitted:
            self.pieces_ = Pieces(self.pieces, self.vectors)

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        return piece_embedding(list(texts), self.pieces_, self.max_chars).astype(np.float64)
