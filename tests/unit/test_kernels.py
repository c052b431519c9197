"""The compiled kernels as the worker uses them: they release the GIL, any text gives well-formed,
deterministic features whatever the batch around it, a lookup table finds exactly its hashes, and a
kernel built from another version of its source refuses to import."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from stream_tagger.kernels import check_source, featurise
from stream_tagger.kernels import duplicates as kernels
from stream_tagger.model.dataset import load_dataset
from stream_tagger.model.featurise import BatchFeatures
from stream_tagger.model.predictor import Predictor
from stream_tagger.model.versions import resolve
from stream_tagger.online.duplicates import _TABLE
from tests.conftest import DATASET, MODELS

PREDICTOR = Predictor.load(resolve(MODELS / "current"))  # vocabulary, keywords and pieces: every pass


def _python_runs_meanwhile(work: Callable[[], object]) -> int:
    """How often this thread ran Python in the middle 70% of ``work``'s time in another thread: none
    at all if ``work`` held the GIL throughout."""
    span: list[float] = []

    def run() -> None:
        span.append(time.perf_counter())
        work()
        span.append(time.perf_counter())

    thread = threading.Thread(target=run)
    ticks = []
    thread.start()
    while thread.is_alive():
        ticks.append(time.perf_counter())
    thread.join()
    start, end = span
    assert end - start > 0.1, "too little work to tell"
    low, high = start + 0.2 * (end - start), end - 0.1 * (end - start)
    return sum(low < t < high for t in ticks)


def test_the_featuriser_releases_the_gil() -> None:
    texts = load_dataset([DATASET]).texts * 40  # ~30k posts, ~0.4 s
    assert _python_runs_meanwhile(lambda: PREDICTOR.featurize(texts)) > 100


def test_the_duplicate_check_releases_the_gil() -> None:
    posts = ["Re-posted: Object Detection, again!"] * 4_000_000
    assert _python_runs_meanwhile(lambda: kernels.fingerprint_texts(posts, _TABLE, str)) > 100


def test_the_duplicate_kernel_holds_its_posts_while_its_callback_runs() -> None:
    """The callback is Python code: the caller's list may change meanwhile (here it empties it, which
    frees the posts that only the list held); the kernel reads the posts it was given."""
    texts = ["naïve x", *(f"post number {i}" for i in range(3))]
    expected = [hash(f"post number {i}".encode()) for i in range(3)]

    def ready(text: str) -> str:
        texts.clear()
        return text

    keys = kernels.fingerprint_texts(texts, _TABLE, ready).tolist()
    assert keys[1:] == expected and keys[0] == hash("naïve x".encode())


def test_the_duplicate_kernel_refuses_a_short_table() -> None:
    with pytest.raises(ValueError, match="a table of 256 bytes, not 10"):
        kernels.fingerprint_texts(["a"], _TABLE[:10], str)


def _well_formed(feats: BatchFeatures, n: int) -> None:
    assert feats.indptr.shape == (n + 1,) and feats.indptr[0] == 0
    assert (np.diff(feats.indptr) >= 0).all() and feats.indptr[-1] == len(feats.cols) == len(feats.counts)
    for i in range(n):
        row = feats.cols[feats.indptr[i] : feats.indptr[i + 1]]
        assert (np.diff(row) > 0).all()  # ascending, each column once
    assert (feats.counts >= 1).all() and ((feats.cols >= 0) & (feats.cols < len(PREDICTOR._vocab))).all()
    assert ((feats.oov_share >= 0) & (feats.oov_share <= 1)).all()
    assert feats.keyword_hits.shape[0] == n and (feats.keyword_hits >= 0).all()
    norms = np.linalg.norm(feats.embedding, axis=1)
    assert np.allclose(norms[norms > 0], 1, atol=1e-5)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(st.lists(st.text(st.characters(codec=None), max_size=300), min_size=1, max_size=6))
def test_any_texts_give_well_formed_deterministic_features(texts: list[str]) -> None:
    feats = PREDICTOR.featurize(texts)
    _well_formed(feats, len(texts))
    again = PREDICTOR.featurize(texts)
    for name in ("indptr", "cols", "counts", "oov_share", "keyword_hits", "embedding"):
        assert np.array_equal(getattr(feats, name), getattr(again, name)), name
    alone = [PREDICTOR.featurize([text]) for text in texts]  # a post's features ignore its neighbours
    assert np.array_equal(np.diff(feats.indptr), [len(a.cols) for a in alone])
    assert np.array_equal(feats.cols, np.concatenate([a.cols for a in alone]))
    assert np.array_equal(feats.embedding, np.concatenate([a.embedding for a in alone]))
    weights, squares = feats.term_weights(sublinear=False)
    assert np.array_equal(weights, feats.counts) and np.array_equal(squares, weights * weights)


def test_sublinear_term_weights_are_scikit_learns_in_double_rounded_once() -> None:
    # TfidfTransformer(sublinear_tf=True) takes log(count) + 1 in float64; small counts come from the
    # kernel's table, counts from 256 on from log itself: both must give the same float32 (float32
    # arithmetic would differ for some, e.g. 7 and 1097).
    counts = np.arange(1, 5_001, dtype=np.float32)
    weights, squares = featurise.term_weights(counts, True)
    expected = (np.log(counts.astype(np.float64)) + 1.0).astype(np.float32)
    assert np.array_equal(weights, expected) and np.array_equal(squares, weights * weights)
    raw, raw_squares = featurise.term_weights(counts, False)
    assert np.array_equal(raw, counts) and np.array_equal(raw_squares, counts * counts)


@given(st.lists(st.integers(0, 2**64 - 1), max_size=60), st.lists(st.integers(0, 2**64 - 1), max_size=60))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_a_lookup_table_finds_its_hashes_and_nothing_else(stored: list[int], probes: list[int]) -> None:
    # Crowded (4 home slots for up to 60 hashes), at both ends of the range, the largest hash included.
    edges = [0, 1, 2**64 - 2, 2**64 - 1]
    hashes = np.array([*stored, *edges[: len(stored) % 5]], dtype=np.uint64)
    column = {}
    for col, h in enumerate(hashes.tolist()):
        column.setdefault(h, col)
    queries = [*probes, *edges, *(h + d for h in column for d in (-1, 1) if 0 <= h + d < 2**64)]
    shift = np.uint64(62)
    keys, cols = featurise.build_table(hashes, shift)
    found = featurise.lookup(np.array(queries, dtype=np.uint64), keys, cols, shift)
    assert found.tolist() == [column.get(q, -1) for q in queries]


def test_each_kernel_was_built_from_its_source_as_it_is() -> None:
    for name, kernel in (("featurise", featurise), ("duplicates", kernels)):
        pyx = Path(kernel.__file__).parent / f"{name}.pyx"
        assert hashlib.sha256(pyx.read_bytes()).hexdigest() == kernel.SOURCE_SHA256, pyx


def test_a_kernel_refuses_to_import_when_its_source_differs_from_its_builds(tmp_path: Path) -> None:
    built = tmp_path / "k.cpython-311-x86_64-linux-gnu.so"
    check_source(str(built), "0" * 64)  # no .pyx beside it (an installed wheel): nothing to compare
    (tmp_path / "k.pyx").write_bytes(b"def f(): pass\n")
    check_source(str(built), hashlib.sha256(b"def f(): pass\n").hexdigest())
    with pytest.raises(
        ImportError, match=r"k\.pyx: differs from the source k\.cpython-311-x86_64-linux-gnu\.so"
    ):
        check_source(str(built), "0" * 64)
