"""The broker alone: producer -> embedded Tansu -> consumer at a fixed rate, no pipeline in between.

What the latency targets are up against on this machine. Prints, per 2-second window, the broker's CPU
(cores), the record batches its topics hold at the window's end, the fetch requests per second of every
consumer and the latency percentiles of the messages consumed in it; latency = consume wall time minus the
CreateTime the first producer stamped. ``--hops 2`` puts a relay in between (consume, produce unchanged with
the original CreateTime: the least a pipeline does), so the last consumer sees the two-hop floor;
``--readers N`` adds N more consumer groups on the last topic, as the benchmark's sink and the feedback
worker are.

Why Tansu behaves as it does (tansu-storage 0.6.0, memory:// = DynoStore over object_store's InMemory):
every produced record batch becomes one object and none is ever deleted; every fetch of a partition that
has new data lists all of that partition's objects (DynoStore::fetch), so the broker's CPU per fetch grows
with the batches the topic holds; that listing is cut short when the fetch's wait runs out, keeping only
the oldest batches, so a consumer whose fetch.wait.max.ms is shorter than the listing gets nothing at all;
and a fetch that finds nothing new sleeps half the remaining fetch.wait.max.ms before looking again
(FetchService::fetch), so a message waits up to that half at the broker. --prefill-batches fills the first
topic first, one message per batch, to show the first two effects.

    .venv/bin/python benchmarks/transport.py [--rate 1000] [--seconds 20] [--linger-ms 5]
        [--fetch-wait-ms 10] [--fetch-min-bytes 1] [--partitions 4] [--keyed] [--nagle-off]
        [--batch-messages 10000] [--hops 1] [--relay-linger-ms 5] [--readers 0] [--reader-wait-ms 10]
        [--reader-min-bytes 1] [--prefill-batches 0] [--storage-engine memory://tansu/]
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
import uuid
from collections.abc import Callable

import numpy as np
from confluent_kafka import Consumer, Message, Producer
from harness import _cpu_seconds, create_topics  # benchmarks/ is the script's folder

from stream_tagger.kafka.embedded_broker import MEMORY, EmbeddedBroker

WINDOW_S = 2.0
STATS_MS = 500
WARM_UP = b"warm-up"
JOIN_TIMEOUT_S = 45.0


class Counters:
    """Record batches the producers sent (librdkafka's per-interval batchcnt histogram), i.e. the objects
    Tansu's in-memory topics hold, and the fetch requests of every consumer so far (their broker stats)."""

    def __init__(self, topics: list[str], prefilled: int) -> None:
        self.topics, self.batches, self._fetches = set(topics), prefilled, {}

    def on_producer_stats(self, raw: str) -> None:
        topics = json.loads(raw).get("topics", {})
        self.batches += sum(t["batchcnt"]["cnt"] for name, t in topics.items() if name in self.topics)

    def on_consumer_stats(self, raw: str) -> None:
        stats = json.loads(raw)
        brokers = [b for b in stats.get("brokers", {}).values() if b.get("nodeid", -1) >= 0]
        self._fetches[stats["name"]] = sum(b.get("req", {}).get("Fetch", 0) for b in brokers)

    @property
    def fetches(self) -> int:
        return sum(self._fetches.values())


def take(consumer: Consumer, wait_s: float) -> list[Message]:
    """What is there, without waiting once one message is: poll() returns the moment one arrives, where
    consume(n, timeout) would wait for n or the timeout and add that wait to every latency measured."""
    first = consumer.poll(wait_s)
    return [first, *consumer.consume(1000, 0)] if first is not None else []


def prefill(bootstrap: str, topic: str, batches: int) -> None:
    """``batches`` one-message record batches, which is what the topic's size costs Tansu per fetch."""
    producer = Producer({"bootstrap.servers": bootstrap, "batch.num.messages": 1, "linger.ms": 0})
    for i in range(batches):
        while True:
            try:
                producer.produce(topic, b"p" * 290, key=str(i).encode())
                break
            except BufferError:
                producer.poll(0.01)
        producer.poll(0)
    producer.flush(120)


def run_until(stop: threading.Event, consumer: Consumer, handle: Callable[[Message], None]) -> None:
    try:
        while not stop.is_set():
            for msg in take(consumer, 0.05):
                if msg.error() is None:
                    handle(msg)
    finally:
        consumer.close()


class Clients:
    """Every client of a run, configured alike and counted by one ``Counters``."""

    def __init__(self, args: argparse.Namespace, bootstrap: str, counters: Counters) -> None:
        self.args, self.counters = args, counters
        self.common = {
            "bootstrap.servers": bootstrap,
            "socket.nagle.disable": args.nagle_off,
            "statistics.interval.ms": STATS_MS,
        }

    def consumer(self, topic: str, group: str, wait_ms: int, min_bytes: int) -> Consumer:
        consumer = Consumer(
            {
                **self.common,
                "group.id": group,
                "auto.offset.reset": "latest",
                "session.timeout.ms": 6_000,
                "heartbeat.interval.ms": 500,
                "fetch.wait.max.ms": wait_ms,
                "fetch.min.bytes": min_bytes,
                "stats_cb": self.counters.on_consumer_stats,
            }
        )
        consumer.subscribe([topic])
        return consumer

    def producer(self, linger_ms: float) -> Producer:
        return Producer(
            {
                **self.common,
                "linger.ms": linger_ms,
                "batch.num.messages": self.args.batch_messages,
                "stats_cb": self.counters.on_producer_stats,
            }
        )


def start_helpers(clients: Clients, topics: list[str], stop: threading.Event) -> list[threading.Thread]:
    """The relays between hops and the extra readers of the last topic, each in its own thread."""
    args, helpers = clients.args, []
    for source, target in itertools.pairwise(topics):
        out = clients.producer(args.relay_linger_ms)

        def relay(msg: Message, out: Producer = out, target: str = target) -> None:
            out.produce(target, msg.value(), key=msg.key(), timestamp=msg.timestamp()[1])  # CreateTime kept
            out.poll(0)

        relay_in = clients.consumer(source, f"relay-{source}", args.fetch_wait_ms, args.fetch_min_bytes)
        helpers.append(threading.Thread(target=run_until, args=(stop, relay_in, relay), daemon=True))
    for i in range(args.readers):
        reader = clients.consumer(
            topics[-1], f"reader{i}-{topics[-1]}", args.reader_wait_ms, args.reader_min_bytes
        )
        helpers.append(threading.Thread(target=run_until, args=(stop, reader, lambda _: None), daemon=True))
    for helper in helpers:
        helper.start()
    return helpers


def offer(args: argparse.Namespace, producer: Producer, topic: str, done: threading.Event) -> None:
    start, total = time.perf_counter(), int(args.rate * args.seconds)
    for i in range(total):
        if (delay := start + i / args.rate - time.perf_counter()) > 0:
            time.sleep(delay)
        producer.produce(
            topic, b"x" * 290, key=str(i).encode() if args.keyed else None, timestamp=int(time.time() * 1000)
        )
        producer.poll(0)
    producer.flush(30)
    done.set()


Window = tuple[float, float, int, int]  # wall time, broker CPU seconds, batches stored, fetches so far


def measure(args: argparse.Namespace) -> tuple[list[Window], list[tuple[float, float]]]:
    """Per-window samples, and (wall time consumed, latency ms) of every message the last consumer read."""
    with EmbeddedBroker(storage_engine=args.storage_engine) as broker:
        run = uuid.uuid4().hex[:6]
        topics = [f"transport-{run}-{hop}" for hop in range(args.hops)]
        create_topics(broker.bootstrap_servers, topics, args.partitions)
        prefill(broker.bootstrap_servers, topics[0], args.prefill_batches)
        counters = Counters(topics, args.prefill_batches)
        clients = Clients(args, broker.bootstrap_servers, counters)
        stop, done = threading.Event(), threading.Event()
        helpers = start_helpers(clients, topics, stop)
        last = clients.consumer(topics[-1], f"last-{run}", args.fetch_wait_ms, args.fetch_min_bytes)
        producer = clients.producer(args.linger_ms)
        deadline = time.monotonic() + JOIN_TIMEOUT_S
        while not any(m.error() is None for m in take(last, 0.2)):  # every hop joined and reading
            if time.monotonic() > deadline:
                raise SystemExit(
                    f"nothing came through in {JOIN_TIMEOUT_S:.0f} s: Tansu cuts a partition's "
                    "listing short at fetch.wait.max.ms: a topic this big starves the consumer"
                )
            producer.produce(topics[0], WARM_UP)
            producer.flush(10)
        threading.Thread(target=offer, args=(args, producer, topics[0], done), daemon=True).start()

        def sample() -> Window:
            return time.time(), _cpu_seconds(broker.pid or 0), counters.batches, counters.fetches

        seen: list[tuple[float, float]] = []
        windows, quiet_since = [sample()], None
        while quiet_since is None or time.time() - quiet_since < 1.0:
            for msg in take(last, 0.005):
                if msg.error() is None and msg.value() != WARM_UP:
                    now = time.time()
                    seen.append((now, now * 1000 - msg.timestamp()[1]))
            if time.time() - windows[-1][0] >= WINDOW_S:
                windows.append(sample())
            if done.is_set() and quiet_since is None:
                quiet_since = time.time()
        last.close()
        stop.set()
        for helper in helpers:
            helper.join(10)
    return windows, seen


def report(args: argparse.Namespace, windows: list[Window], seen: list[tuple[float, float]]) -> None:
    wall, lat = np.array([s[0] for s in seen]), np.array([s[1] for s in seen])
    relay = f" (relay {args.relay_linger_ms:g})" if args.hops > 1 else ""
    readers = (
        f", {args.readers} readers (wait {args.reader_wait_ms} ms, min bytes {args.reader_min_bytes})"
        if args.readers
        else ""
    )
    print(
        f"rate {args.rate:,.0f}/s, {args.hops} hop(s), linger {args.linger_ms:g} ms{relay}, "
        f"fetch wait {args.fetch_wait_ms} ms, min bytes {args.fetch_min_bytes}, "
        f"{args.partitions} partitions"
        f"{', keyed' if args.keyed else ''}{', nagle off' if args.nagle_off else ''}{readers}, "
        f"{args.storage_engine}: {len(lat):,} messages"
    )
    for (t0, c0, _, f0), (t1, c1, b1, f1) in itertools.pairwise(windows):
        window = lat[(wall >= t0) & (wall < t1)]
        if len(window):
            print(
                f"  {t0 - windows[0][0]:5.1f}s  broker {(c1 - c0) / (t1 - t0):.2f} cores  "
                f"{b1:7,} batches  {(f1 - f0) / (t1 - t0):5.0f} fetches/s  "
                f"p50 {np.percentile(window, 50):6.1f}  p99 {np.percentile(window, 99):6.1f} ms"
            )
    print(
        f"  all    p50 {np.percentile(lat, 50):.1f}  p99 {np.percentile(lat, 99):.1f}  "
        f"p99.9 {np.percentile(lat, 99.9):.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1_000.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--linger-ms", type=float, default=5, help="the first producer's linger.ms")
    parser.add_argument(
        "--batch-messages", type=int, default=10_000, help="the producers' batch.num.messages"
    )
    parser.add_argument("--fetch-wait-ms", type=int, default=10, help="the consumers' fetch.wait.max.ms")
    parser.add_argument("--fetch-min-bytes", type=int, default=1, help="the consumers' fetch.min.bytes")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument(
        "--keyed",
        action="store_true",
        help="a distinct key per message, spread over the partitions like the pipeline's "
        "input (default: no key, librdkafka's sticky partitioner, one batch a request)",
    )
    parser.add_argument("--nagle-off", action="store_true", help="socket.nagle.disable on every client")
    parser.add_argument("--hops", type=int, default=1, choices=(1, 2), help="2: a relay in between")
    parser.add_argument("--relay-linger-ms", type=float, default=5, help="the relay producer's linger.ms")
    parser.add_argument("--readers", type=int, default=0, help="more consumer groups on the last topic")
    parser.add_argument("--reader-wait-ms", type=int, default=10, help="their fetch.wait.max.ms")
    parser.add_argument("--reader-min-bytes", type=int, default=1, help="their fetch.min.bytes")
    parser.add_argument("--prefill-batches", type=int, default=0, help="one-message batches stored first")
    parser.add_argument("--storage-engine", default=MEMORY, help="Tansu's --storage-engine")
    args = parser.parse_args()
    report(args, *measure(args))


if __name__ == "__main__":
    main()
