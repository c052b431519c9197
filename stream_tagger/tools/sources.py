"""Posts from files: CSV in the training-data format or JSONL of raw events, read as ``RawContent``.

Every row is validated with the same msgspec schema the worker uses, so a row that passes here is a row
the worker accepts. A bad row is data (``RowError`` with file and line), not an exception: a producer
wants the full list of bad rows in one pass, not the first one.
"""

from __future__ import annotations

import csv
import random
import re
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec

from stream_tagger.events import RawContent

#: The dataset shipped with the repository; the demo and the benchmarks resample it.
BUNDLED_DATASET = Path(__file__).resolve().parents[2] / "data" / "dataset.csv"

#: Columns a CSV must have (the training-data format); ``author_tags`` and ``source`` are optional.
CSV_REQUIRED = ("id", "created_on", "title", "description")

# Author tags in a CSV cell: "mlops;computer-vision", "mlops, other" or "mlops|other".
_TAG_SEPARATORS = re.compile(r"[,;|\s]+")


class SourceError(Exception):
    """The file as a whole cannot be read (missing, not UTF-8, wrong columns); names file and line."""


class RowError(msgspec.Struct, frozen=True):
    """One row that is not a valid raw event: where it is and why."""

    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


def read_posts(path: Path, max_event_bytes: int | None = None) -> Iterator[RawContent | RowError]:
    """Posts in file order, by extension: ``.jsonl``/``.ndjson`` as raw events, anything else as CSV.

    With ``max_event_bytes`` (the worker's limit), a post whose JSON encoding is larger is a bad row:
    the worker would dead-letter it, so a producer should hear about it first.
    """
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"{path}: no such file")
    rows = _read_jsonl(path) if path.suffix.lower() in (".jsonl", ".ndjson") else _read_csv(path)
    return _within_limit(path, rows, max_event_bytes)


def _within_limit(
    path: Path, rows: Iterator[tuple[int, RawContent | RowError]], max_event_bytes: int | None
) -> Iterator[RawContent | RowError]:
    for line, item in rows:
        if max_event_bytes and isinstance(item, RawContent):
            size = len(msgspec.json.encode(item))
            if size > max_event_bytes:
                reason = f"event is {size} bytes, over the {max_event_bytes}-byte limit"
                item = RowError(str(path), line, reason)
        yield item


def _lines(path: Path) -> Iterator[str]:
    """The file's lines, decoded one by one so that a byte that is not UTF-8 is reported on its line."""
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SourceError(f"{path}:{number}: not UTF-8 ({exc.reason})") from exc


def _read_jsonl(path: Path) -> Iterator[tuple[int, RawContent | RowError]]:
    # Bytes, not text: one line that is not UTF-8 is one bad row, as it would be one dead letter.
    decoder = msgspec.json.Decoder(RawContent)
    with path.open("rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield number, decoder.decode(line)
            except msgspec.DecodeError as exc:
                yield number, RowError(str(path), number, str(exc))


def _read_csv(path: Path) -> Iterator[tuple[int, RawContent | RowError]]:
    reader = csv.reader(_lines(path))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise SourceError(f"{path}:1: empty file, expected a header with {', '.join(CSV_REQUIRED)}") from None
    except csv.Error as exc:
        raise SourceError(f"{path}:1: {exc}") from exc
    missing = [c for c in CSV_REQUIRED if c not in header]
    if missing:
        raise SourceError(
            f"{path}:1: missing column(s) {', '.join(missing)}; the header has {', '.join(header)}"
        )
    # A quoted field may span lines: a record starts on the line after the previous one ended.
    start = reader.line_num + 1
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield start, RowError(str(path), start, f"unreadable CSV: {exc}")
            start = reader.line_num + 1
            continue
        if row:
            yield start, _csv_row(path, start, header, row)
        start = reader.line_num + 1


def _csv_row(path: Path, line: int, header: list[str], row: list[str]) -> RawContent | RowError:
    if len(row) != len(header):
        return RowError(str(path), line, f"expected {len(header)} fields, got {len(row)}")
    cells = dict(zip(header, row, strict=True))
    fields: dict[str, object] = {
        "id": cells["id"].strip(),
        "title": cells["title"],
        "description": cells["description"],
        "created_at": cells["created_on"].strip(),
        "author_tags": [t for t in _TAG_SEPARATORS.split(cells.get("author_tags", "")) if t],
    }
    if cells.get("source"):
        fields["source"] = cells["source"]
    try:
        event = msgspec.convert(fields, RawContent)
    except msgspec.ValidationError as exc:
        return RowError(str(path), line, str(exc).replace("$.created_at", "$.created_on"))
    if event.created_at.tzinfo is None:
        # The dataset's timestamps are naive; they are UTC, and an aware time keeps latency maths sane.
        event = msgspec.structs.replace(event, created_at=event.created_at.replace(tzinfo=UTC))
    return event


def valid_posts(path: Path) -> list[RawContent]:
    """Every post of a file that is known to be clean (the bundled dataset); any bad row is an error."""
    posts: list[RawContent] = []
    for item in read_posts(path):
        if isinstance(item, RowError):
            raise SourceError(str(item))
        posts.append(item)
    if not posts:
        raise SourceError(f"{path}: no posts")
    return posts


def resample(
    posts: Iterable[RawContent],
    n: int,
    seed: int = 0,
    now: datetime | None = None,
    id_prefix: str | None = None,
) -> list[RawContent]:
    """``n`` raw events drawn from ``posts``: whole shuffled passes, fresh unique ids, ``created_at`` = now.

    Fresh ids keep runs apart (the worker dedups by id); whole passes keep the class mix of the
    source; ``created_at`` = now makes end-to-end latency measurable from the event itself.
    """
    pool = list(posts)
    if n > 0 and not pool:
        raise ValueError("cannot resample from no posts")
    rng = random.Random(seed)
    prefix = id_prefix if id_prefix is not None else uuid.uuid4().hex[:8]
    stamp = now or datetime.now(UTC)
    out: list[RawContent] = []
    while len(out) < n:
        order = pool[:]
        rng.shuffle(order)
        for post in order[: n - len(out)]:
            out.append(msgspec.structs.replace(post, id=f"{prefix}-{len(out):07d}", created_at=stamp))
    return out


def dataset_events(
    n: int, path: Path = BUNDLED_DATASET, seed: int = 0, id_prefix: str | None = None
) -> list[RawContent]:
    """``n`` raw events resampled from the bundled dataset (the demo's and the benchmarks' workload)."""
    return resample(valid_posts(path), n, seed=seed, id_prefix=id_prefix)
