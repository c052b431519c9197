"""/metrics, /healthz and /ready: the process's own HTTP server, answering from its first second.

The server (stdlib ``http.server``, in a thread of its own) starts before the model loads and before
the broker is reached, and serves these three paths and nothing else. Faust's web server is off: it
would come up only once Faust runs, so a liveness probe would restart a worker still waiting for its
broker, and it would add Faust's table and router views (table contents, the cluster's addresses).

/healthz answers "should this process be restarted?", with the phase the process is in (``loading
model``, ``waiting for broker``, ``joining``, ``running``, ``stopping``). Starting up and stopping are
no reason for a restart: 200. Once Faust runs, 503 when the hot path is dead or stalled (work waiting,
nothing acked for ``stall_seconds``) or Faust's event loop has not run a timer for that long. The
reason never carries an exception's text: that is in the log.
/ready answers "should it count as up?": partitions assigned (to the hot path on a worker, to Faust's
consumer on the feedback worker). The decisions are pure functions so they are unit tested.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Protocol, Self

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder

if TYPE_CHECKING:
    import faust

    from stream_tagger.worker.hot_path import HotPath, HotPathState

log = logging.getLogger(__name__)

LOADING_MODEL = "loading model"
WAITING_FOR_BROKER = "waiting for broker"
JOINING = "joining"
RUNNING = "running"
STOPPING = "stopping"

#: How often Faust's event loop reports in (``watch_faust``).
BEAT_SECONDS = 1.0


class Probe(Protocol):
    """What a process reports once Faust runs it."""

    def phase(self) -> str: ...

    def health(self) -> tuple[bool, str]: ...

    def readiness(self) -> tuple[bool, str]: ...


class Probes:
    """The answers of /healthz and /ready for every phase: set by the start-up code until Faust runs
    the process (``phase``), then asked of its ``probe``."""

    def __init__(self, phase: str = LOADING_MODEL) -> None:
        self.phase = phase
        self.probe: Probe | None = None

    def healthz(self) -> tuple[int, str]:
        if self.probe is None:
            return 200, f"{self.phase}: alive"
        ok, reason = self.probe.health()
        return (200 if ok else 503), f"{self.probe.phase()}: {reason}"

    def ready(self) -> tuple[int, str]:
        if self.probe is None:
            return 503, f"not ready: {self.phase}"
        ok, reason = self.probe.readiness()
        return (200 if ok else 503), reason


@dataclass
class FaustBeat:
    """Written by a timer in Faust's event loop (``watch_faust``) and read by the web server's thread,
    which must not touch Faust's objects: when the loop last ran it, and how many partitions Faust's
    consumer held then."""

    at: float | None = None
    assigned: int = 0


def watch_faust(app: faust.App) -> FaustBeat:
    """A ``FaustBeat`` kept up to date by a timer of ``app`` (timers start once its tables are
    recovered, so a beat also means the tables are ready)."""
    beat = FaustBeat()

    @app.timer(BEAT_SECONDS, name="stream_tagger.web.beat")
    async def _beat() -> None:
        beat.at = time.monotonic()
        beat.assigned = len(app.consumer.assignment())

    return beat


def loop_health(beat: FaustBeat, limit: float, now: float | None = None) -> tuple[bool, str]:
    if beat.at is None:  # its timers have not started: Faust is still starting
        return True, "ok"
    silent = (now if now is not None else time.monotonic()) - beat.at
    if silent > limit:
        return False, f"event loop blocked: no timer ran for {silent:.0f}s"
    return True, "ok"


def health(state: HotPathState, stall_seconds: float, now: float | None = None) -> tuple[bool, str]:
    if state.failure:
        return False, "hot path failed (the log says why)"
    if not state.running:
        # Starting (group join) or stopping: not a reason to restart the process; /ready says 503.
        return True, "hot path not running"
    idle = (now if now is not None else time.monotonic()) - state.last_progress
    lag = state.total_lag()
    if lag > 0 and idle > stall_seconds:
        return False, f"stalled: {lag} messages waiting, nothing processed for {idle:.0f}s"
    return True, "ok"


def readiness(state: HotPathState) -> tuple[bool, str]:
    if not state.running:
        return False, "hot path not running"
    if not state.assigned:
        return False, "no partitions assigned"
    return True, f"model loaded, {len(state.assigned)} partition(s) assigned"


class WorkerProbe:
    """A worker once Faust runs it: its hot path, and Faust's event loop."""

    def __init__(self, hot_path: HotPath, beat: FaustBeat, stall_seconds: float) -> None:
        self.hot_path = hot_path
        self.beat = beat
        self.stall_seconds = stall_seconds

    def phase(self) -> str:
        state = self.hot_path.state
        if self.hot_path.stopping:
            return STOPPING
        return RUNNING if state.running and state.assigned else JOINING

    def health(self) -> tuple[bool, str]:
        ok, reason = health(self.hot_path.state, self.stall_seconds)
        if ok and not self.hot_path.stopping:  # Faust stops its timers first when it stops
            return loop_health(self.beat, self.stall_seconds)
        return ok, reason

    def readiness(self) -> tuple[bool, str]:
        return readiness(self.hot_path.state)


class FeedbackProbe:
    """The feedback worker once Faust runs it: Faust's event loop and consumer."""

    def __init__(self, app: faust.App, beat: FaustBeat, stall_seconds: float) -> None:
        self.app = app
        self.beat = beat
        self.stall_seconds = stall_seconds

    def phase(self) -> str:
        if self.app.should_stop:
            return STOPPING
        return RUNNING if self.beat.assigned else JOINING

    def health(self) -> tuple[bool, str]:
        if self.app.should_stop:
            return True, "ok"
        return loop_health(self.beat, self.stall_seconds)

    def readiness(self) -> tuple[bool, str]:
        if self.app.should_stop:
            return False, "stopping"
        if not self.beat.assigned:
            return False, "no partitions assigned"
        return True, f"{self.beat.assigned} partition(s) assigned"


class WebServer:
    """The HTTP server of /metrics, /healthz and /ready, in a daemon thread; ``start`` binds the port
    (an ``OSError`` if it is taken)."""

    def __init__(self, host: str, port: int, registry: CollectorRegistry, probes: Probes) -> None:
        self.host = host
        self.registry = registry
        self.probes = probes
        self._requested_port = port
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port: the one asked for, or the one the system chose for port 0."""
        assert self._server is not None, "not started"
        return int(self._server.server_address[1])

    def start(self) -> Self:
        handler = type("Handler", (_Handler,), {"web": self})
        server_class = _V6Server if ":" in self.host else ThreadingHTTPServer
        server = server_class((self.host, self._requested_port), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="web", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    web: WebServer
    server_version = "stream-tagger"
    sys_version = ""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            self._answer(200, encoder(self.web.registry), content_type)
        elif path == "/healthz":
            status, text = self.web.probes.healthz()
            self._answer(status, text.encode())
        elif path == "/ready":
            status, text = self.web.probes.ready()
            self._answer(status, text.encode())
        else:
            self._answer(404, b"not found: this port serves /metrics, /healthz and /ready")

    def _answer(self, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Requests are not logged: probes and scrapes come every few seconds."""
