"""The broker alone: producer -> embedded Tansu -> consumer at a fixed rate, no pipeline in between.

What the latency targets are up against on this machine. Prints, per 2-second window, the broker's CPU
(cores) and the latency percentiles of the messages consumed in it; latency = consume wall time minus
the CreateTime the producer stamped. On Tansu the broker's CPU per second grows with what its in-memory
topics hold, and the tail grows with it; a real Kafka does not behave so.

    .venv/bin/python benchmarks/transport.py [--rate 1000] [--seconds 20] [--linger-ms 5]
        [--fetch-wait-ms 10] [--partitions 4]
"""

from __future__ import annotations

import argparse
import itertools
import threading
import time
import uuid

import numpy as np
from confluent_kafka import Consumer, Producer
from harness import _cpu_seconds, create_topics  # benchmarks/ is the script's folder

from stream_tagger.broker import EmbeddedBroker

WINDOW_S = 2.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=float, default=1_000.0, help="messages per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--linger-ms", type=int, default=5, help="the producer's linger.ms")
    parser.add_argument("--fetch-wait-ms", type=int, default=10, help="the consumer's fetch.wait.max.ms")
    parser.add_argument("--partitions", type=int, default=4)
    args = parser.parse_args()
    with EmbeddedBroker() as broker:
        bootstrap, topic = broker.bootstrap_servers, f"transport-{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, [topic], args.partitions)
        consumer = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": topic,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6_000,
            "heartbeat.interval.ms": 500,
            "fetch.wait.max.ms": args.fetch_wait_ms,
        })
        consumer.subscribe([topic])
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": args.linger_ms})
        producer.produce(topic, b"warm-up")
        producer.flush(10)
        while (msg := consumer.poll(0.5)) is None or msg.error():  # joined and reading
            pass
        done = threading.Event()

        def offer() -> None:
            start, total = time.perf_counter(), int(args.rate * args.seconds)
            for i in range(total):
                if (delay := start + i / args.rate - time.perf_counter()) > 0:
                    time.sleep(delay)
                producer.produce(topic, b"x" * 290, timestamp=int(time.time() * 1000))
                producer.poll(0)
            producer.flush(30)
            done.set()

        threading.Thread(target=offer, daemon=True).start()
        seen: list[tuple[float, float]] = []  # (wall time consumed, latency ms)
        cpu = [(time.time(), _cpu_seconds(broker.pid or 0))]
        quiet_since = None
        while quiet_since is None or time.time() - quiet_since < 1.0:
            for msg in consumer.consume(1000, 0.005):
                if msg.error() is None:
                    now = time.time()
                    seen.append((now, now * 1000 - msg.timestamp()[1]))
            if time.time() - cpu[-1][0] >= WINDOW_S:
                cpu.append((time.time(), _cpu_seconds(broker.pid or 0)))
            if done.is_set() and quiet_since is None:
                quiet_since = time.time()
        consumer.close()
    wall, lat = np.array([s[0] for s in seen]), np.array([s[1] for s in seen])
    print(f"rate {args.rate:,.0f}/s, linger {args.linger_ms} ms, fetch wait {args.fetch_wait_ms} ms, "
          f"{args.partitions} partitions: {len(lat):,} messages")
    for (t0, c0), (t1, c1) in itertools.pairwise(cpu):
        window = lat[(wall >= t0) & (wall < t1)]
        if len(window):
            print(f"  {t0 - cpu[0][0]:5.1f}s  broker {(c1 - c0) / (t1 - t0):.2f} cores  "
                  f"p50 {np.percentile(window, 50):6.1f}  p99 {np.percentile(window, 99):6.1f} ms")
    print(f"  all    p50 {np.percentile(lat, 50):.1f}  p99 {np.percentile(lat, 99):.1f}  "
          f"p99.9 {np.percentile(lat, 99.9):.1f} ms")


if __name__ == "__main__":
    main()
