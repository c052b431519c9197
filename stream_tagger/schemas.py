"""JSON Schemas of every event, generated from the msgspec structs in ``events``.

``python -m stream_tagger.schemas [DIR]`` writes ``DIR/<name>.json`` (default ``schemas/``). The files
are committed so that producers in other languages can validate against them; a unit test fails when
they no longer match the structs, so the two cannot drift apart; ``breaking_changes`` tells whether a
new version of a schema still reads what the previous one did.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import msgspec

from stream_tagger.events import EVENTS

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "schemas"


def render(event_type: type[msgspec.Struct]) -> str:
    """One event's schema as stable, readable JSON text (sorted keys, trailing newline)."""
    schema = msgspec.json.schema(event_type)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


# Bounds a newer reader may widen but never narrow: (keyword, True when a larger value is narrower).
_BOUNDS = (
    ("maxLength", False),
    ("maximum", False),
    ("exclusiveMaximum", False),
    ("maxItems", False),
    ("minLength", True),
    ("minimum", True),
    ("exclusiveMinimum", True),
    ("minItems", True),
)
# Keywords that, new or changed on an existing value, can only reject more.
_RESTRICTIONS = ("const", "pattern", "format")
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", type(None): "null"}


def breaking_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """Why a reader of the ``new`` schema could reject an event valid under the ``old`` one (backward
    compatibility: new readers, old data); empty when it cannot.

    Additive changes pass: a new optional property, a new enum value, a wider bound or type (integer to
    number, an enum to its type, a value made nullable). What breaks: a new required property, a type,
    enum value or bound taken away, a new enum, const, pattern or format on an existing value, closed
    additional properties. The schemas are msgspec's: objects with ``properties``/``required``,
    ``$ref`` into ``$defs``, ``anyOf`` for unions."""
    problems: list[str] = []
    seen: set[tuple[int, int]] = set()  # (old node, new node) pairs walked: recursive structs end

    def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            node = doc["$defs"][node["$ref"].rsplit("/", 1)[-1]]
        return node

    def types(doc: dict[str, Any], node: dict[str, Any]) -> set[str]:
        node = resolve(doc, node)
        if "anyOf" in node:
            return set().union(*(types(doc, alternative) for alternative in node["anyOf"]))
        if "type" not in node and "enum" in node:
            return {_JSON_TYPES.get(type(value), "any") for value in node["enum"]}
        kind = node.get("type", "any")
        return set(kind) if isinstance(kind, list) else {kind}

    def accepts(wider: set[str], narrower: set[str]) -> bool:
        return "any" in wider or narrower <= wider | ({"integer"} if "number" in wider else set())

    def walk(before: dict[str, Any], after: dict[str, Any], path: str) -> None:
        before, after = resolve(old, before), resolve(new, after)
        if (id(before), id(after)) in seen:
            return
        seen.add((id(before), id(after)))
        if "anyOf" in before or "anyOf" in after:  # each old alternative against a new one taking it
            for alternative in before.get("anyOf", [before]):
                kinds = types(old, alternative)
                match = next((b for b in after.get("anyOf", [after]) if accepts(types(new, b), kinds)), None)
                if match is None:
                    problems.append(f"{path}: type {sorted(kinds)} -> {sorted(types(new, after))}")
                elif alternative is not before or match is not after:
                    walk(alternative, match, path)
            return
        if not accepts(types(new, after), types(old, before)):
            problems.append(f"{path}: type {sorted(types(old, before))} -> {sorted(types(new, after))}")
        if "enum" in after:
            removed = set(before.get("enum", [])) - set(after["enum"])
            if "enum" not in before:
                problems.append(f"{path}: values now limited to {after['enum']}")
            elif removed:
                problems.append(f"{path}: enum values removed: {sorted(removed, key=repr)}")
        for keyword in _RESTRICTIONS:
            if keyword in after and after[keyword] != before.get(keyword):
                problems.append(f"{path}: {keyword} {before.get(keyword)} -> {after[keyword]}")
        for keyword, larger_is_narrower in _BOUNDS:
            if keyword in after:
                was, now = before.get(keyword), after[keyword]
                if was is None or (now > was if larger_is_narrower else now < was):
                    problems.append(f"{path}: {keyword} {was} -> {now}")
        extra_before = before.get("additionalProperties", True)
        extra_after = after.get("additionalProperties", True)
        if extra_after is False and extra_before is not False:
            problems.append(f"{path}: additional properties now rejected")
        elif isinstance(extra_after, dict):
            walk(extra_before if isinstance(extra_before, dict) else {}, extra_after, f"{path}{{*}}")
        for name in sorted(set(after.get("required", [])) - set(before.get("required", []))):
            problems.append(f"{path}.{name}: new required property")
        for name in sorted(set(before.get("properties", {})) & set(after.get("properties", {}))):
            walk(before["properties"][name], after["properties"][name], f"{path}.{name}")
        if "items" in after:
            walk(before.get("items", {}), after["items"], f"{path}[]")
        tuples = zip(before.get("prefixItems", []), after.get("prefixItems", []), strict=False)
        for i, (a, b) in enumerate(tuples):
            walk(a, b, f"{path}[{i}]")

    walk(old, new, "$")
    return problems


def write_all(directory: Path = DEFAULT_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, event_type in EVENTS.items():
        path = directory / f"{name}.json"
        path.write_text(render(event_type), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for path in write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_DIR):
        print(path)
