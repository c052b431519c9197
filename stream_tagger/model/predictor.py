"""Serving: texts -> class probabilities with the ONNX model of one version folder.

Featurisation is one compiled pass over up to ``PREDICT_ROWS`` posts (see ``featurise``): n-gram counts
and, for models with ``keywords.json``, the keyword hits per tag, for models with ``pieces.npz`` the
piece embedding, and each n-gram's term-frequency weight; the ONNX graph does the rest of TF-IDF and the
linear model, over the n-grams as a sparse matrix.
onnxruntime runs with one intra-op thread: the worker scales by running several batches at once, and
onnxruntime releases the GIL while it computes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import onnxruntime as ort

from stream_tagger.model.featurise import (
    BatchFeatures,
    FeatureParams,
    Keywords,
    Pieces,
    Vocabulary,
    featurize,
)
from stream_tagger.model.versions import (
    INPUT_EMBEDDING,
    INPUT_KEYWORD_HITS,
    INPUT_TERM_WEIGHTS,
    INPUT_TERM_WEIGHTS_SQUARED,
    KEYWORDS_FILE,
    METADATA_FILE,
    MODEL_FILE,
    OUTPUT,
    PIECES_FILE,
    TERM_WEIGHTS_PROP,
    VOCAB_FILE,
    ModelLoadError,
    check_digests,
    read_keywords,
    read_metadata,
    read_pieces,
    resolve,
)
from stream_tagger.settings import APPROVED_TAGS

__all__ = ["BatchPrediction", "ModelLoadError", "Predictor", "sparse_input"]

T = TypeVar("T")

#: Where the graph's sparse inputs live: the featuriser's arrays, in this process's memory.
CPU = ort.OrtDevice.make("cpu", 0)
#: Most posts ``predict`` featurises and scores at once. The n-grams of 512 posts (columns, weights and
#: squares, ~2.6 MB) are still in the CPU's cache when the graph reads them; a whole chunk of 2,048
#: costs ~5% more per post on the benchmark machine. A call to the featuriser or the graph costs ~15 µs.
PREDICT_ROWS = 512
#: Largest difference allowed between the smoke probabilities stored at export and those at load: the
#: same graph on another machine differs in the last float bits (~1e-7), a broken one by far more.
SMOKE_TOLERANCE = 1e-4
#: What the smoke test predicts: a post per tag and text the featuriser must survive.
SMOKE_TEXTS = (
    "Fine-tuning BERT for named entity recognition in clinical notes",
    "Real-time object detection with YOLO on an edge GPU",
    "Serving models with feature stores, CI/CD and monitoring in production",
    "A list of awesome resources",
    "",
    "ÜNÎCØDÉ 😀 \u200b\u202e " + "x" * 300,
)


def smoke(predictor: Predictor) -> dict[str, list]:
    """What the export stores in metadata.json for ``Predictor`` to check at load."""
    return {"texts": list(SMOKE_TEXTS), "probs": predictor.predict(SMOKE_TEXTS).probs.tolist()}


@dataclass(frozen=True)
class BatchPrediction:
    probs: np.ndarray  # float32 [n, len(labels)], rows sum to 1, columns in ``labels`` order
    oov_share: np.ndarray  # float32 [n], share of the text's n-grams unseen in training (drift signal)


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path}: missing") from exc
    except Exception as exc:  # onnxruntime raises its own untyped errors for corrupt files
        if not path.is_file():
            raise ModelLoadError(f"{path}: missing") from exc
        raise ModelLoadError(f"{path}: not a loadable ONNX model ({exc})") from exc


def _checked(build: Callable[..., T], path: Path, *args: object) -> T:
    """``build(*args)``, its ValueError reported against the file the arguments came from."""
    try:
        return build(*args)
    except ValueError as exc:
        raise ModelLoadError(f"{path}: {exc}") from exc


def _check_width(path: Path, columns: int, width: object) -> None:
    if columns != width:
        raise ModelLoadError(f"{path}: gives {columns} columns, but the model's graph takes {width}")


def _labels(labels: object, meta_path: Path) -> tuple[str, ...]:
    """The model's labels: approved tags, each once (a tag twice would route one event twice)."""
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise ModelLoadError(f"{meta_path}: 'labels' must be a non-empty list of tags, got {labels!r}")
    unknown = [label for label in labels if label not in APPROVED_TAGS]
    if unknown:
        raise ModelLoadError(f"{meta_path}: labels {unknown} are not approved tags")
    if len(set(labels)) != len(labels):
        raise ModelLoadError(f"{meta_path}: labels {labels} name a tag more than once")
    return tuple(labels)


def _thresholds(thresholds: object, labels: tuple[str, ...], meta_path: Path) -> dict[str, float]:
    """One threshold per label, within [0, 1] (NaN would send every post to review)."""
    try:
        values = {label: float(thresholds[label]) for label in labels}  # type: ignore[index]
    except (KeyError, TypeError, ValueError) as exc:
        raise ModelLoadError(f"{meta_path}: bad thresholds ({exc!r})") from exc
    bad = {label: value for label, value in values.items() if not 0.0 <= value <= 1.0}
    if bad:
        raise ModelLoadError(f"{meta_path}: thresholds {bad} are not within [0, 1]")
    return values


class Predictor:
    """One loaded model version; ``predict`` is safe to call from several threads at once."""

    def __init__(self, version_dir: Path, *, smoke_test: bool = True) -> None:
        """``smoke_test=False`` only for the export, which loads the model to record its smoke test."""
        self.folder = version_dir.resolve()
        self.metadata: dict = read_metadata(version_dir)
        meta_path = version_dir / METADATA_FILE
        if "files" in self.metadata:  # versions exported before digests were recorded load unchecked
            check_digests(version_dir, self.metadata["files"])
        self.version: str = str(self.metadata["version"])
        self.labels: tuple[str, ...] = _labels(self.metadata["labels"], meta_path)
        self.thresholds: dict[str, float] = _thresholds(self.metadata["thresholds"], self.labels, meta_path)
        try:
            self._params = FeatureParams.from_dict(self.metadata["featurizer"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{meta_path}: bad featurizer parameters ({exc})") from exc
        vocab_path = version_dir / VOCAB_FILE
        try:
            self._vocab = Vocabulary(np.load(vocab_path, allow_pickle=False))
        except FileNotFoundError as exc:
            raise ModelLoadError(f"{vocab_path}: missing") from exc
        except (OSError, ValueError, EOFError) as exc:
            raise ModelLoadError(f"{vocab_path}: unreadable vocabulary ({exc})") from exc
        model_path = version_dir / MODEL_FILE
        self._session = _session(model_path)
        self._check_graph(model_path, meta_path)
        inputs = self._session.get_inputs()
        widths = {i.name: i.shape[-1] for i in inputs}
        self.sublinear_tf = self._term_weights({i.name: i.type for i in inputs}, model_path)
        _check_width(vocab_path, len(self._vocab), widths[INPUT_TERM_WEIGHTS])
        self._keywords: Keywords | None = None
        if self._takes(widths, INPUT_KEYWORD_HITS, version_dir / KEYWORDS_FILE, model_path):
            # From the version folder, not from ``keyword_baseline.py``: editing the baseline's lists must not
            # change a served model.
            self._keywords = _checked(Keywords, version_dir / KEYWORDS_FILE, read_keywords(version_dir))
            _check_width(version_dir / KEYWORDS_FILE, len(self._keywords.tags), widths[INPUT_KEYWORD_HITS])
        self._pieces: Pieces | None = None
        if self._takes(widths, INPUT_EMBEDDING, version_dir / PIECES_FILE, model_path):
            self._pieces = _checked(Pieces, version_dir / PIECES_FILE, *read_pieces(version_dir))
            _check_width(version_dir / PIECES_FILE, self._pieces.dims, widths[INPUT_EMBEDDING])
        if smoke_test:
            self._smoke_test(meta_path)

    def _check_graph(self, model_path: Path, meta_path: Path) -> None:
        """The graph's output is one probability per label, and the graph was exported with the labels
        and version ``metadata.json`` names: files of two versions, or labels edited into another order,
        would otherwise serve one tag's probability under another's name."""
        out = self._session.get_outputs()[0]
        if out.name != OUTPUT or out.shape[-1] != len(self.labels):
            raise ModelLoadError(
                f"{model_path}: output {out.name} {out.shape} does not match {len(self.labels)} labels"
            )
        props = self._session.get_modelmeta().custom_metadata_map
        exported = (props.get("version"), props.get("labels"))
        if exported != (self.version, ",".join(self.labels)):
            raise ModelLoadError(
                f"{model_path}: exported as version {exported[0]!r} with labels {exported[1]!r}, but "
                f"{meta_path} says {self.version!r} with {','.join(self.labels)!r}"
            )

    def _smoke_test(self, meta_path: Path) -> None:
        """Predict the texts stored at export and compare with the probabilities stored with them: a
        version that loads but answers wrongly here (another onnxruntime, a damaged file, a kernel built
        from other sources) never starts serving, live, shadow or hot-reloaded. The stored answers must
        be probabilities themselves, so that matching them proves the graph gives probabilities."""
        smoke = self.metadata.get("smoke")
        try:
            texts = [str(text) for text in smoke["texts"]]  # type: ignore[index]
            expected = np.asarray(smoke["probs"], dtype=np.float64)  # type: ignore[index]
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{meta_path}: no usable 'smoke' record ({exc!r})") from exc
        if expected.shape != (len(texts), len(self.labels)) or not (
            np.all((expected >= 0.0) & (expected <= 1.0))  # NaN compares False
            and np.all(np.abs(expected.sum(axis=1) - 1.0) <= SMOKE_TOLERANCE)
        ):
            raise ModelLoadError(
                f"{meta_path}: 'smoke' probabilities are not one probability row per text and label"
            )
        try:
            got = self.predict(texts).probs
        except Exception as exc:  # whatever a broken model raises, it is a model that cannot serve
            failure = f"{type(exc).__name__}: {exc}"
            raise ModelLoadError(f"{meta_path}: smoke prediction failed ({failure})") from exc
        if got.shape != expected.shape or not np.all(np.abs(got - expected) <= SMOKE_TOLERANCE):
            worst = float(np.nanmax(np.abs(got - expected))) if got.shape == expected.shape else got.shape
            raise ModelLoadError(
                f"{meta_path}: smoke prediction differs from the one stored at export "
                f"(max difference {worst}, allowed {SMOKE_TOLERANCE})"
            )

    def _term_weights(self, types: dict[str, str], model_path: Path) -> bool:
        """Whether the graph wants sublinear term weights (1 + log(count)) rather than counts; ``types``
        are its inputs' types by name."""
        sparse = "sparse_tensor(float)"
        if types.get(INPUT_TERM_WEIGHTS) != sparse or types.get(INPUT_TERM_WEIGHTS_SQUARED) != sparse:
            raise ModelLoadError(
                f"{model_path}: takes no sparse {INPUT_TERM_WEIGHTS!r} and {INPUT_TERM_WEIGHTS_SQUARED!r} "
                "inputs (exported by an older stream-tagger, whose graph took padded n-grams): retrain it"
            )
        kind = self._session.get_modelmeta().custom_metadata_map.get(TERM_WEIGHTS_PROP)
        if kind not in ("sublinear", "counts"):
            raise ModelLoadError(
                f"{model_path}: metadata property {TERM_WEIGHTS_PROP!r} is {kind!r}, "
                "expected 'sublinear' or 'counts'"
            )
        return kind == "sublinear"

    @staticmethod
    def _takes(widths: dict, name: str, path: Path, model_path: Path) -> bool:
        """Does the graph take this dense input? Its file must be there exactly when it does (models
        trained without keyword hits or pieces have neither the input nor the file)."""
        if name in widths:
            return True
        if path.exists():
            raise ModelLoadError(f"{path}: present, but {model_path} takes no {name!r} input")
        return False

    @classmethod
    def load(cls, model_dir: Path) -> Predictor:
        """Accepts ``models/current`` (the pointer), ``models/`` or a version folder."""
        return cls(resolve(Path(model_dir)))

    def predict(self, texts: Sequence[str]) -> BatchPrediction:
        """Probabilities and drift signal of ``texts``, featurised and scored ``PREDICT_ROWS`` at a time:
        a slice's n-grams are still in the CPU's cache when the graph reads them."""
        if not texts:
            return BatchPrediction(np.zeros((0, len(self.labels)), np.float32), np.zeros(0, np.float32))
        if len(texts) <= PREDICT_ROWS:
            feats = self.featurize(texts)
            return BatchPrediction(self.run_graph(feats), feats.oov_share)
        parts = [
            self.predict(texts[start : start + PREDICT_ROWS]) for start in range(0, len(texts), PREDICT_ROWS)
        ]
        return BatchPrediction(
            np.concatenate([part.probs for part in parts]), np.concatenate([part.oov_share for part in parts])
        )

    def featurize(self, texts: Sequence[str]) -> BatchFeatures:
        """The featuriser half of ``predict`` (public so benchmarks can time the two halves)."""
        return featurize(texts, self._params, self._vocab, self._keywords, self._pieces)

    def run_graph(self, feats: BatchFeatures) -> np.ndarray:
        """The ONNX half of ``predict``: probabilities [B, len(labels)], in one onnxruntime call.

        The graph takes the n-grams as the featuriser counted them, a sparse [B, vocabulary] matrix in
        CSR form (no padding, no copy), so its cost follows the n-grams the posts have, not the longest
        post (decision 027)."""
        weights, squares = feats.term_weights(sublinear=self.sublinear_tf)
        cols, indptr = feats.cols, feats.indptr
        if not len(cols):  # onnxruntime takes no CSR matrix without an entry: one stored zero adds nothing
            weights = squares = np.zeros(1, dtype=np.float32)
            cols, indptr = np.zeros(1, dtype=np.int64), np.ones_like(indptr)
            indptr[0] = 0  # the entry is row 0's; every other row is empty
        shape = np.array([len(feats.oov_share), len(self._vocab)], dtype=np.int64)
        feeds: dict[str, object] = {
            INPUT_TERM_WEIGHTS: sparse_input(shape, weights, cols, indptr),
            INPUT_TERM_WEIGHTS_SQUARED: sparse_input(shape, squares, cols, indptr),
        }
        if self._keywords is not None:
            feeds[INPUT_KEYWORD_HITS] = feats.keyword_hits
        if self._pieces is not None:
            feeds[INPUT_EMBEDDING] = feats.embedding
        (probs,) = self._session.run([OUTPUT], feeds)
        return probs


def sparse_input(shape: np.ndarray, values: np.ndarray, cols: np.ndarray, indptr: np.ndarray) -> ort.OrtValue:
    """A sparse graph input: the CSR matrix of ``shape`` with ``values`` at ``cols`` (int64), rows
    delimited by ``indptr`` (int64). onnxruntime reads the numpy arrays in place, without a copy."""
    tensor = ort.SparseTensor.sparse_csr_from_numpy(shape, values, cols, indptr, CPU)
    return ort.OrtValue.ort_value_from_sparse_tensor(tensor)
