"""JSON Schemas of every event, generated from the msgspec structs in ``events``.

``python -m stream_tagger.schemas [DIR]`` writes ``DIR/<name>.json`` (default ``schemas/``). The files
are committed so that producers in other languages can validate against them; a unit test fails when
they no longer match the structs, so the two cannot drift apart.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import msgspec

from stream_tagger.events import EVENTS

DEFAULT_DIR = Path(__file__).resolve().parents[1] / "schemas"


def render(event_type: type[msgspec.Struct]) -> str:
    """One event's schema as stable, readable JSON text (sorted keys, trailing newline)."""
    schema = msgspec.json.schema(event_type)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


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
