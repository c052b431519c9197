"""Predictor: loads pointer or folder, fails loudly naming the path, predicts from many threads."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import pytest
from scipy.special import logit

from stream_tagger.model import keyword_baseline as rules
from stream_tagger.model import predictor as runtime
from stream_tagger.model import versions
from stream_tagger.model.predictor import ModelLoadError, Predictor
from stream_tagger.model.versions import resolve
from stream_tagger.settings import APPROVED_TAGS
from tests.conftest import MODELS, as_exported

TEXTS = ["YOLO object detection", "Transformers for translation", "Serving models with Kubeflow", "", "🙂"]


@pytest.fixture(scope="module")
def predictor() -> Predictor:
    return Predictor.load(MODELS / "current")


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    version = resolve(MODELS / "current")
    target = tmp_path / version.name
    shutil.copytree(version, target)
    (tmp_path / "current").write_text(version.name + "\n")
    return target


def test_committed_model_serves_approved_labels_only(predictor: Predictor) -> None:
    assert set(predictor.labels) <= set(APPROVED_TAGS)
    out = predictor.predict(TEXTS)
    assert out.probs.shape == (len(TEXTS), len(predictor.labels))
    assert out.probs.dtype == np.float32 and out.oov_share.dtype == np.float32
    assert np.allclose(out.probs.sum(axis=1), 1.0, atol=1e-5)
    assert ((out.oov_share >= 0) & (out.oov_share <= 1)).all()
    assert predictor.labels[int(out.probs[0].argmax())] == "computer-vision"


def test_empty_batch(predictor: Predictor) -> None:
    out = predictor.predict([])
    assert out.probs.shape == (0, len(predictor.labels)) and out.oov_share.shape == (0,)


def test_pointer_root_and_version_folder_load_the_same_model(model_copy: Path) -> None:
    versions = {
        Predictor.load(p).version for p in (model_copy, model_copy.parent, model_copy.parent / "current")
    }
    assert versions == {model_copy.name}


def test_concurrent_predictions_equal_sequential(predictor: Predictor) -> None:
    batches = [[f"{t} {i}" for t in TEXTS] for i in range(16)]
    expected = [predictor.predict(b).probs for b in batches]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda b: predictor.predict(b).probs, batches))
    assert all(np.array_equal(e, g) for e, g in zip(expected, got, strict=True))


def _corrupt_onnx(d: Path) -> None:
    (d / "model.onnx").write_bytes(b"not a model")


def _bad_metadata(d: Path) -> None:
    (d / "metadata.json").write_text("{", encoding="utf-8")


def _unapproved_label(d: Path) -> None:
    meta = json.loads((d / "metadata.json").read_text())
    meta["labels"][0] = "robotics"
    (d / "metadata.json").write_text(json.dumps(meta))


def _one_list_short(d: Path) -> None:
    stored = json.loads((d / "keywords.json").read_text())
    del stored["tags"]["other"]
    (d / "keywords.json").write_text(json.dumps(stored))


def _phrase_too_long(d: Path) -> None:
    stored = json.loads((d / "keywords.json").read_text())
    stored["tags"]["mlops"].append("a b c d")
    (d / "keywords.json").write_text(json.dumps(stored))


def _edit_metadata(change):  # type: ignore[no-untyped-def]
    def edit(d: Path) -> None:
        meta = json.loads((d / "metadata.json").read_text())
        change(meta)
        (d / "metadata.json").write_text(json.dumps(meta))

    return edit


def _truncate(name: str):  # type: ignore[no-untyped-def]
    def cut(d: Path) -> None:  # a copy still in progress
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])

    return cut


def _rewrite_pieces(d: Path, change) -> None:
    with np.load(d / "pieces.npz") as data:
        pieces, vectors = change(data["pieces"].tolist(), data["vectors"])
    np.savez(d / "pieces.npz", pieces=np.array(pieces), vectors=vectors)


def _rewrite_graph(d: Path, change) -> None:
    model = onnx.load(d / "model.onnx")
    change(model)
    onnx.save(model, d / "model.onnx")


def _without_squared_term_weights(model: onnx.ModelProto) -> None:
    # A graph that loads but takes its second n-gram input under another name.
    model.graph.input[1].name = "ids"
    for node in model.graph.node:
        node.input[:] = ["ids" if name == "term_weights_squared" else name for name in node.input]


def _dense_term_weights(model: onnx.ModelProto) -> None:
    # A graph that loads, with a dense "term_weights" [B, vocabulary]: not what the featuriser feeds.
    width = model.graph.input[0].type.sparse_tensor_type.shape.dim[1].dim_value
    dense = onnx.helper.make_tensor_value_info("term_weights", onnx.TensorProto.FLOAT, ["batch", width])
    model.graph.input[0].CopyFrom(dense)
    (first,) = [node for node in model.graph.node if "term_weights" in node.input]
    first.op_type, first.domain = "MatMul", ""


def _term_weights_prop(value: str | None):
    def change(model: onnx.ModelProto) -> None:
        props = {p.key: p.value for p in model.metadata_props if p.key != "term_weights"}
        onnx.helper.set_model_props(model, props if value is None else {**props, "term_weights": value})

    return change


@pytest.mark.parametrize(
    ("damage", "culprit"),
    [
        (lambda d: (d / "model.onnx").unlink(), "model.onnx: missing"),
        (
            lambda d: _rewrite_graph(d, _without_squared_term_weights),
            "model.onnx: takes no sparse 'term_weights' and 'term_weights_squared' inputs .*retrain it",
        ),
        (
            lambda d: _rewrite_graph(d, _dense_term_weights),
            "model.onnx: takes no sparse 'term_weights' and 'term_weights_squared' inputs .*retrain it",
        ),
        (
            lambda d: np.save(d / "vocabulary.npy", np.load(d / "vocabulary.npy")[:-1]),
            r"vocabulary.npy: gives (\d+) columns, but the model's graph takes (?!\1)\d+",
        ),
        (
            lambda d: _rewrite_graph(d, _term_weights_prop(None)),
            "model.onnx: metadata property 'term_weights' is None",
        ),
        (
            lambda d: _rewrite_graph(d, _term_weights_prop("log")),
            "model.onnx: metadata property 'term_weights' is 'log', expected",
        ),
        (_corrupt_onnx, "model.onnx: not a loadable ONNX model"),
        (lambda d: (d / "vocabulary.npy").unlink(), "vocabulary.npy: missing"),
        (_bad_metadata, "metadata.json: unreadable metadata"),
        (_unapproved_label, "metadata.json: labels"),
        (
            _edit_metadata(lambda m: m["labels"].append(m["labels"][0])),
            r"metadata.json: labels .* name a tag more than once",
        ),
        (_edit_metadata(lambda m: m.update(labels=None)), "metadata.json: 'labels' must be a non-empty list"),
        (
            _edit_metadata(lambda m: m["labels"].reverse()),
            r"model.onnx: exported as version .* with labels 'computer-vision,mlops,.*, but .*metadata.json",
        ),
        (_edit_metadata(lambda m: m.update(version="v2")), r"model.onnx: exported as version '20"),
        (
            _edit_metadata(lambda m: m["thresholds"].update(mlops=float("nan"))),
            r"metadata.json: thresholds \{'mlops': nan\} are not within \[0, 1\]",
        ),
        (
            _edit_metadata(lambda m: m["featurizer"].update(char_max=100_000)),
            r"metadata.json: bad featurizer parameters \(char_max is 100000, must be 0 or more and 16 or",
        ),
        (_edit_metadata(lambda m: m.pop("smoke")), "metadata.json: no usable 'smoke' record"),
        (
            _edit_metadata(lambda m: m["smoke"]["probs"][0].__setitem__(0, 2.0)),
            "metadata.json: 'smoke' probabilities are not one probability row per text and label",
        ),
        (lambda d: (d / "vocabulary.npy").write_bytes(b""), "vocabulary.npy: unreadable vocabulary"),
        (_truncate("pieces.npz"), "pieces.npz: unreadable pieces"),
        (lambda d: (d / "keywords.json").unlink(), "keywords.json: missing"),
        (lambda d: (d / "keywords.json").write_text("[1,"), "keywords.json: unreadable keywords"),
        (_one_list_short, "keywords.json: gives 3 columns, but the model's graph takes 4"),
        (
            lambda d: (d / "keywords.json").write_text('{"tags": {"mlops": "docker"}}'),
            "keywords.json: 'tags'",
        ),
        (_phrase_too_long, "keywords.json: keyword 'a b c d' has 4 words"),
        (lambda d: (d / "pieces.npz").unlink(), "pieces.npz: missing"),
        (lambda d: (d / "pieces.npz").write_bytes(b"PK broken"), "pieces.npz: unreadable pieces"),
        (
            lambda d: _rewrite_pieces(d, lambda p, v: (p, v[:, :10])),
            "pieces.npz: gives 10 columns, but .* 20",
        ),
        (lambda d: _rewrite_pieces(d, lambda p, v: (p[:-1], v)), "pieces.npz: .* pieces need a"),
        (
            lambda d: _rewrite_pieces(d, lambda p, v: (["\u2581Upper", *p[1:]], v)),
            "pieces.npz: piece '▁Upper' can never match",
        ),
    ],
)
def test_broken_folder_raises_naming_the_file(model_copy: Path, damage, culprit: str) -> None:
    damage(model_copy)
    as_exported(model_copy)
    with pytest.raises(ModelLoadError, match=culprit):
        Predictor.load(model_copy)


def _flip_a_byte(name: str, at: int):  # type: ignore[no-untyped-def]
    def flip(d: Path) -> None:
        data = bytearray((d / name).read_bytes())
        data[at] ^= 0x01
        (d / name).write_bytes(bytes(data))

    return flip


@pytest.mark.parametrize(
    ("damage", "culprit"),
    [
        (_flip_a_byte("model.onnx", -100), r"model.onnx: changed since export \(its sha256 is not the one"),
        (_flip_a_byte("keywords.json", 40), "keywords.json: changed since export"),
        (_flip_a_byte("vocabulary.npy", -8), "vocabulary.npy: changed since export"),
        (
            lambda d: (d / "pieces.npz").unlink(),
            r"pieces.npz: missing \(.*metadata.json records its sha256\)",
        ),
        (_edit_metadata(lambda m: m["files"].pop("keywords.json")), "keywords.json: not among the files"),
        (_edit_metadata(lambda m: m.update(files=["model.onnx"])), "metadata.json: 'files' is not a map"),
    ],
)
def test_a_served_file_that_differs_from_the_export_is_refused(
    model_copy: Path, damage, culprit: str
) -> None:
    damage(model_copy)
    with pytest.raises(ModelLoadError, match=culprit):
        Predictor.load(model_copy)


def test_pieces_that_unpack_beyond_the_limit_are_refused_before_they_are_read(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(versions, "MAX_PIECES_BYTES", 2**20)  # the served model's pieces unpack to more
    with pytest.raises(
        ModelLoadError, match=r"pieces.npz: \d+ MiB of pieces and vectors, over the limit of 1 MiB"
    ):
        Predictor.load(model_copy)


def test_missing_dir_and_dangling_pointer(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no such model directory"):
        Predictor.load(tmp_path / "nope")
    (tmp_path / "current").write_text("gone\n")
    with pytest.raises(ModelLoadError, match=r"current: names 'gone'"):
        Predictor.load(tmp_path / "current")


@pytest.mark.parametrize("failure", ["utf-16", "permission"])
def test_a_pointer_that_cannot_be_read_is_a_model_load_error_naming_it(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    pointer = model_copy.parent / "current"
    if failure == "utf-16":  # what Windows PowerShell 5 writes for `echo v3 > current`
        pointer.write_text(model_copy.name + "\n", encoding="utf-16")
    else:  # written under umask 077 by another user; monkeypatched since root reads anything

        def denied(self: Path, *args: object, **kwargs: object) -> str:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_text", denied)
    with pytest.raises(ModelLoadError, match=r"current: unreadable pointer") as info:
        Predictor.load(pointer)
    assert len(str(info.value).splitlines()) == 1


def test_a_batch_bigger_than_one_call_is_scored_in_slices_with_the_same_result(
    predictor: Predictor, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"{TEXTS[i % len(TEXTS)]} {i}" for i in range(2 * runtime.PREDICT_ROWS + 3)]
    sizes: list[int] = []
    featurize = predictor.featurize
    with monkeypatch.context() as patch:
        patch.setattr(predictor, "featurize", lambda batch: sizes.append(len(batch)) or featurize(batch))
        sliced = predictor.predict(texts)
    assert sizes == [runtime.PREDICT_ROWS, runtime.PREDICT_ROWS, 3]
    feats = predictor.featurize(texts)  # the whole batch through the graph in one call
    assert np.allclose(sliced.probs, predictor.run_graph(feats), atol=1e-6)
    assert np.array_equal(sliced.oov_share, feats.oov_share)


def test_a_post_scores_the_same_alone_and_beside_any_others(predictor: Predictor) -> None:
    # One sparse batch: a huge post, posts without a known n-gram and short ones share no sum.
    texts = [*TEXTS, "object detection " * 2000, "", "qqq zzz", *TEXTS]
    together = predictor.predict(texts).probs
    alone = np.concatenate([predictor.predict([text]).probs for text in texts])
    assert np.allclose(together, alone, atol=1e-6)
    assert np.allclose(predictor.predict(["", "qqq zzz"]).probs, alone[len(TEXTS) + 1 : len(TEXTS) + 3])


def test_keyword_lists_are_served_from_the_version_folder(
    predictor: Predictor, model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = ["Deploy with Docker and MLflow on Kubernetes"]
    assert predictor.featurize(text).keyword_hits[0].tolist() == pytest.approx([0, np.log1p(4), 0, 0])
    monkeypatch.setitem(rules.KEYWORDS, "mlops", ())  # editing keyword_baseline.py changes no served model
    assert np.array_equal(Predictor.load(model_copy).predict(text).probs, predictor.predict(text).probs)
    stored = json.loads((model_copy / "keywords.json").read_text())
    stored["tags"]["mlops"] = []
    (model_copy / "keywords.json").write_text(json.dumps(stored))
    with pytest.raises(ModelLoadError, match=r"keywords\.json: changed since export"):
        Predictor.load(model_copy)
    as_exported(model_copy)  # its digest recorded anew, the smoke test still tells
    with pytest.raises(ModelLoadError, match="smoke prediction differs"):  # not the folder it exported
        Predictor.load(model_copy)
    edited = Predictor(model_copy, smoke_test=False)  # as the export loads it, before its smoke record
    assert edited.featurize(text).keyword_hits[0].tolist() == [0, 0, 0, 0]
    mlops = predictor.labels.index("mlops")
    edited_p = float(edited.predict(text).probs[0, mlops])
    served_p = float(predictor.predict(text).probs[0, mlops])
    # In log-odds: near 1, a real change of the logit moves the probability by less than 0.01.
    assert served_p < 1.0
    assert logit(edited_p) < logit(served_p) - 1.0


def test_the_served_model_passes_its_smoke_test_stored_at_export(predictor: Predictor) -> None:
    assert len(predictor.metadata["smoke"]["texts"]) == len(runtime.SMOKE_TEXTS)


def rewrite_smoke(model_copy: Path, change) -> None:  # type: ignore[no-untyped-def]
    version = resolve(model_copy)
    meta = json.loads((version / "metadata.json").read_text())
    change(meta["smoke"])
    (version / "metadata.json").write_text(json.dumps(meta))


def test_a_model_that_answers_otherwise_than_at_export_never_loads(model_copy: Path) -> None:
    def shift(smoke: dict) -> None:  # 0.01 of the top tag's probability moved to another tag
        row = smoke["probs"][0]
        top = row.index(max(row))
        row[top] -= 0.01
        row[top - 1] += 0.01

    rewrite_smoke(model_copy, shift)
    with pytest.raises(ModelLoadError, match=r"smoke prediction differs .*max difference 0\.01"):
        Predictor.load(model_copy)


def test_a_model_that_raises_at_its_smoke_prediction_never_loads(
    model_copy: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(self: Predictor, texts: list[str]) -> None:
        raise RuntimeError("onnxruntime: bad allocation")

    monkeypatch.setattr(Predictor, "predict", crash)
    with pytest.raises(ModelLoadError, match=r"smoke prediction failed \(RuntimeError: onnxruntime"):
        Predictor.load(model_copy)
