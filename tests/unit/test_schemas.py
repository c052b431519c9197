"""The committed JSON Schemas are exactly what the event structs generate."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from stream_tagger.events import EVENTS
from stream_tagger.schemas import DEFAULT_DIR, render, write_all


@pytest.mark.parametrize("name", sorted(EVENTS))
def test_committed_schema_matches_the_struct(name: str) -> None:
    path = DEFAULT_DIR / f"{name}.json"
    assert path.is_file(), f"{path} missing: run `python -m stream_tagger.schemas`"
    assert path.read_text(encoding="utf-8") == render(EVENTS[name]), (
        f"{path} is stale: run `python -m stream_tagger.schemas`"
    )


def test_no_schema_file_without_an_event() -> None:
    assert {p.stem for p in DEFAULT_DIR.glob("*.json")} == set(EVENTS)


def test_write_all_writes_one_file_per_event(tmp_path: Path) -> None:
    written = write_all(tmp_path)
    assert sorted(p.name for p in written) == sorted(f"{name}.json" for name in EVENTS)
    schema = msgspec.json.decode(written[0].read_bytes())
    assert schema["$schema"].startswith("https://json-schema.org/")
