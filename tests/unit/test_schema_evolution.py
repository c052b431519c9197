"""Schema evolution: a v1 worker reads additive changes; no committed schema breaks its previous version."""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path
from typing import Any

import msgspec
import pytest

from stream_tagger.events import EVENTS, RawContent
from stream_tagger.schemas import DEFAULT_DIR, breaking_changes
from stream_tagger.worker.decode import decode_raw

REPO = DEFAULT_DIR.parent


def test_a_v1_worker_reads_a_raw_event_with_fields_added_by_a_newer_producer() -> None:
    newer = {
        "schema_version": 1,
        "id": "p1",
        "title": "Segmenting cells with U-Net",
        "created_at": "2024-05-01T10:00:00Z",
        "language": "en",
        "reading_time": {"minutes": 4, "words": [1, 2, {"x": None}]},
        "scores": [0.1, 2e300],
    }
    event = decode_raw(msgspec.json.encode(newer), 64 * 1024)
    assert isinstance(event, RawContent) and (event.id, event.title) == ("p1", "Segmenting cells with U-Net")


def earlier_versions(path: Path) -> list[dict[str, Any]]:
    """Every committed version of the schema file other than the one in the working tree, oldest first:
    a reader must still read what any earlier writer wrote."""
    relative = path.relative_to(REPO).as_posix()

    def git(*args: str) -> str:
        done = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True, check=True)
        return done.stdout

    try:
        if git("rev-parse", "--is-shallow-repository").strip() == "true":
            pytest.skip("a shallow clone has no earlier versions to compare with")
        commits = git("log", "--format=%H", "--", relative).split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("no git history to compare with")
    current = path.read_text(encoding="utf-8")
    versions = {git("show", f"{commit}:{relative}") for commit in commits} - {current}
    return [json.loads(text) for text in sorted(versions)]


def test_each_committed_schema_reads_what_every_earlier_version_did() -> None:
    compared = 0
    for name in sorted(EVENTS):
        path = DEFAULT_DIR / f"{name}.json"
        now = json.loads(path.read_text(encoding="utf-8"))
        for before in earlier_versions(path):  # a first version has nothing to stay compatible with
            assert breaking_changes(before, now) == [], name
            compared += 1
    assert compared >= 1  # dead_letter.v1 gained the internal_error reason after its first version


RAW = json.loads((DEFAULT_DIR / "raw_content.v1.json").read_text(encoding="utf-8"))


def changed(edit: str) -> dict[str, Any]:
    schema = copy.deepcopy(RAW)
    props = schema["$defs"]["RawContent"]["properties"]
    if edit == "new optional field":
        props["language"] = {"type": "string", "default": "en"}
    elif edit == "wider title":
        props["title"]["maxLength"] = 2_000
    elif edit == "new schema version":
        props["schema_version"]["enum"] = [1, 2]
    elif edit == "new required field":
        props["language"] = {"type": "string"}
        schema["$defs"]["RawContent"]["required"].append("language")
    elif edit == "narrower title":
        props["title"]["maxLength"] = 500
    elif edit == "schema version taken away":
        props["schema_version"]["enum"] = [2]
    elif edit == "source no longer nullable":
        props["source"] = {"type": "string"}
    elif edit == "author tags bounded below":
        props["author_tags"]["minItems"] = 1
    elif edit == "title nullable but shorter":
        props["title"] = {"anyOf": [{"type": "string", "maxLength": 10}, {"type": "null"}]}
    elif edit == "id with a pattern":
        props["id"]["pattern"] = "^[a-z]+$"
    elif edit == "source limited to values":
        props["source"] = {"anyOf": [{"enum": ["web"]}, {"type": "null"}]}
    elif edit == "schema version any integer":
        props["schema_version"] = {"type": "integer"}
    elif edit == "source nullable title":
        props["title"] = {"anyOf": [{"type": "string", "maxLength": 1000}, {"type": "null"}]}
    elif edit == "closed":
        schema["$defs"]["RawContent"]["additionalProperties"] = False
    return schema


@pytest.mark.parametrize(
    "edit",
    [
        "new optional field",
        "wider title",
        "new schema version",
        "schema version any integer",
        "source nullable title",
    ],
)
def test_additive_changes_are_compatible(edit: str) -> None:
    assert breaking_changes(RAW, changed(edit)) == []


@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        ("new required field", "$.language: new required property"),
        ("narrower title", "$.title: maxLength 1000 -> 500"),
        ("schema version taken away", "$.schema_version: enum values removed: [1]"),
        ("source no longer nullable", "$.source: type ['null'] -> ['string']"),
        ("title nullable but shorter", "$.title: maxLength 1000 -> 10"),
        ("id with a pattern", "$.id: pattern None -> ^[a-z]+$"),
        ("source limited to values", "$.source: values now limited to ['web']"),
        ("author tags bounded below", "$.author_tags: minItems None -> 1"),
        ("closed", "$: additional properties now rejected"),
    ],
)
def test_breaking_changes_are_named(edit: str, expected: str) -> None:
    assert breaking_changes(RAW, changed(edit)) == [expected]


def test_a_recursive_schema_is_walked_once_per_pair_of_nodes() -> None:
    node = {
        "$defs": {"Tree": {"type": "object", "properties": {"child": {"$ref": "#/$defs/Tree"}}}},
        "$ref": "#/$defs/Tree",
    }
    assert breaking_changes(node, copy.deepcopy(node)) == []


def test_integers_are_numbers_but_numbers_are_not_integers() -> None:
    integer, number = {"type": "integer"}, {"type": "number"}
    assert breaking_changes(integer, number) == []
    assert breaking_changes(number, integer) == ["$: type ['number'] -> ['integer']"]
