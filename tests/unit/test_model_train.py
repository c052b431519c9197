"""Training: reproducible, complete artefacts, thresholds chosen, nothing half-written on failure."""

from __future__ import annotations

import csv
import json
import os
import shutil
import stat
from dataclasses import replace
from pathlib import Path

import joblib
import numpy as np
import onnxruntime
import pytest
import scipy.sparse as sp
from sklearn.model_selection import StratifiedKFold

from stream_tagger.model import train as train_module
from stream_tagger.model import versions as artefacts
from stream_tagger.model.dataset import DatasetError, load_dataset
from stream_tagger.model.featurise import featurize
from stream_tagger.model.keyword_baseline import KEYWORDS
from stream_tagger.model.nb_weights import NBWeights
from stream_tagger.model.onnx_graph import build_graph
from stream_tagger.model.predictor import ModelLoadError, Predictor, sparse_input
from stream_tagger.model.train import TrainConfig, build_pipeline, pipeline_steps, train, training_rows
from stream_tagger.settings import APPROVED_TAGS
from tests.conftest import DATASET, as_exported

FAST = replace(TrainConfig(), cv_repeats=1, cv_folds=3)


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """25 posts per class from the real dataset: seconds to train, still a real problem."""
    with DATASET.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    picked = [r for tag in APPROVED_TAGS for r in [r for r in rows if r["tag"] == tag][:25]]
    path = tmp_path_factory.mktemp("data") / "small.csv"
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(picked)
    return path


@pytest.fixture(scope="module")
def two_runs(small_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("models")
    return train([small_csv], root / "a", FAST), train([small_csv], root / "b", FAST)


def test_training_twice_gives_identical_predictions_and_metrics(two_runs: tuple[Path, Path]) -> None:
    texts = ["YOLO detection of cars", "BERT fine-tuning", "", "kubeflow pipelines on GKE"]
    a, b = (Predictor.load(d) for d in two_runs)
    assert np.array_equal(a.predict(texts).probs, b.predict(texts).probs)
    assert a.thresholds == b.thresholds
    assert a.metadata["metrics"] == b.metadata["metrics"]
    assert a.metadata["reference"] == b.metadata["reference"]


def test_version_folder_is_complete_and_current_points_at_it(two_runs: tuple[Path, Path]) -> None:
    version_dir = two_runs[0]
    for name in (
        "model.onnx",
        "vocabulary.npy",
        "keywords.json",
        "metadata.json",
        "MODEL_CARD.md",
        "confusion_matrix.png",
    ):
        assert (version_dir / name).is_file(), name
    stored = json.loads((version_dir / "keywords.json").read_text())
    assert stored == {"scale": FAST.keyword_scale, "tags": {t: list(KEYWORDS[t]) for t in APPROVED_TAGS}}
    assert list(stored["tags"]) == list(APPROVED_TAGS)  # the order of the graph's keyword columns
    assert (version_dir.parent / "current").read_text().strip() == version_dir.name
    assert [p.name for p in version_dir.parent.iterdir() if p.name.startswith(".")] == []
    assert version_dir.name in (version_dir / "MODEL_CARD.md").read_text()


def test_metadata_has_every_key_consumers_read(two_runs: tuple[Path, Path]) -> None:
    meta = json.loads((two_runs[0] / "metadata.json").read_text())
    assert meta["labels"] == list(APPROVED_TAGS)
    assert set(meta["thresholds"]) == set(APPROVED_TAGS)
    for key in (
        "version",
        "featurizer",
        "training_data",
        "library_versions",
        "trained_at",
        "training_seconds",
    ):
        assert key in meta, key
    assert len(meta["training_data"]["sha256"]) == 64
    cv = meta["metrics"]["cv"]
    assert 0.5 < cv["weighted_f1_mean"] <= 1.0
    assert cv["auto_tag"]["precision"] >= FAST.target_precision
    ref = meta["reference"]
    for signal in ("oov_share", "confidence"):
        assert len(ref[signal]["bins"]) == len(ref[signal]["freq"]) + 1
        assert sum(ref[signal]["freq"]) == pytest.approx(1.0)
    assert set(ref["predicted_class"]) == set(APPROVED_TAGS)
    assert sum(ref["predicted_class"].values()) == pytest.approx(1.0)
    assert meta["parity"]["label_agreement"] == 1.0
    assert meta["parity"]["max_prob_diff"] < 1e-4
    # Every served file's digest, checked at each load: a file changed after export is refused.
    assert sorted(meta["files"]) == ["keywords.json", "model.onnx", "pieces.npz", "vocabulary.npy"]
    assert meta["files"] == artefacts.file_digests(two_runs[0])


def test_thresholds_are_chosen_not_defaulted(two_runs: tuple[Path, Path]) -> None:
    thresholds = Predictor.load(two_runs[0]).thresholds
    assert all(0.5 <= t <= 1.0 for t in thresholds.values())
    assert len(set(thresholds.values())) > 1


def test_the_card_lists_every_input_with_its_licence_and_the_auto_tag_figures_per_class(
    two_runs: tuple[Path, Path],
) -> None:
    meta = json.loads((two_runs[0] / "metadata.json").read_text())
    licences = {row["input"].split(" (")[0]: row["licence"] for row in meta["inputs"]}
    assert licences["training posts"].startswith("no LICENSE file beside")  # a CSV in a temporary folder
    assert licences["subword pieces and their vectors"] == "Apache-2.0 (the model's own)"
    assert set(licences) == {
        "training posts",
        "n-gram vocabulary",
        "keyword phrases",
        "subword pieces and their vectors",
    }
    assert train_module._data_licence(DATASET).startswith("MIT License; Copyright")
    card = (two_runs[0] / "MODEL_CARD.md").read_text()
    assert "all-MiniLM-L6-v2" in card and "Apache-2.0" in card
    cross = meta["metrics"]["cv"]["auto_tag_cross_fitted"]
    for label in APPROVED_TAGS:
        assert set(cross["per_class"][label]) == {"precision", "coverage", "n_auto", "n"}
        assert f"| {label} | {meta['thresholds'][label]:.3f} |" in card


def test_bad_csv_leaves_models_untouched(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("id,created_on,title,description,tag\n1,2020,t,d,robotics\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=r"bad\.csv:2: unknown tag"):
        train([bad], tmp_path / "models", FAST)
    assert not (tmp_path / "models").exists()


def test_failure_while_writing_leaves_no_folder(
    small_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_card(version_dir: Path, meta: dict) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(train_module, "write_card", broken_card)
    with pytest.raises(OSError, match="disk full"):
        train([small_csv], tmp_path / "models", replace(FAST, cv_folds=2))
    assert list((tmp_path / "models").iterdir()) == []
    assert not (tmp_path / "models" / artefacts.POINTER).exists()


def test_a_version_trained_under_a_private_umask_is_readable_by_the_service_user(
    small_csv: Path, tmp_path: Path
) -> None:
    previous = os.umask(0o077)  # e.g. an operator's shell or a hardened CI runner
    try:
        folder = train([small_csv], tmp_path / "models", replace(FAST, cv_folds=2))
    finally:
        os.umask(previous)
    modes = {
        str(path.relative_to(folder)): stat.S_IMODE(path.stat().st_mode)
        for path in [folder, *folder.rglob("*")]
    }
    assert modes == {name: 0o755 if (folder / name).is_dir() else 0o644 for name in modes}, (
        "workers run as another user (deploy/Dockerfile: USER tagger) and must read every file"
    )
    assert stat.S_IMODE((tmp_path / "models" / artefacts.POINTER).stat().st_mode) == 0o644


@pytest.mark.parametrize("axes", [-1, 9])
def test_piece_norm_axes_outside_the_embedding_are_refused_before_training(axes: int) -> None:
    with pytest.raises(ValueError, match=f"piece_norm_axes={axes} must be between 0 and embedding_dims=8"):
        TrainConfig(embedding_dims=8, piece_norm_axes=axes)


@pytest.mark.parametrize(
    "changes",
    [{"piece_norm_axes": 0}, {"piece_norm_axes": 8}, {"embedding_scale": 0.0}, {"piece_scores": False}],
    ids=["none", "all", "no-embedding", "no-piece-scores"],
)
def test_piece_norm_axes_within_the_embedding_or_unused_are_accepted(changes: dict) -> None:
    cfg = TrainConfig(embedding_dims=8, **changes)  # the default piece_norm_axes (16) where unused
    assert cfg.embedding_dims == 8


def test_nb_weights_favour_columns_that_separate_classes() -> None:
    # column 0 only in class 0, column 1 in every post: the telling column must weigh more.
    X = sp.csr_matrix(np.array([[1, 1], [1, 1], [0, 1], [0, 1]], dtype=float))
    weights = NBWeights().fit(X, np.array([0, 0, 1, 1])).weights_
    assert weights[0] > weights[1]
    assert np.allclose(np.linalg.norm(NBWeights().fit(X, [0, 0, 1, 1]).transform(X).toarray(), axis=1), 1.0)


def test_export_without_nb_weights_or_sublinear_tf_matches_scikit_learn(small_csv: Path) -> None:
    data = load_dataset([small_csv])
    y = np.array([APPROVED_TAGS.index(t) for t in data.tags])
    # and the graph's MatMul of unit-length vectors; raw counts as term weights
    cfg = replace(FAST, nb_weights=False, piece_scores=False, sublinear_tf=False)
    pipe = build_pipeline(cfg).fit(data.texts, y)
    steps = pipeline_steps(pipe)
    assert "nb" not in steps
    pieces = steps["embedding"].pieces_
    graph = build_graph(
        steps["tfidf"],
        steps["clf"],
        APPROVED_TAGS,
        "t",
        keyword_columns=4,
        keyword_scale=cfg.keyword_scale,
        embedding_columns=pieces.dims,
        embedding_scale=cfg.embedding_scale,
    )
    feat = steps["features"]
    batch = featurize(data.texts, feat.params, feat.vocabulary_, steps["keywords"].keywords_, pieces)
    assert {p.key: p.value for p in graph.metadata_props}["term_weights"] == "counts"
    weights, squares = batch.term_weights(sublinear=False)
    shape = np.array([len(data.texts), len(feat.vocabulary_)], dtype=np.int64)
    feeds: dict[str, object] = {"keyword_hits": batch.keyword_hits, "embedding": batch.embedding}
    feeds |= {"term_weights": sparse_input(shape, weights, batch.cols, batch.indptr)}
    feeds |= {"term_weights_squared": sparse_input(shape, squares, batch.cols, batch.indptr)}
    onnx_probs = onnxruntime.InferenceSession(graph.SerializeToString()).run(None, feeds)[0]
    assert np.abs(onnx_probs - pipe.predict_proba(data.texts)).max() < 1e-4


def test_without_keyword_and_embedding_scales_the_model_is_the_old_kind_and_serves_as_before(
    small_csv: Path, two_runs: tuple[Path, Path], tmp_path: Path
) -> None:
    # Raw counts as term weights too: the graph says so, and Predictor feeds them.
    cfg = replace(FAST, keyword_scale=0.0, embedding_scale=0.0, sublinear_tf=False)
    old = train([small_csv], tmp_path / "models", cfg)
    assert not (old / "keywords.json").exists() and not (old / "pieces.npz").exists()
    pipe = joblib.load(old / "pipeline.joblib")
    assert [name for name, _ in pipe.steps] == ["features", "tfidf", "nb", "clf"]  # the shape before keywords
    predictor = Predictor.load(old)
    assert predictor.sublinear_tf is False and Predictor.load(two_runs[0]).sublinear_tf is True
    # Repeated words: counts above 1, where raw counts and sublinear weights give other probabilities.
    texts = [
        "YOLO detection of cars",
        "Deploy Docker Docker Docker with MLflow and a transformer model",
        "",
        "BERT " * 500,
    ]
    probs = predictor.predict(texts).probs
    assert predictor.featurize(texts).keyword_hits.shape == (4, 0)
    assert predictor.featurize(texts).embedding.shape == (4, 0)
    assert np.abs(probs - pipe.predict_proba(texts)).max() < 1e-4
    assert not np.allclose(probs, Predictor.load(two_runs[0]).predict(texts).probs, atol=1e-3)
    for name, graph_input in (("keywords.json", "keyword_hits"), ("pieces.npz", "embedding")):
        shutil.copy(two_runs[0] / name, old / name)  # a file its graph has no input for
        with pytest.raises(ModelLoadError, match=rf"{name}: not among the files"):
            Predictor.load(old)
        as_exported(old)  # recorded too, the graph still has no input for it
        with pytest.raises(
            ModelLoadError, match=rf"{name}: present, but .*model\.onnx takes no '{graph_input}'"
        ):
            Predictor.load(old)
        (old / name).unlink()
        as_exported(old)


def test_embedding_alone_exports_and_serves_with_parity(small_csv: Path, tmp_path: Path) -> None:
    only = train([small_csv], tmp_path / "models", replace(FAST, keyword_scale=0.0))
    assert (only / "pieces.npz").exists() and not (only / "keywords.json").exists()
    meta = json.loads((only / "metadata.json").read_text())
    assert meta["featurizer"]["pieces"]["dims"] == 256 and meta["featurizer"]["pieces"]["pieces"] > 20_000
    assert meta["parity"]["max_prob_diff"] < 1e-4 and meta["parity"]["label_agreement"] == 1.0
    pipe = joblib.load(only / "pipeline.joblib")
    texts = ["Kubeflow pipelines on GKE", "YOLOv8 für Autos", "", "gan " * 3000]
    assert np.abs(Predictor.load(only).predict(texts).probs - pipe.predict_proba(texts)).max() < 1e-4


@pytest.mark.parametrize("norm_axes", [0, 16])
def test_per_tag_piece_scores_serve_the_trained_embedding_with_parity(
    small_csv: Path, tmp_path: Path, norm_axes: int
) -> None:
    cfg = replace(FAST, piece_scores=True, embedding_dims=256, piece_norm_axes=norm_axes)
    scored = train([small_csv], tmp_path / "models", cfg)
    meta = json.loads((scored / "metadata.json").read_text())
    assert meta["featurizer"]["pieces"]["dims"] == 256 and meta["featurizer"]["pieces"]["per_tag_scores"]
    assert meta["parity"]["max_prob_diff"] < 1e-4 and meta["parity"]["label_agreement"] == 1.0
    width = len(APPROVED_TAGS) + max(norm_axes, 1)  # scores, then the axes that give the length
    pieces, scores = artefacts.read_pieces(scored)
    assert scores.dtype == np.float32 and scores.shape == (len(pieces), width)
    pipe = joblib.load(scored / "pipeline.joblib")
    vectors = pipeline_steps(pipe)["embedding"].vectors
    assert vectors.shape[1] == 256
    if norm_axes:
        assert np.array_equal(scores[:, len(APPROVED_TAGS) :], vectors[:, :norm_axes].astype(np.float32))
    else:
        assert (scores[:, -1] == 1).all()  # the count
    predictor = Predictor.load(scored)
    texts = ["Kubeflow pipelines on GKE", "YOLOv8 für Autos", "", "!!!", "gan " * 3000]
    assert predictor.featurize(texts).embedding.shape == (len(texts), width)
    assert np.abs(predictor.predict(texts).probs - pipe.predict_proba(texts)).max() < 1e-4


def test_augmentation_adds_each_non_blank_half_with_its_posts_label() -> None:
    titles, descriptions = ["YOLO v5", "Kubeflow", "BERT"], ["object detection", "  ", "fine-tuning"]
    y = np.array([0, 1, 2])
    texts, labels = training_rows(titles, descriptions, y, augment=True)
    assert texts[:3] == ["YOLO v5 object detection", "Kubeflow   ", "BERT fine-tuning"]
    assert texts[3:] == ["YOLO v5", "Kubeflow", "BERT", "object detection", "fine-tuning"]
    assert labels.tolist() == [0, 1, 2, 0, 1, 2, 0, 2]
    assert training_rows(titles, descriptions, y, augment=False)[0] == texts[:3]


def test_cross_validation_scores_whole_posts_only(small_csv: Path) -> None:
    data = load_dataset([small_csv])
    y = np.array([APPROVED_TAGS.index(t) for t in data.tags])
    cv = train_module.cross_validate(FAST, data, y)
    assert cv.probs.shape == (FAST.cv_repeats, len(data), len(APPROVED_TAGS))
    assert cv.summary["weighted_f1_mean"] > 0.5
    # Each post held out exactly once per repeat, in the fold StratifiedKFold drew for it.
    expected = np.zeros(len(data), dtype=np.int64)
    for fold, (_, held_out) in enumerate(
        StratifiedKFold(FAST.cv_folds, shuffle=True, random_state=FAST.seed).split(y, y)
    ):
        expected[held_out] = fold
    assert cv.folds.tolist() == [expected.tolist()]


def test_vocabulary_comes_from_the_posts_not_their_copies(small_csv: Path) -> None:
    data = load_dataset([small_csv])
    y = np.array([APPROVED_TAGS.index(t) for t in data.tags])
    augmented = train_module.fit_pipeline(FAST, data.titles, data.descriptions, y)
    plain = train_module.fit_pipeline(replace(FAST, augment=False), data.titles, data.descriptions, y)
    vocab = pipeline_steps(augmented)["features"].vocabulary_.hashes
    assert np.array_equal(vocab, pipeline_steps(plain)["features"].vocabulary_.hashes)
    # same columns, but the copies did train: the classifier differs
    assert not np.allclose(augmented.named_steps["clf"].coef_, plain.named_steps["clf"].coef_)
