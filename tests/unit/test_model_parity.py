"""scikit-learn pipeline vs the served path (numpy featuriser + onnxruntime): same labels, probs to 1e-4."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import joblib
import numpy as np
import onnx
import pytest

from stream_tagger.model.dataset import load_dataset
from stream_tagger.model.predictor import Predictor
from stream_tagger.model.train import pipeline_steps
from stream_tagger.model.versions import (
    INPUT_EMBEDDING,
    INPUT_KEYWORD_HITS,
    INPUT_TERM_WEIGHTS,
    INPUT_TERM_WEIGHTS_SQUARED,
    MODEL_FILE,
    PIPELINE_FILE,
    resolve,
)
from tests.conftest import DATASET, MODELS, REPO

NASTY = [
    "",
    " ",
    "!!! ??? ... --- ###",
    "Ça va? naïve café résumé Ångström Straße",
    "🙂🚀🔥 emoji only 🤖",
    "日本語のテキスト分類 中文文本 한국어",
    "Tab\tnew\nline\r\ncarriage",
    "\0nul\0inside",
    "\ud800 lone surrogate",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
    "Object detection " + "x" * 20_000,
    "BERT " + "lorem ipsum dolor sit amet, " * 800,
    "İstanbul DİKKAT ß ﬁ",
    "C++ & C# / .NET; e-mail: a@b.c http://x.y/z?q=1",
]


@pytest.fixture(scope="module")
def served() -> tuple[Predictor, object]:
    version_dir = resolve(MODELS / "current")
    return Predictor(version_dir), joblib.load(version_dir / PIPELINE_FILE)


def _check(predictor: Predictor, pipeline, texts: list[str]) -> None:
    onnx_probs = predictor.predict(texts).probs
    sk_probs = pipeline.predict_proba(texts)
    assert np.array_equal(onnx_probs.argmax(axis=1), sk_probs.argmax(axis=1))
    assert np.abs(onnx_probs - sk_probs).max() < 1e-4


def test_the_served_model_takes_keyword_hits_and_the_piece_embedding(served) -> None:
    # so that the parity tests below cover both dense inputs too
    predictor, pipeline = served
    graph = onnx.load(resolve(MODELS / "current") / MODEL_FILE).graph
    names = [INPUT_TERM_WEIGHTS, INPUT_TERM_WEIGHTS_SQUARED, INPUT_KEYWORD_HITS, INPUT_EMBEDDING]
    assert [i.name for i in graph.input] == names
    feats = predictor.featurize(load_dataset([DATASET]).texts)
    assert (feats.keyword_hits > 0).mean() > 0.2
    assert np.allclose(np.linalg.norm(feats.embedding, axis=1), 1.0, atol=1e-5)
    assert {"keywords", "embedding"} <= set(pipeline_steps(pipeline))


def test_parity_on_the_whole_dataset(served) -> None:
    _check(*served, load_dataset([DATASET]).texts)


def test_parity_on_nasty_text(served) -> None:
    _check(*served, NASTY)
    for text in NASTY:  # alone, as the worker's smallest batch
        _check(*served, [text])


_SNIPPET = """
import json, sys
from stream_tagger.model.predictor import Predictor
texts = json.loads(sys.stdin.read())
print(json.dumps(Predictor.load(sys.argv[1]).predict(texts).probs.tolist()))
"""


def test_same_probabilities_under_the_c_locale(served) -> None:
    predictor, _ = served
    texts = [t for t in NASTY if "\ud800" not in t]  # JSON over a pipe cannot carry a lone surrogate
    env = {k: v for k, v in os.environ.items() if not k.startswith("LC_")} | {"LC_ALL": "C", "LANG": "C"}
    env["PYTHONUTF8"] = "0"
    out = subprocess.run(
        [sys.executable, "-c", _SNIPPET, str(MODELS / "current")],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
        timeout=120,
    )
    assert np.array_equal(np.array(json.loads(out.stdout), dtype=np.float32), predictor.predict(texts).probs)
