"""scikit-learn face of the featuriser (n-gram counts, keyword hits, piece embedding): what the training
pipeline fits and transforms with.

Kept apart from ``featurise`` so that serving never imports scikit-learn or scipy; both halves call
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
        char_min: int = FeatureParams.char_min,
        char_max: int = FeatureParams.char_max,
        word_ngrams: int = FeatureParams.word_ngrams,
        max_chars: int = FeatureParams.max_chars,
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
    diluted; these counts are not (+0.005 to +0.012 weighted F1 under 5 x 5-fold CV). Nothing
    is learned: ``fit`` compiles the lists. The texts are cut at ``max_chars`` as the n-grams are."""

    def __init__(
        self, keywords: Mapping[str, Sequence[str]], max_chars: int = FeatureParams.max_chars
    ) -> None:
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
    """Each text's piece embedding (``featurise.Pieces``) as dense columns: the sum of its pretrained piece
    vectors scaled to unit length, or with ``norm_axes`` divided by the length of its first
    ``norm_axes`` coordinates (the main axes), or with ``norm_axes=0`` by the number of pieces (the
    mean); zero when no piece matched.

    Why: pretrained vectors carry what 764 posts cannot teach, that an unseen word is close to known
    ones (all-MiniLM-L6-v2's pieces, ``pretrained_pieces``: weighted F1 0.913 -> 0.921, mlops F1
    0.850 -> 0.880 under 2 x 5-fold CV). With ``norm_axes`` the classifier's logits are the sum of
    per-piece logits divided by a length that a few coordinates per piece give, so they fold into the
    pieces at export (``onnx_graph.piece_scores``); the unit length of all axes would need every
    coordinate.
    The kernel computes them: its unit-length sum divided by the length of its first ``norm_axes``
    coordinates is the same ratio, whatever the norm; for the mean, each vector gets a last coordinate
    1, which the kernel's sum turns into the count.
    Nothing is learned: ``fit`` only builds the lookup of the given pieces."""

    def __init__(
        self,
        pieces: Sequence[str],
        vectors: np.ndarray,
        max_chars: int = FeatureParams.max_chars,
        norm_axes: int | None = None,
    ) -> None:
        self.pieces = pieces
        self.vectors = vectors
        self.max_chars = max_chars
        self.norm_axes = norm_axes

    def _lookup(self) -> Pieces:
        if self.norm_axes != 0:
            return Pieces(self.pieces, self.vectors)
        vectors = np.asarray(self.vectors)
        return Pieces(self.pieces, np.hstack([vectors, np.ones((len(vectors), 1), dtype=vectors.dtype)]))

    def fit(self, texts: Sequence[str], y: object = None, **fit_params: object) -> PieceEmbedding:
        """``fit_params``: meant for the n-gram part of the FeatureUnion (see ``KeywordHits.fit``)."""
        self.pieces_ = self._lookup()
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
        state.setdefault("norm_axes", None)  # pickled before the option existed
        super().__setstate__(state)
        if fitted:
            self.pieces_ = self._lookup()

    def transform(self, texts: Sequence[str]) -> np.ndarray:
        out = piece_embedding(list(texts), self.pieces_, self.max_chars).astype(np.float64)
        if self.norm_axes is None:
            return out
        if self.norm_axes == 0:  # [sum, count] / norm
            out, length = out[:, :-1], out[:, -1:]
        else:
            length = np.linalg.norm(out[:, : self.norm_axes], axis=1, keepdims=True)
        return np.divide(out, length, out=np.zeros_like(out), where=length > 0)
