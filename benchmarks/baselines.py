"""The pipelines our worker is measured against, each run as its own process like the worker.

``passthrough``: a bare confluent-kafka consume -> produce loop, the transport ceiling of this machine.
``sklearn``: what a user would write without us: a confluent-kafka loop that parses each consumed batch
and calls scikit-learn's ``predict_proba`` once for the whole batch, with the model such a user trains
(``train_user_model``). ``faust``: a Faust agent that only iterates its stream and hands each event to a
confluent producer, to show what Faust's per-event stream costs before any model runs. The Quix Streams
peer lives in ``quix/app.py``: it needs its own virtualenv.

Every pipeline writes one output message per input message, keyed by the input key, so the harness
measures them all the same way. Each stops after ``--seconds`` or on SIGTERM (the harness stops it when
its run is over).

    python benchmarks/baselines.py passthrough|sklearn|faust --bootstrap HOST:PORT --input T --output T
        --group G [--model user-model.pkl] [--seconds S]
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import signal
import time
from collections.abc import Callable
from pathlib import Path

from confluent_kafka import Consumer, Producer

#: The obvious config a user writes, plus a fast group join on Tansu (it waits ~half the session timeout).
SESSION_TIMEOUT_MS = 6_000
HEARTBEAT_INTERVAL_MS = 500
# Tansu answers a fetch only when fetch.wait.max.ms is up, even when data is there (measured: p50 130 ms
# at librdkafka's default 500 ms, 3.5 ms at 10 ms); Kafka answers at once. 10 ms keeps the comparison about
# the pipelines, not about this broker.
FETCH_WAIT_MAX_MS = 10


def consumer_config(bootstrap: str, group: str) -> dict[str, str | int]:
    return {
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": SESSION_TIMEOUT_MS,
        "heartbeat.interval.ms": HEARTBEAT_INTERVAL_MS,
        "fetch.wait.max.ms": FETCH_WAIT_MAX_MS,
    }


def producer_config(bootstrap: str) -> dict[str, str | int]:
    return {"bootstrap.servers": bootstrap, "linger.ms": 5}


class StopFlag:
    """Set by SIGTERM/SIGINT, so a loop ends between messages and flushes what it produced."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, _signum: int, _frame: object) -> None:
        self.set = True


def produce(producer: Producer, topic: str, key: bytes | None, value: bytes) -> None:
    """Produce, waiting for room when the local queue is full (never drop a message)."""
    while True:
        try:
            producer.produce(topic, value=value, key=key)
            return
        except BufferError:
            producer.poll(0.05)


def train_user_model(dataset_csv: Path, out: Path) -> Path:
    """The "user's model": a plain scikit-learn word + char TF-IDF and logistic regression, pickled.

    Char n-grams are what a user reaches for to get the last points of F1; they are also what makes
    ``predict_proba`` slow, which is the cost our worker is compared against.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline, make_union

    from stream_tagger.model.dataset import load_dataset

    data = load_dataset([dataset_csv])
    model = make_pipeline(
        make_union(
            TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True),
            TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True),
        ),
        LogisticRegression(max_iter=1000, C=10.0),
    )
    model.fit(data.texts, list(data.tags))
    out.write_bytes(pickle.dumps(model))
    return out


def _clients(args: argparse.Namespace) -> tuple[Consumer, Producer]:
    """One client set-up for every baseline, so the baselines differ only in the work they do."""
    consumer = Consumer(consumer_config(args.bootstrap, args.group))
    consumer.subscribe([args.input])
    return consumer, Producer(producer_config(args.bootstrap))


def passthrough(args: argparse.Namespace, stop: StopFlag) -> int:
    """Batch consume, produce every message unchanged: the least any Kafka pipeline can do."""
    consumer, producer = _clients(args)
    done, deadline = 0, time.monotonic() + args.seconds
    try:
        while time.monotonic() < deadline and not stop.set:
            for msg in consumer.consume(1000, 0.005):
                if msg.error():
                    continue
                produce(producer, args.output, msg.key(), msg.value())
                done += 1
            producer.poll(0)
    finally:
        producer.flush(10)
        consumer.close()
    return done


def sklearn_batch(args: argparse.Namespace, stop: StopFlag) -> int:
    """Consume a batch, parse it, one ``predict_proba`` for the whole batch, produce each result: the loop
    of ``passthrough`` with the least model work a user can write, one vectorised call per batch."""
    model = pickle.loads(Path(args.model).read_bytes())
    labels = list(model.classes_)
    consumer, producer = _clients(args)
    done, deadline = 0, time.monotonic() + args.seconds
    try:
        while time.monotonic() < deadline and not stop.set:
            messages = [msg for msg in consumer.consume(1000, 0.005) if not msg.error()]
            if not messages:
                continue
            posts = [json.loads(msg.value()) for msg in messages]
            proba = model.predict_proba([f"{post['title']} {post.get('description', '')}" for post in posts])
            best = proba.argmax(axis=1)
            for msg, post, row, i in zip(messages, posts, proba, best, strict=True):
                out = {"id": post["id"], "tag": labels[i], "confidence": float(row[i])}
                produce(producer, args.output, msg.key(), json.dumps(out).encode())
            producer.poll(0)
            done += len(messages)
    finally:
        producer.flush(10)
        consumer.close()
    return done


def faust_passthrough(args: argparse.Namespace, stop: StopFlag) -> int:
    """A Faust agent iterating its stream event by event; output through a plain confluent producer so
    that only Faust's consume side is measured (``await topic.send()`` per event is slower still)."""
    import faust  # Imported here: the other pipelines should not pay for importing it.

    app = faust.App(
        args.group,
        broker=f"kafka://{args.bootstrap}",
        value_serializer="raw",
        key_serializer="raw",
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT_MS / 1000,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_MS / 1000,
        topic_disable_leader=True,
    )
    source = app.topic(args.input, value_type=bytes, key_type=bytes)
    producer = Producer(producer_config(args.bootstrap))
    done = 0
    deadline = time.monotonic() + args.seconds

    @app.agent(source)
    async def forward(stream: faust.StreamT) -> None:
        nonlocal done
        async for event in stream.events():
            produce(producer, args.output, event.key, event.value)
            producer.poll(0)
            done += 1

    @app.timer(0.2)
    async def bounded() -> None:
        # The Faust worker owns SIGTERM; sending it to ourselves reuses its orderly shutdown.
        if time.monotonic() > deadline:
            os.kill(os.getpid(), signal.SIGTERM)

    try:
        faust.Worker(app, loglevel="WARNING").execute_from_commandline()
    except SystemExit:
        pass
    finally:
        producer.flush(10)
    return done


PIPELINES: dict[str, Callable[[argparse.Namespace, StopFlag], int]] = {
    "passthrough": passthrough,
    "sklearn": sklearn_batch,
    "faust": faust_passthrough,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pipeline", choices=sorted(PIPELINES))
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--model", help="pickled scikit-learn pipeline (sklearn only)")
    parser.add_argument("--seconds", type=float, default=300.0)
    args = parser.parse_args()
    if args.pipeline == "sklearn" and not args.model:
        parser.error("sklearn needs --model")
    done = PIPELINES[args.pipeline](args, StopFlag())
    print(json.dumps({"pipeline": args.pipeline, "processed": done}), flush=True)


if __name__ == "__main__":
    main()
