"""Serving: texts -> class probabilities with the ONNX model of one version folder.

Featurisation is numba over the whole micro-batch (see ``features``): n-gram counts and, for models
with ``keywords.json``, the keyword hits per tag; the ONNX graph does TF-IDF and the linear model.
onnxruntime runs with one intra-op thread: the worker scales by running several batches at once, and
onnxruntime releases the GIL while it computes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stream_tagger.model.artefacts import (
    INPUT_IDS,
    INPUT_KEYWORD_HITS,
    INPUT_TF,
    KEYWORDS_FILE,
    MODEL_FILE,
    OUTPUT,
    VOCAB_FILE,
    ModelLoadError,
    read_keywords,
    read_metadata,
    resolve,
)
from stream_tagger.model.features import BatchFeatures, FeatureParams, Keywords, Vocabulary, featurize
from stream_tagger.settings import APPROVED_TAGS

__all__ = ["BatchPrediction", "ModelLoadError", "Predictor"]

#: Largest padded batch (posts x terms) handed to onnxruntime at once: ~12 MB of ids and counts.
MAX_CELLS = 1 << 20
#: Posts per onnxruntime call in big batches: one call costs ~20 µs, padding a group to its longest
#: post costs more once groups are much bigger (measured on the dataset's length spread).
GROUP_ROWS = 64


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


class Predictor:
    """One loaded model version; ``predict`` is safe to call from several threads at once."""

    def __init__(self, version_dir: Path) -> None:
        self.metadata: dict = read_metadata(version_dir)
        meta_path = version_dir / "metadata.json"
        self.version: str = str(self.metadata["version"])
        self.labels: tuple[str, ...] = tuple(self.metadata["labels"])
        unknown = [label for label in self.labels if label not in APPROVED_TAGS]
        if unknown or not self.labels:
            raise ModelLoadError(f"{meta_path}: labels {unknown or '[]'} are not approved tags")
        try:
            self.thresholds: dict[str, float] = {
                k: float(self.metadata["thresholds"][k]) for k in self.labels
            }
            feat = self.metadata["featurizer"]
            self._params = FeatureParams(
                int(feat["char_min"]), int(feat["char_max"]), int(feat["word_ngrams"]), int(feat["max_chars"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"{meta_path}: bad thresholds or featurizer parameters ({exc})") from exc
        vocab_path = version_dir / VOCAB_FILE
        try:
            self._vocab = Vocabulary(np.load(vocab_path, allow_pickle=False))
        except FileNotFoundError as exc:
            raise ModelLoadError(f"{vocab_path}: missing") from exc
        except (OSError, ValueError) as exc:
            raise ModelLoadError(f"{vocab_path}: unreadable vocabulary ({exc})") from exc
        model_path = version_dir / MODEL_FILE
        self._session = _session(model_path)
        out = self._session.get_outputs()[0]
        if out.name != OUTPUT or out.shape[-1] != len(self.labels):
            raise ModelLoadError(
                f"{model_path}: output {out.name} {out.shape} does not match {len(self.labels)} labels"
            )
        self._keywords = self._load_keywords(version_dir, model_path)

    def _load_keywords(self, version_dir: Path, model_path: Path) -> Keywords | None:
        """The keyword lists the graph's ``keyword_hits`` input was trained on, from the version folder
        (not from ``rules.py``: editing the baseline's lists must not change a served model). A graph
        without that input (models trained before keyword hits, or with ``keyword_scale=0``) has none."""
        path = version_dir / KEYWORDS_FILE
        width = {i.name: i.shape for i in self._session.get_inputs()}.get(INPUT_KEYWORD_HITS)
        if width is None:
            if path.exists():
                raise ModelLoadError(f"{path}: present, but {model_path} takes no keyword hits")
            return None
        try:
            keywords = Keywords(read_keywords(version_dir))
        except ValueError as exc:
            raise ModelLoadError(f"{path}: {exc}") from exc
        if len(keywords.tags) != width[-1]:
            raise ModelLoadError(
                f"{path}: {len(keywords.tags)} tag lists, but {model_path} takes {width[-1]} keyword columns"
            )
        return keywords

    @classmethod
    def load(cls, model_dir: Path) -> Predictor:
        """Accepts ``models/current`` (the pointer), ``models/`` or a version folder."""
        return cls(resolve(Path(model_dir)))

    def predict(self, texts: Sequence[str]) -> BatchPrediction:
        if not texts:
            return BatchPrediction(np.zeros((0, len(self.labels)), np.float32), np.zeros(0, np.float32))
        feats = self.featurize(texts)
        return BatchPrediction(self.run_graph(feats), feats.oov_share)

    def featurize(self, texts: Sequence[str]) -> BatchFeatures:
        """The numba half of ``predict`` (public so benchmarks can time the two halves)."""
        return featurize(texts, self._params, self._vocab, self._keywords)

    def run_graph(self, feats: BatchFeatures) -> np.ndarray:
        """The ONNX half of ``predict``: probabilities [B, len(labels)].

        The graph takes a padded [B, T] matrix, T = the longest post of the batch, and its cost grows
        with B x T. Batches up to ``GROUP_ROWS`` posts run as one; bigger or very uneven ones (one 4 kB
        post among short ones) run in groups of similar length, at most ``GROUP_ROWS`` posts and
        ``MAX_CELLS`` cells each: on real posts that halves the padding of a batch of 512."""
        lengths = feats.lengths
        n = len(lengths)
        if n <= GROUP_ROWS and n * max(int(lengths.max()), 1) <= MAX_CELLS:
            return self.run_padded(*feats.padded(), feats.keyword_hits)
        probs = np.empty((n, len(self.labels)), dtype=np.float32)
        order = np.argsort(lengths, kind="stable")
        start = 0
        while start < n:
            # Rows are sorted by length: a group's width is its last row's length.
            fits = np.arange(1, min(GROUP_ROWS, n - start) + 1)
            widths = np.maximum(lengths[order[start : start + len(fits)]], 1)
            stop = start + max(int(np.count_nonzero(fits * widths <= MAX_CELLS)), 1)
            rows = order[start:stop]
            probs[rows] = self.run_padded(*feats.padded(rows), feats.keyword_hits[rows])
            start = stop
        return probs

    def run_padded(self, ids: np.ndarray, tf: np.ndarray, keyword_hits: np.ndarray) -> np.ndarray:
        """onnxruntime on one padded batch (see ``BatchFeatures.padded``) and the same rows' keyword hits
        (``BatchFeatures.keyword_hits``; ignored by a model without keywords, whose hits have no columns)."""
        feeds = {INPUT_IDS: ids, INPUT_TF: tf}
        if self._keywords is not None:
            feeds[INPUT_KEYWORD_HITS] = keyword_hits
        (probs,) = self._session.run([OUTPUT], feeds)
        return probs
