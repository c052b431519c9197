"""The Quix Streams peer: a user's app that passes the JSON events through, on Quix's defaults.

JSON in -> JSON out, keys kept, at-least-once (Quix's default guarantee: idempotent producer, offsets
committed every 5 s after the outputs are flushed). It does no work on the event, so it is the least a
Quix Streams pipeline costs. Quix keeps the input's timestamp on what it produces, so the harness times
this pipeline by when its reader receives the outputs, never by their timestamps.

It runs in its own virtualenv (``benchmarks/quix/requirements.txt``): Quix Streams 3.28 requires
confluent-kafka < 2.13 and pydantic-settings < 2.16, older than what the project pins.

    benchmarks/quix/.venv/bin/python benchmarks/quix/app.py --bootstrap HOST:PORT --input T --output T
        --group G --state-dir DIR
"""

from __future__ import annotations

import argparse

from quixstreams import Application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", required=True, help="Quix's state folder (unused by a passthrough)")
    args = parser.parse_args()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        # The benchmark produces the events before it starts the pipeline (Quix's default is "latest").
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        loglevel="WARNING",
    )
    source = app.topic(args.input, value_deserializer="json")
    sink = app.topic(args.output, value_serializer="json")
    app.dataframe(source).to_topic(sink)
    app.run()  # until SIGTERM, which Quix handles by flushing, committing and leaving the group


if __name__ == "__main__":
    main()
