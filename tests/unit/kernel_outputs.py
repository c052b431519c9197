"""Run as a script by ``test_aot.py``: every kernel's output on the dataset and nasty texts, saved to
an .npz, from whichever kernels this process loaded (``STREAM_TAGGER_KERNELS`` decides)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from stream_tagger.kernels import load as compiled
from stream_tagger.model.dataset import load_dataset
from stream_tagger.model.featurise import FeatureParams, Vocabulary, hash_ngrams
from stream_tagger.model.predictor import Predictor
from stream_tagger.model.versions import VOCAB_FILE, resolve
from stream_tagger.online.duplicates import fingerprints
from tests.conftest import DATASET, MODELS
from tests.unit.test_model_features import NASTY


def main(out: Path) -> None:
    texts = [*load_dataset([DATASET]).texts, *NASTY]
    predictor = Predictor.load(resolve(MODELS / "current"))
    feats = predictor.featurize(texts)
    ids, tf = feats.padded()
    hashed = hash_ngrams(texts, FeatureParams(1, 3, 3, 100))
    vocab = Vocabulary(np.load(resolve(MODELS / "current") / VOCAB_FILE))
    keys = [-1 if key is None else key for key in fingerprints(texts)]  # PYTHONHASHSEED fixed by the test
    np.savez(
        out,
        indptr=feats.indptr, cols=feats.cols, counts=feats.counts, oov=feats.oov_share,
        keyword_hits=feats.keyword_hits, embedding=feats.embedding, ids=ids, tf=tf, doc=hashed.doc,
        hashes=hashed.hashes,
        totals=hashed.totals, lookup=vocab.lookup(hashed.hashes), keys=np.array(keys, np.int64),
        probs=predictor.predict(texts).probs,
    )
    print(compiled.describe())


if __name__ == "__main__":
    main(Path(sys.argv[1]))
