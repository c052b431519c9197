"""Apache Kafka on loopback: 1 or N KRaft nodes (each broker and controller at once), data on disk.

Tansu (``stream_tagger.kafka.embedded_broker``) is not Kafka: it keeps data only in memory, so a broker
restart cannot be tested on it, and its fetch path says nothing about Kafka's latency. The integration
tests therefore run on the real broker, started here from the jars that ``deploy/kafka/pom.xml`` copies
out of Maven Central (``scripts/bootstrap.sh`` runs it): no download outside the package registries, no
Docker.

``LocalKafka`` is a context manager that always stops what it started; the failure tests also kill -9,
stop and restart single nodes. Every node's data, configuration and log live under one directory.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import re
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from stream_tagger.kafka.embedded_broker import free_port, wait_for_port
from stream_tagger.processes import ChildProcess, Started, stop_process

KAFKA_PROJECT = Path(__file__).resolve().parents[2] / "deploy" / "kafka"
#: Where ``mvn -f deploy/kafka/pom.xml package`` puts the broker's jars.
LIBS = KAFKA_PROJECT / "target" / "libs"
#: Written by scripts/bootstrap.sh once Maven copied every jar: holds the version it installed.
INSTALLED_STAMP = KAFKA_PROJECT / "target" / "installed-version"

# librdkafka's lines while the broker is still starting ("Connection refused", every 50 ms) would
# flood the caller's stderr; they go to logging, where a test run keeps them only on failure.
_CLIENT_LOG = logging.getLogger(__name__)


class KafkaClusterError(RuntimeError):
    """A local Kafka node could not be formatted or started, or does not serve."""


class KafkaNotInstalled(KafkaClusterError):
    """The broker's jars (or java) are missing: ``./scripts/bootstrap.sh`` installs them."""


def kafka_version() -> str:
    """The pinned broker version: ``kafka.version`` in deploy/kafka/pom.xml, the one place it is written."""
    found = re.search(r"<kafka\.version>([^<]+)</kafka\.version>", (KAFKA_PROJECT / "pom.xml").read_text())
    if found is None:
        raise KafkaClusterError(f"no <kafka.version> in {KAFKA_PROJECT / 'pom.xml'}")
    return found.group(1).strip()


def installed_classpath(java: str = "java") -> tuple[str, str]:
    """(java executable, classpath) of the installed broker, or ``KafkaNotInstalled`` saying what to run."""
    version = kafka_version()
    installed = INSTALLED_STAMP.read_text().strip() if INSTALLED_STAMP.is_file() else None
    if installed != version:
        found = f"version {installed} is" if installed else "nothing is"
        raise KafkaNotInstalled(
            f"Apache Kafka {version} is not installed ({found} in {LIBS}): run ./scripts/bootstrap.sh"
        )
    executable = shutil.which(java)
    if executable is None:
        raise KafkaNotInstalled(f"{java!r} not found on PATH: Apache Kafka needs Java 17 or later")
    return executable, f"{LIBS}/*"


def random_cluster_id() -> str:
    """A cluster id as ``kafka-storage random-uuid`` makes them: 16 random bytes, base64url, unpadded.
    Kafka's own generator never returns one starting with '-' (it would read as a command-line flag)."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


def _properties(values: dict[str, object]) -> str:
    return "".join(f"{key}={value}\n" for key, value in values.items())


@dataclass
class KafkaNode(ChildProcess):
    """One JVM: broker and KRaft controller with a fixed address, so a restart comes back where
    clients last saw it, on the data it left on disk."""

    node_id: int
    port: int
    controller_port: int
    directory: Path
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "server.properties"

    @property
    def log_path(self) -> Path:
        return self.directory / "kafka.log"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def log_tail(self, lines: int = 15) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return "(no log)"


class LocalKafka(Started):
    """``brokers`` Apache Kafka nodes in KRaft combined mode on loopback, data under ``directory``.

    Defaults suit tests, not production: topics are created on first use with ``partitions``
    partitions (as the worker's own default), a new consumer group is balanced at once instead of
    after 3 s, and the internal topics' replication fits the node count, so that offsets and
    transactions work on a single node. The heap is bounded (``heap_mb`` each) so that the three-node
    cluster and the worker under test fit a 2-core CI machine next to each other. A broker's heap is
    fixed from the start (``-Xms`` = ``-Xmx``, as ``kafka-server-start.sh`` sets it); measured with jstat
    on the benchmark's broker (512 MB) at 1,000 events/s: without ``-Xms`` a young collection of ~6 ms
    every ~0.5 s, with it one of ~14 ms every ~4 s.

    ``quick_start`` runs the JVMs with the C1 compiler only: on 2 busy cores three nodes serve in
    about half the time (the optimising compiler competes with start-up for the CPU), at a cost in
    peak throughput that tests do not reach and benchmarks must not pay.
    """

    def __init__(
        self,
        directory: Path,
        brokers: int = 1,
        heap_mb: int | None = None,
        partitions: int = 4,
        host: str = "127.0.0.1",
        log_level: str = "INFO",
        java: str = "java",
        quick_start: bool = False,
    ) -> None:
        if brokers < 1:
            raise ValueError("at least one broker")
        self.directory = directory
        self.quick_start = quick_start
        self.heap_mb = heap_mb or (384 if brokers == 1 else 256)
        self.partitions = partitions
        self.log_level = log_level
        self.java = java
        self.cluster_id = random_cluster_id()
        self.nodes = [
            KafkaNode(node_id, free_port(host), free_port(host), directory / f"node-{node_id}", host)
            for node_id in range(1, brokers + 1)
        ]

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.address for node in self.nodes)

    def node(self, node_id: int) -> KafkaNode:
        return self.nodes[node_id - 1]

    def server_properties(self, node: KafkaNode) -> dict[str, object]:
        """The broker configuration of ``node`` (written to its ``server.properties``)."""
        count = len(self.nodes)
        voters = ",".join(f"{n.node_id}@{n.host}:{n.controller_port}" for n in self.nodes)
        return {
            "process.roles": "broker,controller",
            "node.id": node.node_id,
            "controller.quorum.voters": voters,
            "listeners": f"PLAINTEXT://{node.address},CONTROLLER://{node.host}:{node.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{node.address}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "log.dirs": node.data_dir,
            "auto.create.topics.enable": "true",
            "num.partitions": self.partitions,
            "default.replication.factor": min(count, 3),
            # A new group is balanced at once: the 3 s default would add to every consumer's start.
            "group.initial.rebalance.delay.ms": 0,
            # Internal topics replicated as far as the node count allows (their defaults need 3 nodes),
            # with fewer partitions than the defaults' 50: created faster, and enough for tests.
            "offsets.topic.replication.factor": min(count, 3),
            "offsets.topic.num.partitions": 10,
            "transaction.state.log.replication.factor": min(count, 3),
            "transaction.state.log.min.isr": min(count, 2),
            "transaction.state.log.num.partitions": 10,
            "share.coordinator.state.topic.replication.factor": min(count, 3),
            "share.coordinator.state.topic.min.isr": min(count, 2),
            # A killed node is fenced, and its partitions led elsewhere, after 3 s rather than 9 s.
            "broker.heartbeat.interval.ms": 500,
            "broker.session.timeout.ms": 3_000,
            # Thread pools and the compaction buffer (128 MB by default, on the heap) sized for a test
            # machine and the bounded heap.
            "num.network.threads": 2,
            "num.io.threads": 4,
            "background.threads": 4,
            "log.cleaner.dedupe.buffer.size": 16 * 1024 * 1024,
        }

    def _log4j_properties(self, node: KafkaNode) -> dict[str, object]:
        return {
            "status": "warn",
            "appender.file.type": "File",
            "appender.file.name": "file",
            "appender.file.fileName": node.log_path,
            "appender.file.layout.type": "PatternLayout",
            "appender.file.layout.pattern": "[%d] %p %m (%c)%n",
            "rootLogger.level": self.log_level,
            "rootLogger.appenderRef.file.ref": "file",
        }

    def _java_command(
        self, node: KafkaNode, main: str, *args: str, heap_mb: int, fixed_heap: bool = False
    ) -> list[str]:
        java, classpath = installed_classpath(self.java)
        jit = ["-XX:TieredStopAtLevel=1"] if self.quick_start else []
        command = [
            java,
            *([f"-Xms{heap_mb}m"] if fixed_heap else []),
            f"-Xmx{heap_mb}m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            *jit,
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={node.directory / 'log4j2.properties'}",
            "-cp",
            classpath,
            main,
            *args,
        ]
        # The JVM dies with the thread that started it, even when that process is killed -9 and
        # never gets to stop it: a test run never leaves a broker behind.
        setpriv = shutil.which("setpriv")
        return [setpriv, "--pdeathsig", "KILL", *command] if setpriv else command

    def _format(self) -> None:
        """``kafka-storage format`` of every node that has no data yet, all at once (one JVM each)."""
        pending: list[tuple[KafkaNode, subprocess.Popen[bytes]]] = []
        for node in self.nodes:
            if (node.data_dir / "meta.properties").exists():
                continue
            node.directory.mkdir(parents=True, exist_ok=True)
            node.config_path.write_text(_properties(self.server_properties(node)))
            (node.directory / "log4j2.properties").write_text(_properties(self._log4j_properties(node)))
            command = self._java_command(
                node,
                "kafka.tools.StorageTool",
                "format",
                "--ignore-formatted",
                "-t",
                self.cluster_id,
                "-c",
                str(node.config_path),
                heap_mb=128,
            )
            pending.append(
                (
                    node,
                    subprocess.Popen(
                        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                    ),
                )
            )
        for node, proc in pending:
            output, _ = proc.communicate(timeout=120)
            if proc.returncode != 0:
                raise KafkaClusterError(
                    f"kafka-storage format of node {node.node_id} failed "
                    f"(exit {proc.returncode}):\n{output.decode(errors='replace')}"
                )

    def _launch(self, node: KafkaNode) -> None:
        command = self._java_command(
            node, "kafka.Kafka", str(node.config_path), heap_mb=self.heap_mb, fixed_heap=True
        )
        with (node.directory / "stdout.log").open("ab") as out:
            node.proc = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )

    def wait_serving(self, timeout: float = 60.0) -> None:
        """Until every running node listens and the cluster's metadata lists each of them as a broker:
        only then can a topic with one replica per node be created."""
        deadline = time.monotonic() + timeout
        running = [node for node in self.nodes if node.proc is not None]
        for node in running:
            left = deadline - time.monotonic()
            if not wait_for_port(node.host, node.port, left, lambda n=node: n.alive):
                self._fail(node, f"node {node.node_id} not listening on {node.address} after {timeout:.0f}s")
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "logger": _CLIENT_LOG})
        wanted = {node.node_id for node in running}
        seen: set[int] = set()
        while time.monotonic() < deadline:
            for node in running:
                if not node.alive:
                    self._fail(node, f"node {node.node_id} exited during start-up")
            with contextlib.suppress(KafkaException):
                seen = set(admin.list_topics(timeout=2).brokers)
                if seen >= wanted:
                    return
            time.sleep(0.1)
        self._fail(
            running[0], f"brokers {sorted(wanted - seen)} not in the cluster's metadata within {timeout:.0f}s"
        )

    def _fail(self, node: KafkaNode, message: str) -> None:
        raise KafkaClusterError(f"{message}; its log ({node.log_path}):\n{node.log_tail()}")

    def start(self, timeout: float = 60.0) -> Self:
        """Format (first start only), start every node, and return once the whole cluster serves."""
        running = [node.node_id for node in self.nodes if node.alive]
        if running:  # a second JVM on the same data directory would corrupt it
            raise KafkaClusterError(f"nodes {running} are already running")
        try:
            self._format()
            for node in self.nodes:
                self._launch(node)
            self.wait_serving(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def kill(self, node_id: int) -> None:
        """kill -9 one node: the crash that flushes nothing and tells no controller."""
        node = self.node(node_id)
        if node.proc is not None:
            node.proc.kill()
            node.proc.wait(30)

    def stop_node(self, node_id: int, timeout: float = 30.0) -> int | None:
        """Stop one node gracefully (SIGTERM: it hands its partitions over), SIGKILL after ``timeout``."""
        node = self.node(node_id)
        proc, node.proc = node.proc, None
        return stop_process(proc, timeout)

    def start_node(self, node_id: int, timeout: float = 60.0) -> None:
        """Start a stopped or killed node again on its data and address; returns once it serves."""
        node = self.node(node_id)
        if node.alive:
            raise KafkaClusterError(f"node {node_id} is still running (pid {node.pid})")
        self._launch(node)
        self.wait_serving(timeout)

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM to every node at once (each would otherwise wait on the others' controlled
        shutdown in turn), then wait; SIGKILL whatever is still running after ``timeout``."""
        for node in self.nodes:
            if node.alive:
                assert node.proc is not None
                node.proc.terminate()
        for node in self.nodes:
            proc, node.proc = node.proc, None
            stop_process(proc, timeout)
