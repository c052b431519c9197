"""Naive-Bayes feature weights on TF-IDF vectors (the idea of Wang & Manning's NBSVM, for 4 classes).

Why: with 764 posts, logistic regression alone cannot tell a rare but telling n-gram from a rare and
meaningless one; scaling every column by how unevenly it spreads over the classes does. The weight of
an n-gram is the largest one-vs-rest |log-count ratio| of its presence (add-``alpha`` smoothed), so
"kubeflow" or "yolo" get a large weight, "the" or "ing" a small one. Measured under 3 x 5-fold CV:
+0.008 weighted F1 and +5 points of auto-tag coverage at precision 0.97.

The scaled vectors are L2-normalised again. Since TF-IDF is itself L2-normalised, the result is just
TF-IDF with ``idf * weight`` in place of ``idf``: the ONNX graph folds the weights into its idf
(``onnx_graph.build_graph``), so serving does not change.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.preprocessing import normalize


class NBWeights(TransformerMixin, BaseEstimator):
    def __init__(self, alpha: float = 1.0) -> None:
        self.alpha = alpha

    def fit(self, X: sp.spmatrix, y: np.ndarray) -> NBWeights:
        present = (sp.csr_matrix(X) > 0).astype(np.float64)
        y = np.asarray(y)
        ratios = []
        for c in np.unique(y):
            inside = np.asarray(present[y == c].sum(axis=0)).ravel() + self.alpha
            outside = np.asarray(present[y != c].sum(axis=0)).ravel() + self.alpha
            ratios.append(np.abs(np.log((inside / inside.sum()) / (outside / outside.sum()))))
        self.weights_ = np.max(ratios, axis=0)
        return self

    def transform(self, X: sp.spmatrix) -> sp.csr_matrix:
        return normalize(sp.csr_matrix(X) @ sp.diags(self.weights_), norm="l2")
