"""Every kernel's output on the dataset and nasty texts, and the SHA-256 of each array.

Run as a script, with ``PYTHONHASHSEED=0`` (``fingerprints`` are Python's own ``hash``):
``kernel_outputs.py OUT.npz`` saves the arrays (``test_kernel_outputs.py`` does, in a subprocess);
``kernel_outputs.py --record`` rewrites the committed digests, ``kernel_outputs.json``. Only a retrain of
the served model (new vocabulary, piece scores) or a change to what the featuriser computes (which needs
a retrain) may do that.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import numpy as np

from stream_tagger.model.dataset import load_dataset
from stream_tagger.model.featurise import FeatureParams, Vocabulary, hash_ngrams
from stream_tagger.model.predictor import Predictor
from stream_tagger.model.versions import VOCAB_FILE, resolve
from stream_tagger.online.duplicates import fingerprints
from tests.conftest import DATASET, MODELS
from tests.unit.test_model_features import NASTY

DIGESTS = Path(__file__).with_suffix(".json")


def outputs() -> dict[str, np.ndarray]:
    texts = [*load_dataset([DATASET]).texts, *NASTY]
    predictor = Predictor.load(resolve(MODELS / "current"))
    feats = predictor.featurize(texts)
    weights, squares = feats.term_weights(sublinear=predictor.sublinear_tf)
    hashed = hash_ngrams(texts, FeatureParams(1, 3, 3, 100))
    vocab = Vocabulary(np.load(resolve(MODELS / "current") / VOCAB_FILE))
    keys = [-1 if key is None else key for key in fingerprints(texts)]
    return {
        "indptr": feats.indptr, "cols": feats.cols, "counts": feats.counts, "oov": feats.oov_share,
        "keyword_hits": feats.keyword_hits, "embedding": feats.embedding,
        "weights": weights, "squares": squares,
        "doc": hashed.doc, "hashes": hashed.hashes, "totals": hashed.totals,
        "lookup": vocab.lookup(hashed.hashes), "keys": np.array(keys, np.int64),
    }  # fmt: skip


def digest(array: np.ndarray) -> dict[str, object]:
    """dtype, shape and the SHA-256 of both and of the bytes: equal digests mean equal arrays, bit for bit."""
    h = hashlib.sha256(f"{array.dtype.str} {array.shape}".encode())
    h.update(np.ascontiguousarray(array).tobytes())
    return {"dtype": array.dtype.str, "shape": list(array.shape), "sha256": h.hexdigest()}


def main(args: list[str]) -> None:
    if os.environ.get("PYTHONHASHSEED") != "0":
        sys.exit("kernel_outputs.py: run with PYTHONHASHSEED=0 (the fingerprints are Python's hash)")
    if args == ["--record"]:
        recorded = {name: digest(array) for name, array in outputs().items()}
        lines = (f"  {json.dumps(name)}: {json.dumps(entry)}" for name, entry in recorded.items())
        DIGESTS.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    elif len(args) == 1:
        np.savez(args[0], **outputs())
    else:
        sys.exit("usage: PYTHONHASHSEED=0 kernel_outputs.py OUT.npz | --record")


if __name__ == "__main__":
    main(sys.argv[1:])
