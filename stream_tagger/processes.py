"""Child processes the package starts (the embedded broker, ``stream-tagger worker``, ``feedback-worker``).

One place knows how to stop one: SIGTERM first, so a worker finishes its batch and commits, then
SIGKILL if it ignores that, so a demo or a test never hangs on a stuck child nor leaves one behind.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self


class ProcessError(RuntimeError):
    """A child process exited during start-up or never became ready."""


def stop_process(proc: subprocess.Popen[bytes] | None, timeout: float) -> int | None:
    """SIGTERM, wait up to ``timeout`` s, then SIGKILL; the exit code (None if nothing was running)."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait(timeout)


def cli_command(*args: str) -> list[str]:
    """``stream-tagger <args>`` run by this interpreter: works without the script on PATH."""
    return [sys.executable, "-c", "from stream_tagger.cli import main; main()", *args]


class Started(ABC):
    """A ``with`` block starts it and stops it, however the block ends."""

    @abstractmethod
    def start(self) -> Self: ...

    @abstractmethod
    def stop(self) -> object: ...

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


class ChildProcess:
    """What every process the package starts tells about itself; ``proc`` is None until it starts."""

    proc: subprocess.Popen[bytes] | None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ServiceProcess(ChildProcess, Started):
    """A long-running command with a web port (/ready), its output in a log file; stopped on exit."""

    def __init__(self, command: Sequence[str], env: Mapping[str, str], log_path: Path, web_port: int) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.log_path = log_path
        self.web_port = web_port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def name(self) -> str:
        return self.command[-1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> Self:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                self.command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=self.env
            )
        return self

    def output(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        return ""

    def log_tail(self, lines: int = 8) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def get(self, path: str) -> tuple[int, str]:
        """(HTTP status, body) of a GET on the process's web server; (0, reason) if nothing answers."""
        try:
            with urllib.request.urlopen(self.url + path, timeout=2) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()
        except OSError as exc:
            return 0, str(exc)

    def wait_ready(self, timeout: float = 90.0) -> Self:
        """Until /ready answers 200; fails early, with the log's tail, if the process exits."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive:
                raise ProcessError(
                    f"{self.name} exited during start-up; its log: {self.log_path}\n{self.log_tail()}"
                )
            if self.get("/ready")[0] == 200:
                return self
            time.sleep(0.2)
        raise ProcessError(
            f"{self.name} was not ready within {timeout:.0f}s; its log: {self.log_path}\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 20.0) -> int | None:
        """The graceful stop that cannot hang (see ``stop_process``); the exit code."""
        return stop_process(self.proc, timeout)
