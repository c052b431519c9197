"""Reading posts from CSV and JSONL: valid rows become raw events, bad rows are reported by file and line."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest

from stream_tagger.events import RawContent
from stream_tagger.tools.sources import (
    BUNDLED_DATASET,
    RowError,
    SourceError,
    dataset_events,
    read_posts,
    resample,
    valid_posts,
)

HEADER = "id,created_on,title,description,tag\n"


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def test_bundled_dataset_reads_cleanly_as_utc_events() -> None:
    posts = valid_posts(BUNDLED_DATASET)
    assert len(posts) == 764
    assert all(p.created_at.tzinfo is not None for p in posts)
    assert len({p.id for p in posts}) == len(posts)


def test_csv_multiline_field_keeps_line_numbers_of_later_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "posts.csv",
        HEADER
        + '1,2020-02-20 06:43:18,First,"two\nlines",mlops\n'
        + "2,not a date,Second,desc,mlops\n"
        + ",2020-02-20 06:43:18,No id,desc,mlops\n",
    )
    items = list(read_posts(path))
    assert isinstance(items[0], RawContent)
    assert items[0].description == "two\nlines"
    assert items[1] == RowError(str(path), 4, "Invalid RFC3339 encoded datetime - at `$.created_on`")
    assert isinstance(items[2], RowError)
    assert items[2].line == 5
    assert "$.id" in items[2].reason
    assert str(items[2]).startswith(f"{path}:5: ")


def test_csv_author_tags_column_is_split(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "posts.csv",
        'id,created_on,title,description,author_tags\n1,2020-02-20T06:43:18Z,T,D,"mlops; computer-vision"\n',
    )
    [post] = read_posts(path)
    assert isinstance(post, RawContent)
    assert post.author_tags == ["mlops", "computer-vision"]


def test_csv_wrong_field_count_is_a_row_error(tmp_path: Path) -> None:
    path = write(tmp_path, "posts.csv", HEADER + "1,2020-02-20 06:43:18,only three\n")
    [item] = read_posts(path)
    assert item == RowError(str(path), 2, "expected 5 fields, got 3")


def test_csv_missing_columns_name_file_and_header_line(tmp_path: Path) -> None:
    path = write(tmp_path, "posts.csv", "id,title\n1,T\n")
    with pytest.raises(SourceError, match=r"posts\.csv:1: missing column\(s\) created_on, description"):
        list(read_posts(path))


def test_csv_not_utf8_names_the_line(tmp_path: Path) -> None:
    rows = b"1,2020-02-20 06:43:18,T,D,x\n2,2020,\xff\xfe,D,x\n"
    path = write(tmp_path, "posts.csv", HEADER.encode() + rows)
    with pytest.raises(SourceError, match=r"posts\.csv:3: not UTF-8"):
        list(read_posts(path))


def test_posts_over_the_size_limit_are_bad_rows(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "posts.csv",
        HEADER + f"1,2020-02-20 06:43:18,T,{'x' * 500},mlops\n" + "2,2020-02-20 06:43:18,T,short,mlops\n",
    )
    big, small = read_posts(path, max_event_bytes=300)
    assert isinstance(big, RowError)
    assert big.line == 2
    assert "over the 300-byte limit" in big.reason
    assert isinstance(small, RawContent)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"nope\.csv: no such file"):
        read_posts(tmp_path / "nope.csv")


def test_jsonl_validates_each_line_against_the_raw_schema(tmp_path: Path) -> None:
    good = msgspec.json.encode(RawContent(id="a", title="T", created_at=datetime(2024, 1, 1, tzinfo=UTC)))
    path = write(
        tmp_path,
        "raw.jsonl",
        good
        + b'\n\n{"id": 1}\nnot json\n'
        + b"\xff\n"
        + b'{"schema_version": 2, "id": "b", "title": "T", "created_at": "2024-01-01T00:00:00Z"}\n',
    )
    items = list(read_posts(path))
    assert isinstance(items[0], RawContent)
    errors = [i for i in items if isinstance(i, RowError)]
    assert [e.line for e in errors] == [3, 4, 5, 6]
    assert "$.id" in errors[0].reason
    assert "schema_version" in errors[3].reason


def test_resample_gives_unique_ids_fresh_times_and_whole_passes() -> None:
    posts = valid_posts(BUNDLED_DATASET)[:10]
    events = resample(posts, 25, seed=1, id_prefix="run")
    assert len(events) == 25
    assert len({e.id for e in events}) == 25
    assert all(e.id.startswith("run-") for e in events)
    assert len({e.created_at for e in events}) == 1
    counts = Counter(e.title for e in events)
    assert sorted(counts.values()) == [2] * 5 + [3] * 5


def test_resample_is_deterministic_for_a_seed() -> None:
    a = dataset_events(50, seed=3, id_prefix="x")
    b = dataset_events(50, seed=3, id_prefix="x")
    assert [e.title for e in a] == [e.title for e in b]
    assert [e.title for e in a] != [e.title for e in dataset_events(50, seed=4, id_prefix="x")]
