"""The model card (Markdown) and confusion-matrix PNG written into each version folder.

Both are generated from the metadata alone, so a card can never disagree with the model it describes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: training runs on servers and in CI
import matplotlib.pyplot as plt

from stream_tagger.model.thresholds import precision_text
from stream_tagger.model.versions import CARD_FILE, CONFUSION_FILE


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], title: str, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(6, 5), dpi=100)
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels, rotation=30, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    top = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, v in enumerate(row):
            ax.text(j, i, str(v), ha="center", va="center", color="white" if v > top / 2 else "black")
    fig.tight_layout()
    fig.savefig(path, metadata={"Software": None})  # no version stamp: same model, same bytes
    plt.close(fig)


def write_card(version_dir: Path, meta: dict) -> None:
    cv = meta["metrics"]["cv"]
    first = cv["first_repeat"]
    labels = meta["labels"]
    plot_confusion(
        first["confusion_matrix"]["matrix"],
        labels,
        f"{meta['version']} (out-of-fold)",
        version_dir / CONFUSION_FILE,
    )
    cfg = meta["config"]
    rows = "\n".join(
        f"| {label} | {pc['precision']:.3f} | {pc['recall']:.3f} | {cv['per_class_f1_mean'][label]:.3f} "
        f"| {pc['support']} |"
        for label, pc in ((label, first["per_class"][label]) for label in labels)
    )
    data = meta["training_data"]
    auto = cv["auto_tag"]
    parity = meta["parity"]
    libs = meta["library_versions"]
    vocab = meta["featurizer"]["vocabulary_size"]
    nb_note = ", columns scaled by naive-Bayes weights" if cfg.get("nb_weights") else ""
    aug_note = ", plus each post's title and description alone (same label)" if cfg.get("augment") else ""
    phrases = meta["featurizer"].get("keyword_phrases")
    keyword_note = (
        f"- Keyword hits (same pass): log1p of how often each tag's phrases in `keywords.json` ({phrases}\n"
        f"  phrases of 1-3 words, the keyword baseline's lists) occur, x{cfg['keyword_scale']}, appended\n"
        "  after the normalised n-gram vector.\n"
        if phrases
        else ""
    )
    pieces = meta["featurizer"].get("pieces")
    piece_note = ""
    if pieces:
        scale = cfg["embedding_scale"]
        if pieces.get("per_tag_scores"):
            axes = cfg.get("piece_norm_axes", 0)
            length = f"the length of its first {axes} coordinates" if axes else "the number of pieces"
            summed = (
                f"  subword pieces (the WordPiece vocabulary of {pieces['model']}); the sum of their\n"
                f"  vectors divided by {length}, x{scale}, appended after the keyword hits.\n"
            )
            stored = (
                ". That part of the classifier is linear, so it folds into the pieces:\n"
                "  `pieces.npz` holds each piece's logit per tag and the coordinates that give the length\n"
                "  (float32); the served model sums those and divides.\n"
            )
        else:
            summed = (
                f"  subword pieces (`pieces.npz`, the WordPiece vocabulary of {pieces['model']}),\n"
                f"  their vectors summed and scaled to unit length, x{scale}, appended after\n"
                "  the keyword hits.\n"
            )
            stored = ", float16.\n"
        piece_note = (
            f"- Piece embedding (same pass): each word cut greedily into the longest of {pieces['pieces']}\n"
            + summed
            + "  A piece's vector is the encoder's mean-pooled output for the piece alone, projected on\n"
            + f"  {pieces['dims']} axes{stored}"
        )
    auto_rows = _auto_tag_rows(labels, meta["thresholds"], auto, cv.get("auto_tag_cross_fitted"))
    inputs = "\n".join(f"| {i['input']} | {i['source']} | {i['licence']} |" for i in meta.get("inputs", []))
    card = f"""# Model card: {meta["version"]}

Tags posts (title + description) with one of: {", ".join(labels)}.

## Model
- Features (the compiled featuriser, outside the graph): character {cfg["char_min"]}-{cfg["char_max"]}-grams
  (word-padded, across word boundaries) and word 1-{cfg["word_ngrams"]}-grams of the lower-cased text,
  hashed to 64 bits; {vocab} n-grams seen in >= {cfg["min_df"]} training posts form the vocabulary.
{keyword_note}{piece_note}- Training rows: the posts{aug_note}.
- ONNX graph: TF-IDF (sublinear tf: {cfg["sublinear_tf"]}, L2 norm){nb_note} + multinomial logistic regression
  (C={cfg["C"]}, class_weight={cfg["class_weight"]}), softmax probabilities.
- Auto-tag thresholds per class, chosen on out-of-fold predictions (below).

## Training data
{data["rows"]} posts, sha256 `{data["sha256"][:16]}…`; per class: {data["class_counts"]}.
Files: {", ".join(f["path"] for f in data["files"])}.

## Inputs and licences
Everything the model was made from; nothing else is in the version folder.

| input | source | licence |
|---|---|---|
{inputs}

## Cross-validated quality ({cv["scheme"]})
Weighted F1 {cv["weighted_f1_mean"]:.3f} ± {cv["weighted_f1_std"]:.3f}, macro F1 {cv["macro_f1_mean"]:.3f}.

| tag | precision | recall | F1 (mean over repeats) | support |
|---|---|---|---|---|
{rows}

![confusion matrix]({CONFUSION_FILE})

## Auto-tag at the served thresholds
Targets: precision >= {cfg["target_precision"]} of all auto-tagged posts, >= {cfg["min_class_coverage"]} of
each class's posts auto-tagged (thresholds: calibrated per class, `model/thresholds.py`). Precision is
of the posts auto-tagged with the tag; coverage is the share of the tag's posts auto-tagged.
OOF (out-of-fold): the served thresholds on the out-of-fold predictions they were chosen on (optimistic).
Cross-fitted: per fold, thresholds chosen by the same rule on the other folds, scored on this one
(what unseen posts get). The whole procedure on posts it never trained on (nested CV, through the
ONNX artefact): `benchmarks/model_quality.py --nested`, results in `benchmarks/results/model_quality.json`.

| tag | threshold | precision, OOF | coverage, OOF | precision, cross-fitted | coverage, cross-fitted |
|---|---|---|---|---|---|
{auto_rows}

## Parity (scikit-learn vs onnxruntime, training posts)
Label agreement {parity["label_agreement"]:.4f}, max probability difference {parity["max_prob_diff"]:.2e}.

## Limits
Trained on {data["rows"]} posts of a machine-learning community site: other domains or languages will mostly
fall under the thresholds and go to human review. The drift reference (metadata `reference`) lets the
worker notice when live posts stop resembling these.

Trained {meta["trained_at"]} in {meta["training_seconds"]} s with scikit-learn {libs["scikit-learn"]},
onnxruntime {libs["onnxruntime"]}.
"""
    (version_dir / CARD_FILE).write_text(card, encoding="utf-8")


def _auto_tag_rows(labels: Sequence[str], thresholds: dict, served: dict, cross: dict | None) -> str:
    """One row per tag and one for all posts: threshold, out-of-fold and cross-fitted figures."""
    rows = []
    for label in [*labels, None]:
        figures = [served, cross] if cross else [served]
        cells = []
        for fig in figures:
            part = fig if label is None else fig["per_class"][label]
            cells += [precision_text(part), f"{part['coverage']:.3f}"]
        if not cross:
            cells += ["-", "-"]
        name, th = ("all posts", "") if label is None else (label, f"{thresholds[label]:.3f}")
        rows.append(f"| {name} | {th} | {' | '.join(cells)} |")
    return "\n".join(rows)
