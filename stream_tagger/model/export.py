"""The fitted TF-IDF + linear model as a small ONNX graph over pre-computed n-gram ids.

Built with ``onnx.helper`` rather than skl2onnx: skl2onnx converts a TfidfTransformer + classifier only
over a dense input as wide as the vocabulary, or a TfidfVectorizer through ONNX's string operators
(the slow path this design exists to avoid). The graph below is ten nodes, does exactly what
scikit-learn's ``TfidfTransformer(norm="l2")`` and ``LogisticRegression.predict_proba`` (multinomial)
compute, and its parity with the scikit-learn pipeline is tested to 1e-4.

Inputs ``ids`` (int64 [B, T], vocabulary columns) and ``tf`` (float32 [B, T], counts, 0 = padding);
output ``probabilities`` (float32 [B, C], columns in label order).
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression

OPSET = 17
INPUT_IDS = "ids"
INPUT_TF = "tf"
OUTPUT = "probabilities"


def build_graph(
    tfidf: TfidfTransformer, clf: LogisticRegression, labels: tuple[str, ...], version: str
) -> onnx.ModelProto:
    if tfidf.norm != "l2" or not tfidf.use_idf:
        raise ValueError("the export supports TfidfTransformer(norm='l2', use_idf=True) only")
    coef = np.asarray(clf.coef_, dtype=np.float64)
    intercept = np.asarray(clf.intercept_, dtype=np.float64)
    if coef.shape[0] == 1:  # binary LogisticRegression keeps one row; softmax needs both sides
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    inits = [
        numpy_helper.from_array(tfidf.idf_.astype(np.float32), "idf"),
        numpy_helper.from_array(np.ascontiguousarray(coef.T, dtype=np.float32), "coef"),
        numpy_helper.from_array(intercept.astype(np.float32), "intercept"),
        numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1"),
        numpy_helper.from_array(np.array(1e-12, dtype=np.float32), "eps"),
        numpy_helper.from_array(np.array(1.0, dtype=np.float32), "one"),
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
    ]
    nodes = []
    tf_in = INPUT_TF
    if tfidf.sublinear_tf:
        # 1 + log(tf) where tf > 0; padding (tf = 0) stays 0 (Where discards the -inf of log(0)).
        nodes += [
            helper.make_node("Greater", [INPUT_TF, "zero"], ["present"]),
            helper.make_node("Log", [INPUT_TF], ["log_tf"]),
            helper.make_node("Add", ["log_tf", "one"], ["log_tf1"]),
            helper.make_node("Where", ["present", "log_tf1", "zero"], ["tf_sub"]),
        ]
        tf_in = "tf_sub"
    nodes += [
        helper.make_node("Gather", ["idf", INPUT_IDS], ["idf_g"]),
        helper.make_node("Mul", [tf_in, "idf_g"], ["w"]),
        helper.make_node("Mul", ["w", "w"], ["w2"]),
        helper.make_node("ReduceSum", ["w2", "axis1"], ["ss"], keepdims=1),
        helper.make_node("Sqrt", ["ss"], ["norm"]),
        helper.make_node("Max", ["norm", "eps"], ["norm_safe"]),
        helper.make_node("Div", ["w", "norm_safe"], ["wn"]),
        helper.make_node("Unsqueeze", ["wn", "axis1"], ["wn3"]),  # [B, 1, T]
        helper.make_node("Gather", ["coef", INPUT_IDS], ["coef_g"]),  # [B, T, C]
        helper.make_node("MatMul", ["wn3", "coef_g"], ["logits3"]),  # [B, 1, C]
        helper.make_node("Squeeze", ["logits3", "axis1"], ["logits0"]),
        helper.make_node("Add", ["logits0", "intercept"], ["logits"]),
        helper.make_node("Softmax", ["logits"], [OUTPUT], axis=-1),
    ]
    graph = helper.make_graph(
        nodes,
        "stream_tagger_tfidf_linear",
        [
            helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "terms"]),
            helper.make_tensor_value_info(INPUT_TF, TensorProto.FLOAT, ["batch", "terms"]),
        ],
        [helper.make_tensor_value_info(OUTPUT, TensorProto.FLOAT, ["batch", len(labels)])],
        initializer=inits,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="stream-tagger"
    )
    model.ir_version = 8  # readable by every onnxruntime >= 1.10
    helper.set_model_props(model, {"labels": ",".join(labels), "version": version})
    onnx.checker.check_model(model, full_check=True)
    return model
