"""Measuring a pipeline from the outside: feed its input topic, watch its output topics, sample its process.

The harness never looks inside a pipeline. Every input event carries a timestamp set by the harness when
it produced it (Kafka CreateTime, ms). A reader of the output topics (``Sink``, ``assign()``ed, so no group
join delays it) notes when it receives each output: end-to-end latency is that wall time minus the input's
CreateTime, and throughput is counted on those receipts, first output to last (for several processes in a
group, from when ``GroupWatch`` saw the group settle). The output's own CreateTime
is kept too (latency inside the pipeline, without the output's trip to the broker and the reader), but it
times nothing for a pipeline that copies the input's timestamp onto its output, as Quix Streams does.
CPU and memory come from /proc of the pipeline's processes, so a Python loop and a JVM are measured alike;
the broker's, the harness's own and the machine's idle time are sampled beside them, since all of them
share the same cores.
"""

from __future__ import annotations

import ctypes
import gc
import itertools
import math
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    ConsumerGroupState,
    KafkaError,
    KafkaException,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent() -> None:
    """``preexec_fn`` of a pipeline's process: SIGTERM when the benchmark dies, even by kill -9, which
    runs no ``finally``. Set from the thread that starts the process (the main one), whose exit fires it."""
    _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def create_topics(bootstrap: str, names: Iterable[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(n, partitions, 1) for n in names]).values():
        future.result(30)


def delete_topics(bootstrap: str, names: Sequence[str]) -> None:
    """Frees the broker between runs (Tansu holds a run of 200k events in memory, a few hundred MB)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics(list(names)).values():
        future.result(30)


def _produce(producer: Producer, topic: str, key: bytes, value: bytes, partition: int | None) -> int:
    """Produce with an explicit CreateTime (ms) and return it; waits for room instead of dropping."""
    stamp = int(time.time() * 1000)
    extra = {} if partition is None else {"partition": partition}
    while True:
        try:
            producer.produce(topic, value=value, key=key, timestamp=stamp, **extra)
            return stamp
        except BufferError:
            producer.poll(0.05)


def new_producer(bootstrap: str) -> Producer:
    # librdkafka's default linger (5 ms), which a real upstream would use. Tansu's cost is per request: at
    # 5,000/s with linger 1 ms it needed a whole core and fell seconds behind; 5 ms: half a core, p50 35 ms.
    return Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "queue.buffering.max.messages": 500_000})


def produce_bulk(
    bootstrap: str,
    topic: str,
    pairs: Sequence[tuple[bytes, bytes]],
    partitions: int | None = None,
    producer: Producer | None = None,
) -> dict[bytes, int]:
    """Send everything as fast as possible (round robin over ``partitions`` when given); key -> CreateTime."""
    # Not `producer or ...`: a Producer's len() is its queue, so an idle one is falsy.
    producer = new_producer(bootstrap) if producer is None else producer
    sent: dict[bytes, int] = {}
    for i, (key, value) in enumerate(pairs):
        sent[key] = _produce(producer, topic, key, value, None if partitions is None else i % partitions)
        if i % 1000 == 0:
            producer.poll(0)
    if producer.flush(60):
        raise RuntimeError(f"input topic {topic}: broker did not acknowledge every event within 60 s")
    return sent


def produce_paced(
    bootstrap: str,
    topic: str,
    pairs: Sequence[tuple[bytes, bytes]],
    rate: float,
    producer: Producer | None = None,
) -> tuple[dict[bytes, int], float]:
    """Send at ``rate`` events/s (open loop: the schedule does not wait for the pipeline) and return
    key -> CreateTime and the rate actually achieved. Sends whatever is due every millisecond, so the
    loop ends after len(pairs) / rate seconds. Pass a ``producer`` that has sent before: a new one
    first fetches metadata and connects, and the events it holds meanwhile would count as latency."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    producer = new_producer(bootstrap) if producer is None else producer
    sent = presized(key for key, _ in pairs)  # no resize (tens of ms holding the GIL) while pacing
    start = time.monotonic()
    i, total = 0, len(pairs)
    while i < total:
        due = min(total, int((time.monotonic() - start) * rate) + 1)
        while i < due:
            key, value = pairs[i]
            sent[key] = _produce(producer, topic, key, value, None)
            i += 1
        producer.poll(0)
        time.sleep(0.001)
    elapsed = time.monotonic() - start
    producer.flush(60)
    return sent, total / elapsed if elapsed > 0 else math.inf


def presized(keys: Iterable[bytes]) -> dict[bytes, Any]:
    """A dict with room for ``keys`` (each mapped to None). A dict filled while a run is timed re-hashes
    every key at each doubling, holding the GIL for tens of milliseconds at a run's sizes: the load
    generator stalls, then sends what fell due in a burst, a latency no pipeline caused."""
    return dict.fromkeys(keys)


@contextmanager
def collector_paused() -> Iterator[None]:
    """No cyclic garbage collection in this process while a run is timed. The harness holds millions of
    objects (the events, the timestamps), and a full collection over them stops the load generator and the
    reader for tens of milliseconds; what a run allocates is freed by reference counting."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Sink(threading.Thread):
    """Reads the output topics from the beginning and keeps, per key, the first output's CreateTime (ms)
    and the wall time (s) the harness received it. Counts keys, not messages: one event may yield several.
    Partitions are assigned, not subscribed through a group: a group reader starts late (the join) and
    then receives a burst, which would read as latency."""

    def __init__(
        self,
        bootstrap: str,
        topics: Sequence[str],
        partitions: int,
        floor_topic: str | None = None,
        expect: Iterable[bytes] = (),
    ) -> None:
        """``floor_topic``: also read the pipeline's input topic, keeping when each key arrived in ``floor``
        (the harness's floor: upstream producer, broker and this reader, with no pipeline in between).
        ``expect``: the keys the run will send, so that ``seen`` and ``floor`` have room for them from the
        start (a key not yet received maps to None); a key not expected is kept all the same."""
        super().__init__(daemon=True, name="sink")
        self._consumer = Consumer(
            {
                "bootstrap.servers": bootstrap,
                "group.id": f"sink-{topics[0]}",
                "enable.auto.commit": False,
                "fetch.wait.max.ms": 10,
            }
        )
        read = [*topics, floor_topic] if floor_topic else list(topics)
        self._consumer.assign(
            [TopicPartition(t, p, OFFSET_BEGINNING) for t in read for p in range(partitions)]
        )
        self._floor_topic = floor_topic
        expected = list(expect)
        self.seen: dict[bytes, tuple[int, float] | None] = presized(expected)
        self.floor: dict[bytes, tuple[int, float] | None] = presized(expected if floor_topic else ())
        self.received = 0  # distinct keys in ``seen`` so far
        self._halt = threading.Event()

    def run(self) -> None:
        seen, floor, floor_topic = self.seen, self.floor, self._floor_topic
        try:
            while not self._halt.is_set():
                # poll() returns the moment a message is there; consume(n, timeout) would wait for n or
                # the timeout and add that wait to the latency. The rest is what had already arrived.
                first = self._consumer.poll(0.05)
                if first is None:
                    continue
                now = time.time()
                for msg in (first, *self._consumer.consume(1000, 0)):
                    if msg.error() is not None:
                        continue
                    key = msg.key()
                    if floor_topic is not None and msg.topic() == floor_topic:
                        if floor.get(key) is None:
                            floor[key] = (msg.timestamp()[1], now)
                    elif seen.get(key) is None:
                        seen[key] = (msg.timestamp()[1], now)
                        self.received += 1
        finally:
            self._consumer.close()

    def wait_for(self, count: int, timeout: float, alive: Processes | None = None) -> bool:
        """True once ``count`` distinct keys arrived; False at ``timeout`` or when the pipeline died."""
        deadline = time.monotonic() + timeout
        while self.received < count:
            if time.monotonic() > deadline or (alive is not None and not alive.running()):
                return self.received >= count
            time.sleep(0.05)
        return True

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


_UNSUPPORTED = (KafkaError._UNSUPPORTED_FEATURE, KafkaError.UNSUPPORTED_VERSION)


class GroupWatch(threading.Thread):
    """Notes when a consumer group of ``members`` processes first has every member holding partitions, the
    group stable (``settled_at``, wall time): a drain by several processes is timed from then. The first
    to join takes every partition and starts; each later join moves partitions in a rebalance during which
    the group's output pauses (docs/operations.md, Scaling), and in a drain of a few seconds that pause
    would weigh as much as the rate itself. A broker that cannot describe groups (``error`` says why) or
    describes them without their members (Tansu: stable, no members) leaves it None."""

    def __init__(self, bootstrap: str, group: str, members: int, interval: float = 0.05) -> None:
        super().__init__(daemon=True, name="group-watch")
        self._admin = AdminClient({"bootstrap.servers": bootstrap})
        self._group, self._members, self._interval = group, members, interval
        self.settled_at: float | None = None
        self.error: str | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        while self.settled_at is None and not self._halt.wait(self._interval):
            try:
                group = self._admin.describe_consumer_groups([self._group], request_timeout=2)[self._group]
                found = group.result(timeout=3)
            except KafkaException as exc:
                if exc.args[0].code() in _UNSUPPORTED:  # a broker without the API
                    self.error = exc.args[0].str()
                    return
                continue  # the group not formed yet: ask again
            except Exception as exc:  # the run is then timed from its first output, and says why
                self.error = repr(exc)
                return
            members = found.members or []
            if (
                found.state == ConsumerGroupState.STABLE
                and len(members) == self._members
                and all(m.assignment and m.assignment.topic_partitions for m in members)
            ):
                self.settled_at = time.time()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants (a pipeline may run helpers in child processes)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(children.get(pid, []))
    return tree


def _cpu_seconds(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime + stime


def machine_times() -> tuple[float, float, float]:
    """(busy, idle, stolen) seconds of all cores together since boot, from ``/proc/stat``: stolen is what
    the hypervisor gave other machines while this one wanted the core."""
    with open("/proc/stat") as f:
        fields = [int(v) / _CLOCK_TICKS for v in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields[:7]) - idle, idle, fields[7]


def _status_kb(pid: int, name: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(name + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class CpuSample(NamedTuple):
    """CPU seconds of the pipeline's processes, the broker and the harness's own process (load generator,
    reader, this sampler) since each started, and idle seconds of all cores together since boot, at
    ``wall`` (a time.time()); or, from ``Processes.cpu_between``, what each grew by over ``wall`` seconds."""

    wall: float
    pipeline: float
    broker: float
    harness: float
    idle: float


@dataclass
class Processes:
    """A pipeline's processes, sampled every ``interval`` s beside the broker and the harness."""

    procs: list[subprocess.Popen[bytes]]
    logs: list[Path]
    broker_pid: int | None = None  # sampled too: the broker shares the machine's cores with the pipeline
    web_ports: list[int] = field(default_factory=list)  # where the processes serve /metrics, if they do
    interval: float = 0.1
    samples: list[CpuSample] = field(default_factory=list)
    peak_rss_kb: dict[int, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="sampler")
        self._thread.start()

    def running(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def _sample(self) -> None:
        pids: list[int] = []
        for tick in itertools.count():
            if self._halt.is_set():
                return
            if tick % 10 == 0:  # walking /proc is the costly part; a pipeline rarely forks
                pids = [pid for proc in self.procs for pid in process_tree(proc.pid)]
            cpu = 0.0
            for pid in pids:
                cpu += _cpu_seconds(pid)
                self.peak_rss_kb[pid] = max(self.peak_rss_kb.get(pid, 0), _status_kb(pid, "VmHWM"))
            broker = _cpu_seconds(self.broker_pid) if self.broker_pid else 0.0
            harness = _cpu_seconds(os.getpid())
            self.samples.append(CpuSample(time.time(), cpu, broker, harness, machine_times()[1]))
            self._halt.wait(self.interval)

    def cpu_between(self, start: float, end: float) -> CpuSample:
        """What each CPU figure grew by from the last sample at or before ``start`` to the first at or after
        ``end`` (``wall``: the seconds between those two samples)."""
        before = [s for s in self.samples if s.wall <= start] or self.samples[:1]
        after = [s for s in self.samples if s.wall >= end] or self.samples[-1:]
        return CpuSample(*(a - b for a, b in zip(after[0], before[-1], strict=True)))

    def stop(self, timeout: float = 20.0) -> list[str]:
        """SIGTERM every process, wait, kill what is left; returns the end of each one's log."""
        time.sleep(self.interval * 2)  # one more sample after the last output
        self._halt.set()
        self._thread.join(5)
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        return [log.read_text(errors="replace")[-2000:] for log in self.logs]

    @property
    def peak_rss_mb(self) -> float:
        """The largest peak resident set of any one process (targets are per worker process)."""
        return max(self.peak_rss_kb.values(), default=0) / 1024


def percentiles(values: Sequence[float], points: Sequence[float] = (50, 99, 99.9)) -> dict[str, float]:
    """Nearest-rank percentiles, keyed ``p50``, ``p99``, ``p99.9``."""
    if not values:
        return {f"p{p:g}": math.nan for p in points}
    ordered = sorted(values)
    return {
        f"p{p:g}": ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))]
        for p in points
    }
