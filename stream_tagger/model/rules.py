"""Keyword baseline: what a product owner would write by hand, to compare against and to fall back on.

Each tag has a list of telling words and phrases; the tag whose keywords occur most often in the
text wins, ties go to the more specific tag (list order below), and a text without any keyword gets
``None``. Matching is on whole words of the lower-cased text, so "gan" does not fire inside "organ".
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from stream_tagger.settings import APPROVED_TAGS

# Order = tie-break priority: the smaller, more specific classes first.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "mlops": (
        "mlops",
        "deploy",
        "deployment",
        "deploying",
        "production",
        "serving",
        "monitoring",
        "docker",
        "kubernetes",
        "kubeflow",
        "mlflow",
        "airflow",
        "ci/cd",
        "feature store",
        "model registry",
        "experiment tracking",
        "data versioning",
        "dvc",
        "infrastructure",
        "orchestration",
        "pipelines",
        "scalable",
        "devops",
        "api",
        "inference server",
        "model management",
    ),
    "computer-vision": (
        "image",
        "images",
        "vision",
        "video",
        "videos",
        "object detection",
        "detection",
        "segmentation",
        "yolo",
        "cnn",
        "convolutional",
        "gan",
        "gans",
        "face",
        "faces",
        "pixel",
        "pixels",
        "ocr",
        "pose",
        "camera",
        "photo",
        "photos",
        "style transfer",
        "super resolution",
        "resnet",
        "opencv",
        "3d",
        "point cloud",
        "depth",
        "visual",
    ),
    "natural-language-processing": (
        "nlp",
        "language",
        "text",
        "texts",
        "bert",
        "gpt",
        "gpt-2",
        "gpt-3",
        "transformer",
        "transformers",
        "translation",
        "sentiment",
        "token",
        "tokens",
        "tokenizer",
        "word",
        "words",
        "sentence",
        "sentences",
        "question answering",
        "summarization",
        "entity",
        "ner",
        "chatbot",
        "corpus",
        "linguistic",
        "spacy",
        "huggingface",
        "embeddings",
        "word2vec",
        "dialogue",
        "speech",
    ),
    "other": (
        "reinforcement",
        "graph",
        "graphs",
        "time series",
        "recommendation",
        "recommender",
        "tabular",
        "anomaly",
        "audio",
        "music",
        "game",
        "games",
        "forecasting",
        "clustering",
        "causal",
    ),
}

if set(KEYWORDS) != set(APPROVED_TAGS):
    raise RuntimeError("KEYWORDS must cover exactly the approved tags")


def _pattern(words: Sequence[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    return re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")


class KeywordBaseline:
    """``predict`` returns an approved tag per text, or None when no keyword fires."""

    def __init__(self, keywords: dict[str, tuple[str, ...]] = KEYWORDS) -> None:
        self._patterns = [(tag, _pattern(words)) for tag, words in keywords.items()]

    def predict_one(self, text: str) -> str | None:
        lowered = text.lower()
        best, best_hits = None, 0
        for tag, pattern in self._patterns:
            hits = len(pattern.findall(lowered))
            if hits > best_hits:
                best, best_hits = tag, hits
        return best

    def predict(self, texts: Sequence[str]) -> list[str | None]:
        return [self.predict_one(t) for t in texts]
