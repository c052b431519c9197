"""The broker alone: producer -> embedded Tansu -> consumer at a fixed rate, no pipeline in between.

What the latency targets are up against on this machine. Prints, per 2-second window, the broker's CPU
(cores), the record batches its topic holds at the window's end, the consumer's fetch requests per second
and the latency percentiles of the messages consumed in it; latency = consume wall time minus the
CreateTime the producer stamped.

Why Tansu behaves as it does (tansu-storage 0.6.0, memory:// = DynoStore over object_store's InMemory):
every produced record batch becomes one object; every fetch of a partition that has new data lists all
of that partition's objects (DynoStore::fetch), so the broker's CPU per fetch grows with the batches the
topic holds; and a fetch that finds nothing new sleeps half the remaining fetch.wait.max.ms before looking
again (FetchService::fetch), so under steady load a message waits ~fetch.wait.max.ms / 2 at the broker.
--prefill-batches fills the topic first, one message per batch, to show the first effect on its own.

    .venv/bin/python benchmarks/transport.py [--rate 1000] [--seconds 20] [--linger-ms 5]
        [--fetch-wait-ms 10] [--fetch-min-bytes 1] [--partitions 4] [--keyed] [--nagle-off]
        [--batch-messages 10000] [--prefill-batches 0] [--storage-engine memory://tansu/]
"""

from __future__ import annotations

import argparse
import itertools
import json
import threading
import time
import uuid

import numpy as np
from confluent_kafka import Consumer, Producer
from harness import _cpu_seconds, create_topics  # benchmarks/ is the script's folder

from stream_tagger.broker import MEMORY, EmbeddedBroker

WINDOW_S = 2.0
STATS_MS = 500


class BatchCounter:
    """Record batches the producer sent (librdkafka's per-interval batchcnt histogram), i.e. the objects
    Tansu's in-memory topic holds, and the consumer's fetch requests so far (from its broker stats)."""

    def __init__(self, topic: str) -> None:
        self.topic, self.batches, self.fetches = topic, 0, 0

    def on_producer_stats(self, raw: str) -> None:
        topic = json.loads(raw).get("topics", {}).get(self.topic)
        if topic:
            self.batches += topic["batchcnt"]["cnt"]

    def on_consumer_stats(self, raw: str) -> None:
        brokers = json.loads(raw).get("brokers", {}).values()
        self.fetches = sum(b.get("req", {}).get("Fetch", 0) for b in brokers if b.get("nodeid", -1) >= 0)


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1_000.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--linger-ms", type=float, default=5, help="the producer's linger.ms")
    parser.add_argument("--batch-messages", type=int, default=10_000,
                        help="the producer's batch.num.messages")
    parser.add_argument("--fetch-wait-ms", type=int, default=10, help="the consumer's fetch.wait.max.ms")
    parser.add_argument("--fetch-min-bytes", type=int, default=1, help="the consumer's fetch.min.bytes")
    parser.add_argument("--partitions", type=int, default=4)
    parser.add_argument("--keyed", action="store_true",
                        help="a distinct key per message, spread over the partitions like the pipeline's "
                             "input (default: no key, librdkafka's sticky partitioner, one batch a request)")
    parser.add_argument("--nagle-off", action="store_true", help="socket.nagle.disable on both clients")
    parser.add_argument("--prefill-batches", type=int, default=0, help="one-message batches stored first")
    parser.add_argument("--storage-engine", default=MEMORY, help="Tansu's --storage-engine")
    args = parser.parse_args()
    with EmbeddedBroker(storage_engine=args.storage_engine) as broker:
        bootstrap, topic = broker.bootstrap_servers, f"transport-{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, [topic], args.partitions)
        prefill(bootstrap, topic, args.prefill_batches)
        counter = BatchCounter(topic)
        counter.batches = args.prefill_batches
        common = {"bootstrap.servers": bootstrap, "socket.nagle.disable": args.nagle_off,
                  "statistics.interval.ms": STATS_MS}
        consumer = Consumer({
            **common,
            "group.id": topic,
            "auto.offset.reset": "latest",
            "session.timeout.ms": 6_000,
            "heartbeat.interval.ms": 500,
            "fetch.wait.max.ms": args.fetch_wait_ms,
            "fetch.min.bytes": args.fetch_min_bytes,
            "stats_cb": counter.on_consumer_stats,
        })
        consumer.subscribe([topic])
        producer = Producer({**common, "linger.ms": args.linger_ms, "batch.num.messages": args.batch_messages,
                             "stats_cb": counter.on_producer_stats})
        while (msg := consumer.poll(0.2)) is None or msg.error():  # joined and reading
            producer.produce(topic, b"warm-up")
            producer.flush(10)
        done = threading.Event()

        def offer() -> None:
            start, total = time.perf_counter(), int(args.rate * args.seconds)
            for i in range(total):
                if (delay := start + i / args.rate - time.perf_counter()) > 0:
                    time.sleep(delay)
                producer.produce(topic, b"x" * 290, key=str(i).encode() if args.keyed else None,
                                 timestamp=int(time.time() * 1000))
                producer.poll(0)
            producer.flush(30)
            done.set()

        threading.Thread(target=offer, daemon=True).start()
        seen: list[tuple[float, float]] = []  # (wall time consumed, latency ms)
        windows = [(time.time(), _cpu_seconds(broker.pid or 0), counter.batches, counter.fetches)]
        quiet_since = None
        while quiet_since is None or time.time() - quiet_since < 1.0:
            # poll() returns the moment a message is there; consume(n, timeout) would wait for n or the
            # timeout and add up to that timeout to every latency measured here.
            first = consumer.poll(0.005)
            for msg in ([first, *consumer.consume(1000, 0)] if first is not None else []):
                if msg.error() is None and msg.value() != b"warm-up":
                    now = time.time()
                    seen.append((now, now * 1000 - msg.timestamp()[1]))
            if time.time() - windows[-1][0] >= WINDOW_S:
                windows.append((time.time(), _cpu_seconds(broker.pid or 0), counter.batches, counter.fetches))
            if done.is_set() and quiet_since is None:
                quiet_since = time.time()
        consumer.close()
    wall, lat = np.array([s[0] for s in seen]), np.array([s[1] for s in seen])
    print(f"rate {args.rate:,.0f}/s, linger {args.linger_ms:g} ms, fetch wait {args.fetch_wait_ms} ms, "
          f"min bytes {args.fetch_min_bytes}, {args.partitions} partitions{', keyed' if args.keyed else ''}"
          f"{', nagle off' if args.nagle_off else ''}, {args.storage_engine}: {len(lat):,} messages")
    for (t0, c0, _, f0), (t1, c1, b1, f1) in itertools.pairwise(windows):
        window = lat[(wall >= t0) & (wall < t1)]
        if len(window):
            print(f"  {t0 - windows[0][0]:5.1f}s  broker {(c1 - c0) / (t1 - t0):.2f} cores  "
                  f"{b1:7,} batches  {(f1 - f0) / (t1 - t0):5.0f} fetches/s  "
                  f"p50 {np.percentile(window, 50):6.1f}  p99 {np.percentile(window, 99):6.1f} ms")
    print(f"  all    p50 {np.percentile(lat, 50):.1f}  p99 {np.percentile(lat, 99):.1f}  "
          f"p99.9 {np.percentile(lat, 99.9):.1f} ms")


if __name__ == "__main__":
    main()
