"""CSV validation: every bad file fails with its name and line before anything is trained."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream_tagger.model.dataset import DatasetError, load_dataset

HEADER = "id,created_on,title,description,tag\n"


def _rows(n_per_class: int = 5) -> str:
    tags = ["computer-vision", "mlops", "natural-language-processing", "other"]
    return "".join(f"{t}{i},2020-01-01,title {i},desc {t},{t}\n" for t in tags for i in range(n_per_class))


def _write(tmp_path: Path, text: str, name: str = "d.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reads_valid_file_and_builds_worker_text(tmp_path: Path) -> None:
    data = load_dataset([_write(tmp_path, HEADER + _rows())])
    assert len(data) == 20
    assert data.texts[0] == "title 0 desc computer-vision"
    assert data.class_counts()["mlops"] == 5


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("id,title,description,tag\n", "d.csv:1: missing column(s) created_on"),
        (HEADER + "1,2020,t,d,computer-vision,extra\n", "d.csv:2: expected 5 fields"),
        (HEADER + "1,2020,t,d\n", "d.csv:2: expected 5 fields"),
        (HEADER + "1,2020,t,d,computer-vision\n2,2020,t,d,robotics\n", "d.csv:3: unknown tag 'robotics'"),
        (HEADER + ",2020,t,d,mlops\n", "d.csv:2: empty id"),
        (HEADER + "1,2020, ,,mlops\n", "d.csv:2: empty title and description"),
        (HEADER, "d.csv: no data rows"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(DatasetError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load_dataset([_write(tmp_path, text)])


def test_line_numbers_count_physical_lines_of_multiline_fields(tmp_path: Path) -> None:
    text = HEADER + '1,2020,t,"two\nlines",mlops\n2,2020,t,d,nope\n'
    with pytest.raises(DatasetError, match=r"d\.csv:4: unknown tag"):
        load_dataset([_write(tmp_path, text)])


def test_not_utf8_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(HEADER.encode() + b"1,2020,caf\xe9,d,mlops\n")
    with pytest.raises(DatasetError, match=r"d\.csv:2: not UTF-8"):
        load_dataset([path])
    with pytest.raises(DatasetError, match=r"nope\.csv: cannot read"):
        load_dataset([tmp_path / "nope.csv"])


def test_too_few_examples_per_class(tmp_path: Path) -> None:
    text = HEADER + _rows(5).replace("mlops4,2020-01-01,title 4,desc mlops,mlops\n", "")
    with pytest.raises(DatasetError, match=r"d\.csv: too few examples \(< 5\) for mlops \(4\)"):
        load_dataset([_write(tmp_path, text)])


def test_later_file_overrides_same_id(tmp_path: Path) -> None:
    base = _write(tmp_path, HEADER + _rows(), "base.csv")
    fix = _write(tmp_path, HEADER + "other0,2021-01-01,fixed,now mlops,mlops\n", "feedback.csv")
    data = load_dataset([base, fix], min_per_class=0)
    assert len(data) == 20
    assert data.tags[data.ids.index("other0")] == "mlops"
    assert data.class_counts() == {
        "computer-vision": 5,
        "mlops": 6,
        "natural-language-processing": 5,
        "other": 4,
    }
    assert data.sha256 != load_dataset([base], min_per_class=0).sha256
