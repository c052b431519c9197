"""Model version folders and the ``models/current`` pointer.

A version folder holds ``model.onnx``, ``vocabulary.npy`` (the n-gram hash of each column: the
featuriser's half of the model), ``keywords.json`` (the keyword phrases per tag whose hits the model
takes as input; absent in models trained without them, which then serve as before), ``pieces.npz``
(the subword pieces and their pretrained vectors behind the ``embedding`` input; likewise optional),
``metadata.json``,
``MODEL_CARD.md``, ``confusion_matrix.png`` and ``pipeline.joblib`` (the fitted scikit-learn pipeline,
read only by ``evaluate`` to prove parity; the service never unpickles anything).
``current`` is a one-line text file naming the served folder: unlike a symlink it survives git on
every OS, and switching versions is one atomic rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

MODEL_FILE = "model.onnx"
VOCAB_FILE = "vocabulary.npy"
KEYWORDS_FILE = "keywords.json"
PIECES_FILE = "pieces.npz"
METADATA_FILE = "metadata.json"
CARD_FILE = "MODEL_CARD.md"
CONFUSION_FILE = "confusion_matrix.png"
PIPELINE_FILE = "pipeline.joblib"
POINTER = "current"
# Names of the ONNX graph's inputs and output: the contract between export and serving.
# ``term_weights`` and ``term_weights_squared`` are sparse (CSR) [B, vocabulary]: each n-gram's term
# weight and its square, in the same places (decision 027).
INPUT_TERM_WEIGHTS = "term_weights"
INPUT_TERM_WEIGHTS_SQUARED = "term_weights_squared"
# The graph's metadata property saying how the featuriser makes ``term_weights`` from n-gram counts:
# "sublinear" (1 + log(count)) or "counts".
TERM_WEIGHTS_PROP = "term_weights"
INPUT_KEYWORD_HITS = "keyword_hits"  # only in graphs of models with keywords.json
INPUT_EMBEDDING = "embedding"  # only in graphs of models with pieces.npz
OUTPUT = "probabilities"
#: Most bytes ``pieces.npz`` may unpack to: a worker loads a promoted model beside the one it serves, in a
#: container of a few hundred MB. All 30,522 pieces of all-MiniLM-L6-v2 at 384 float32s take 45 MiB.
MAX_PIECES_BYTES = 128 * 2**20


class ModelLoadError(RuntimeError):
    """A model folder that cannot be served; the message names the offending path."""


def resolve(model_dir: Path) -> Path:
    """The version folder behind ``models/current``, ``models/`` or a version folder itself."""
    model_dir = Path(model_dir)
    if model_dir.is_dir() and not (model_dir / MODEL_FILE).exists() and (model_dir / POINTER).is_file():
        model_dir = model_dir / POINTER
    if model_dir.is_file():
        try:
            name = model_dir.read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as exc:
            # Not readable by this user (written under umask 077) or not UTF-8 (PowerShell writes
            # UTF-16): the same one-line refusal as any other pointer a worker cannot serve from.
            raise ModelLoadError(f"{model_dir}: unreadable pointer ({exc})") from exc
        if not _is_folder_name(name):
            raise ModelLoadError(f"{model_dir}: pointer must name one version folder, got {name!r}")
        target = model_dir.parent / name
        if not target.is_dir():
            raise ModelLoadError(f"{model_dir}: names {name!r}, but {target} is not a directory")
        return target
    if not model_dir.is_dir():
        raise ModelLoadError(f"{model_dir}: no such model directory")
    return model_dir


def _is_folder_name(name: str) -> bool:
    """A folder's name alone: not a path, not "." or ".." (a pointer names a folder beside it)."""
    return bool(name) and "/" not in name and "\\" not in name and name not in (".", "..")


def _read_json(path: Path, what: str, missing: str = "missing") -> object:
    """A version folder's JSON file, or a ModelLoadError naming it."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path}: {missing}") from exc
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{path}: unreadable {what} ({exc})") from exc


def read_metadata(version_dir: Path) -> dict:
    path = version_dir / METADATA_FILE
    meta = _read_json(path, "metadata")
    if not isinstance(meta, dict):
        raise ModelLoadError(f"{path}: metadata is not a JSON object")
    for key in ("version", "labels", "thresholds", "featurizer"):
        if key not in meta:
            raise ModelLoadError(f"{path}: metadata lacks {key!r}")
    return meta


#: The files a worker serves from: each one's sha256 is recorded at export (``metadata.json``'s "files")
#: and checked at load, so a damaged or edited file is refused rather than served: a few changed bytes
#: of ``model.onnx`` or one letter of ``keywords.json`` still load and can pass the smoke test.
SERVED_FILES = (MODEL_FILE, VOCAB_FILE, KEYWORDS_FILE, PIECES_FILE)


def file_digests(version_dir: Path) -> dict[str, str]:
    """The sha256 of each served file the version has (keywords and pieces are optional)."""
    return {
        name: hashlib.sha256((version_dir / name).read_bytes()).hexdigest()
        for name in SERVED_FILES
        if (version_dir / name).is_file()
    }


def check_digests(version_dir: Path, recorded: object) -> None:
    """Every served file as it was at export, by the digests ``file_digests`` recorded; a ModelLoadError
    naming the first file that differs, is missing, or is there unrecorded."""
    meta_path = version_dir / METADATA_FILE
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise ModelLoadError(f"{meta_path}: 'files' is not a map of file names to sha256 digests")
    try:
        found = file_digests(version_dir)
    except OSError as exc:
        raise ModelLoadError(f"{version_dir}: a served file cannot be read ({exc})") from exc
    for name in SERVED_FILES:
        if recorded.get(name) == found.get(name):
            continue
        if name not in found:
            problem = f"missing ({meta_path} records its sha256)"
        elif name not in recorded:
            problem = f"not among the files {meta_path} records"
        else:
            problem = f"changed since export (its sha256 is not the one {meta_path} records)"
        raise ModelLoadError(f"{version_dir / name}: {problem}")


def write_keywords(version_dir: Path, phrases: dict[str, tuple[str, ...]], scale: float) -> None:
    data = {"scale": scale, "tags": {tag: list(words) for tag, words in phrases.items()}}
    (version_dir / KEYWORDS_FILE).write_text(json.dumps(data, indent=2), encoding="utf-8")


def read_keywords(version_dir: Path) -> dict[str, list[str]]:
    """The keyword phrases per tag, in the order of the graph's keyword columns."""
    path = version_dir / KEYWORDS_FILE
    data = _read_json(path, "keywords", "missing (the model's graph takes keyword hits)")
    tags = data.get("tags") if isinstance(data, dict) else None
    if not isinstance(tags, dict) or not all(
        isinstance(words, list) and all(isinstance(w, str) for w in words) for words in tags.values()
    ):
        raise ModelLoadError(f"{path}: 'tags' must map each tag to a list of phrases")
    return tags


def write_pieces(version_dir: Path, pieces: tuple[str, ...], vectors: np.ndarray) -> None:
    np.savez_compressed(version_dir / PIECES_FILE, pieces=np.array(pieces, dtype=str), vectors=vectors)


def read_pieces(version_dir: Path) -> tuple[list[str], np.ndarray]:
    """The pieces and their vectors (float16, or float32 per-tag scores), rows in the order of the vectors."""
    path = version_dir / PIECES_FILE
    try:
        with zipfile.ZipFile(path) as archive:
            size = sum(entry.file_size for entry in archive.infolist())
        if size > MAX_PIECES_BYTES:
            # Checked before reading: compressed, a file of 1 MB can hold a gigabyte of vectors.
            raise ModelLoadError(
                f"{path}: {size / 2**20:.0f} MiB of pieces and vectors, over the limit of "
                f"{MAX_PIECES_BYTES / 2**20:.0f} MiB"
            )
        with np.load(path, allow_pickle=False) as data:
            pieces, vectors = data["pieces"], data["vectors"]
    except FileNotFoundError as exc:
        raise ModelLoadError(f"{path}: missing (the model's graph takes a piece embedding)") from exc
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise ModelLoadError(f"{path}: unreadable pieces ({exc})") from exc
    if pieces.dtype.kind != "U" or vectors.dtype not in (np.float16, np.float32):
        raise ModelLoadError(f"{path}: 'pieces' must be strings and 'vectors' float16 or float32")
    return pieces.tolist(), vectors


@contextmanager
def staging(models_root: Path, version: str) -> Iterator[Path]:
    """A temporary folder that becomes ``models_root/version`` only if the block succeeds.

    Nothing half-written is ever visible under ``models/``: the folder appears by one rename, with
    every folder in it 0755 and every file 0644, whatever the umask of the process that wrote them."""
    models_root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=models_root))
    try:
        yield tmp
        # The service may run as another user (deploy/Dockerfile: USER tagger) than the one training:
        # files written under umask 077 would be promoted, then fail to load in every worker started.
        _make_readable(tmp)
        final = models_root / version
        if final.exists():
            raise FileExistsError(f"{final} already exists")
        tmp.rename(final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _make_readable(folder: Path) -> None:
    """Folders 0755 and files 0644 throughout ``folder`` (symbolic links left as they are)."""
    folder.chmod(0o755)
    for parent, dirs, files in os.walk(folder):
        for name in dirs:
            path = Path(parent, name)
            if not path.is_symlink():
                path.chmod(0o755)
        for name in files:
            path = Path(parent, name)
            if not path.is_symlink():
                path.chmod(0o644)


def version_folder(models_root: Path, version: str) -> Path:
    """``models_root/version``, refused unless ``version`` is a folder's name alone (not "v3/" or
    "../x": workers would reject the pointer), not the pointer's own name nor a hidden one, and the
    folder holds a model."""
    if not _is_folder_name(version):
        raise ModelLoadError(f"{version!r}: not a version folder name (give the folder's name alone)")
    if version == POINTER:
        # With ``current`` a symbolic link to a version it holds a model, but the pointer written
        # would name itself: no worker could load it.
        raise ModelLoadError(f"{version!r}: the pointer itself, not a version folder")
    if version.startswith("."):
        # Training stages a version in ``.VERSION.xxxx``, removed once it is renamed into place.
        raise ModelLoadError(
            f"{version!r}: a hidden folder (training stages versions there), not a version folder"
        )
    folder = models_root / version
    if not (folder / MODEL_FILE).is_file():
        raise ModelLoadError(f"{folder}: not a model folder")
    return folder


def set_current(models_root: Path, version: str) -> None:
    """Point ``models_root/current`` at the version folder ``version`` atomically: a unique temporary
    file, flushed to disk, renamed over the pointer (the rename itself flushed with the folder), so that
    two promotions at once cannot trip on one temporary name and a crash never leaves an empty pointer."""
    version_folder(models_root, version)
    fd, tmp = tempfile.mkstemp(prefix=f".{POINTER}.", dir=models_root)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(version + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the service reads it
        os.replace(tmp, models_root / POINTER)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    folder = os.open(models_root, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
