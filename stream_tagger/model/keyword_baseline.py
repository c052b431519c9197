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


class KeywordBaseline:
    """``predict`` returns an approved tag per text, or None when no keyword fires.

    All keywords live in one alternation (longest first), so a text is scanned once, not once per tag:
    the worker samples this baseline on the hot path."""

    def __init__(self, keywords: dict[str, tuple[str, ...]] = KEYWORDS) -> None:
        self._tag_of = {word: tag for tag, words in reversed(keywords.items()) for word in words}
        alternatives = "|".join(re.escape(w) for w in sorted(self._tag_of, key=len, reverse=True))
        self._pattern = re.compile(rf"(?<![\w-])(?:{alternatives})(?![\w-])")
        self._priority = {tag: i for i, tag in enumerate(keywords)}

    def predict_one(self, text: str) -> str | None:
        hits: dict[str, int] = {}
        for word in self._pattern.findall(text.lower()):
            tag = self._tag_of[word]
            hits[tag] = hits.get(tag, 0) + 1
        if not hits:
            return None
        return max(hits, key=lambda tag: (hits[tag], -self._priority[tag]))

    def predict(self, texts: Sequence[str]) -> list[str | None]:
        return [self.predict_one(t) for t in texts]
