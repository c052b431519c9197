"""The fitted TF-IDF + linear model as a small ONNX graph over pre-computed sparse term weights.

Built with ``onnx.helper`` rather than skl2onnx: skl2onnx converts a TfidfTransformer + classifier only
over a dense input as wide as the vocabulary, or a TfidfVectorizer through ONNX's string operators
(the slow path this design exists to avoid). The graph below is 7 nodes (+2 per dense input, +5 for
per-tag piece scores), does exactly what scikit-learn's ``TfidfTransformer(norm="l2")`` (from its term
weights on) and ``LogisticRegression.predict_proba`` (multinomial) compute (optionally with
``NBWeights`` between them, folded into idf), and its parity with the scikit-learn pipeline is tested
to 1e-4.

Inputs ``term_weights`` and ``term_weights_squared`` (sparse CSR float32 [B, V], V = the vocabulary:
each n-gram's term-frequency weight, and its square, in the same places), plus ``keyword_hits``
(float32 [B, K], log1p of the keyword hits per tag) in models trained with keyword columns and
``embedding`` (float32 [B, D], the unit-length piece embedding; or [B, C + L], the unit-length sum of
per-tag piece logits and of the L coordinates whose length divides them, see ``piece_scores``) in
models trained with piece vectors; output ``probabilities`` (float32 [B, C], columns in label order).
The sparse products are onnxruntime's ``com.microsoft`` ``SparseToDenseMatMul`` (standard ONNX has no
sparse operator; decision 027). The graph's metadata property ``term_weights`` says how the featuriser
makes the weights from counts (decision 015).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression

from stream_tagger.model.versions import (
    INPUT_EMBEDDING,
    INPUT_KEYWORD_HITS,
    INPUT_TERM_WEIGHTS,
    INPUT_TERM_WEIGHTS_SQUARED,
    OUTPUT,
    TERM_WEIGHTS_PROP,
)

OPSET = 17
#: onnxruntime's own operators (``SparseToDenseMatMul``), version 1 of their domain.
MS_DOMAIN = "com.microsoft"


def build_graph(
    tfidf: TfidfTransformer,
    clf: LogisticRegression,
    labels: tuple[str, ...],
    version: str,
    column_weights: np.ndarray | None = None,
    keyword_columns: int = 0,
    keyword_scale: float = 1.0,
    embedding_columns: int = 0,
    embedding_scale: float = 1.0,
    piece_length_columns: int = 0,
) -> onnx.ModelProto:
    """``column_weights`` (``NBWeights.weights_``) scale the L2-normalised TF-IDF columns before a second
    L2 norm; as the first norm cancels out, they simply multiply idf.

    Dense inputs follow the normalised n-gram vector in the classifier's columns (so outside its norm),
    in this order: ``keyword_columns`` columns that are ``keyword_scale`` x the graph input
    ``keyword_hits``, then ``embedding_columns`` that are ``embedding_scale`` x ``embedding``. Each
    adds its logits with one small MatMul before the intercept.

    With ``piece_length_columns`` the graph's ``embedding`` input is instead the featuriser's unit-length
    sum of the rows of :func:`piece_scores` ([B, C + piece_length_columns]): per-tag piece logits, then
    the coordinates whose length divides them; their ratio is the embedding's logits whatever the norm
    (zero without pieces)."""
    if tfidf.norm != "l2" or not tfidf.use_idf:
        raise ValueError("the export supports TfidfTransformer(norm='l2', use_idf=True) only")
    coef, intercept = _softmax_coef(clf)
    n_classes = coef.shape[0]
    dense = [
        (INPUT_KEYWORD_HITS, keyword_columns, keyword_scale),
        (INPUT_EMBEDDING, embedding_columns, embedding_scale),
    ]
    n_ngrams = coef.shape[1] - keyword_columns - embedding_columns
    dense_coef, start = [], n_ngrams
    for _, columns, scale in dense:
        dense_coef.append(scale * coef[:, start : start + columns].T)  # [columns, C]
        start += columns
    coef = coef[:, :n_ngrams]
    idf = tfidf.idf_.astype(np.float64)
    if column_weights is not None:
        idf = idf * np.asarray(column_weights, dtype=np.float64)
    inits = [
        numpy_helper.from_array(np.ascontiguousarray((idf[:, None] * coef.T).astype(np.float32)), "coef_idf"),
        numpy_helper.from_array((idf**2)[:, None].astype(np.float32), "idf_squared"),
        numpy_helper.from_array(intercept.astype(np.float32), "intercept"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "eps"),
    ]
    # With t = a post's term weights, sum(t * idf * coef) are its unnormalised logits and sum(t^2 * idf^2)
    # the squared L2 norm of its TF-IDF vector, which only scales the logits: two sparse products over
    # the n-grams the post has, none over padding or the rest of the vocabulary. The featuriser makes t
    # and t^2, sublinear or not as ``TERM_WEIGHTS_PROP`` says: a table lookup per count there is cheaper
    # than a Log here.
    nodes = [
        helper.make_node(
            "SparseToDenseMatMul", [INPUT_TERM_WEIGHTS, "coef_idf"], ["raw"], domain=MS_DOMAIN
        ),  # [B, C]
        helper.make_node(
            "SparseToDenseMatMul", [INPUT_TERM_WEIGHTS_SQUARED, "idf_squared"], ["ss"], domain=MS_DOMAIN
        ),  # [B, 1]
        helper.make_node("Sqrt", ["ss"], ["norm"]),
        helper.make_node("Max", ["norm", "eps"], ["norm_safe"]),
        helper.make_node("Div", ["raw", "norm_safe"], ["logits0"]),
    ]
    inputs = [
        helper.make_sparse_tensor_value_info(name, TensorProto.FLOAT, ["batch", len(idf)])
        for name in (INPUT_TERM_WEIGHTS, INPUT_TERM_WEIGHTS_SQUARED)
    ]
    summed = "logits0"
    for (name, columns, _), weights in zip(dense, dense_coef, strict=True):
        if not columns:
            continue
        if name == INPUT_EMBEDDING and piece_length_columns:
            width = n_classes + piece_length_columns
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", width]))
            split = np.array([n_classes, piece_length_columns], dtype=np.int64)
            inits.append(numpy_helper.from_array(split, "scores_split"))
            nodes += [
                helper.make_node("Split", [name, "scores_split"], ["piece_sums", "piece_axes"], axis=1),
                helper.make_node("ReduceL2", ["piece_axes"], ["piece_length"], axes=[1], keepdims=1),
                helper.make_node("Max", ["piece_length", "eps"], ["piece_length_safe"]),
                helper.make_node("Div", ["piece_sums", "piece_length_safe"], [f"{name}_logits"]),  # [B, C]
            ]
        else:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["batch", columns]))
            inits.append(numpy_helper.from_array(weights.astype(np.float32), f"{name}_coef"))
            nodes.append(helper.make_node("MatMul", [name, f"{name}_coef"], [f"{name}_logits"]))  # [B, C]
        nodes.append(helper.make_node("Add", [summed, f"{name}_logits"], [f"logits_{name}"]))
        summed = f"logits_{name}"
    nodes += [
        helper.make_node("Add", [summed, "intercept"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "stream_tagger_tfidf_linear",
        inputs,
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", len(labels)])],
        initializer=inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET), helper.make_opsetid(MS_DOMAIN, 1)],
        producer_name="stream-tagger",
    )
    model.ir_version = 8  # readable by every onnxruntime >= 1.10
    term_weights = "sublinear" if tfidf.sublinear_tf else "counts"
    helper.set_model_props(
        model, {"labels": ",".join(labels), "version": version, TERM_WEIGHTS_PROP: term_weights}
    )
    onnx.checker.check_model(model, full_check=True)
    return model


def _softmax_coef(clf: LogisticRegression) -> tuple[np.ndarray, np.ndarray]:
    """The classifier's coefficients [C, columns] and intercept [C] as softmax logits, in float64."""
    coef = np.asarray(clf.coef_, dtype=np.float64)
    intercept = np.asarray(clf.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:  # binary LogisticRegression keeps one row; softmax needs both sides
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    return coef, intercept


def piece_scores(clf: LogisticRegression, vectors: np.ndarray, scale: float, norm_axes: int) -> np.ndarray:
    """float32 [pieces, C + max(norm_axes, 1)]: each piece's logits, ``scale`` x its vector (``vectors``
    [pieces, D], the classifier's last D columns) times the classifier's coefficients; then its first
    ``norm_axes`` coordinates, or with 0 a column of ones (the featuriser's sum counts the pieces).

    The classifier is linear in a post's embedding, the sum of its piece vectors divided by the length
    of the sum's first ``norm_axes`` coordinates (or by the count): so the embedding's logits are the
    sum of these per-piece logits divided by that length. The featuriser sums C + ``norm_axes``
    numbers per piece instead of D, and the graph divides (``build_graph(piece_length_columns=...)``)."""
    coef = _softmax_coef(clf)[0][:, -vectors.shape[1] :]
    vectors = np.asarray(vectors, dtype=np.float64)
    scores = scale * vectors @ coef.T
    length = vectors[:, :norm_axes] if norm_axes else np.ones((len(vectors), 1))
    return np.hstack([scores, length]).astype(np.float32)
