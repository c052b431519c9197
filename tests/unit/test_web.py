"""/healthz and /ready decisions, and the server that answers them in every phase."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry, Counter

from stream_tagger.web import (
    JOINING,
    LOADING_MODEL,
    RUNNING,
    STOPPING,
    WAITING_FOR_BROKER,
    FaustBeat,
    Probes,
    WebServer,
    WorkerProbe,
    health,
    loop_health,
    readiness,
)
from stream_tagger.worker.hot_path import HotPathState


def running(**kwargs: object) -> HotPathState:
    state = HotPathState(running=True, last_progress=100.0)
    for name, value in kwargs.items():
        setattr(state, name, value)
    return state


def test_healthy_when_running_and_not_stalled() -> None:
    assert health(running(), stall_seconds=60, now=130.0) == (True, "ok")


def test_idle_without_lag_is_healthy() -> None:
    assert health(running(assigned=frozenset({("raw", 0)})), stall_seconds=60, now=1_000.0)[0]


def test_lag_with_no_progress_for_stall_seconds_is_unhealthy() -> None:
    state = running(assigned=frozenset({("raw", 0)}), lag={("raw", 0): 500})
    assert health(state, stall_seconds=60, now=150.0)[0]
    ok, reason = health(state, stall_seconds=60, now=170.0)
    assert not ok
    assert "500 messages waiting" in reason


def test_lag_of_partitions_no_longer_assigned_is_ignored() -> None:
    state = running(assigned=frozenset({("raw", 1)}), lag={("raw", 0): 500})
    assert health(state, stall_seconds=60, now=1_000.0)[0]


def test_failed_hot_path_is_unhealthy_without_saying_the_exception() -> None:
    failed = running(failure="DeliveryFailed('secret broker detail')")
    ok, reason = health(failed, stall_seconds=60, now=100.0)
    assert not ok
    assert "secret" not in reason and "DeliveryFailed" not in reason


def test_starting_hot_path_is_alive_but_not_ready() -> None:
    assert health(HotPathState(), stall_seconds=60, now=100.0)[0]
    assert not readiness(HotPathState())[0]


def test_ready_only_with_partitions_assigned() -> None:
    assert readiness(running()) == (False, "no partitions assigned")
    assert readiness(running(assigned=frozenset({("raw", 0), ("raw", 1)})))[0]
    assert not readiness(HotPathState())[0]


def test_an_event_loop_that_stopped_running_timers_is_unhealthy() -> None:
    assert loop_health(FaustBeat(), limit=60, now=1_000.0) == (True, "ok")  # timers not started yet
    assert loop_health(FaustBeat(at=950.0), limit=60, now=1_000.0)[0]
    ok, reason = loop_health(FaustBeat(at=900.0), limit=60, now=1_000.0)
    assert not ok and "100s" in reason


class FakeHotPath:
    def __init__(self, state: HotPathState, stopping: bool = False) -> None:
        self.state = state
        self.stopping = stopping


def worker_probe(state: HotPathState, stopping: bool = False, beat: FaustBeat | None = None) -> WorkerProbe:
    return WorkerProbe(FakeHotPath(state, stopping), beat or FaustBeat(), stall_seconds=60)  # type: ignore[arg-type]


def test_start_up_phases_are_alive_and_not_ready() -> None:
    probes = Probes()
    for phase in (LOADING_MODEL, WAITING_FOR_BROKER, JOINING):
        probes.phase = phase
        assert probes.healthz() == (200, f"{phase}: alive")
        assert probes.ready() == (503, f"not ready: {phase}")


def test_a_running_worker_reports_its_phase_from_the_hot_path() -> None:
    probes = Probes(JOINING)
    probes.probe = worker_probe(running())
    assert probes.healthz() == (200, f"{JOINING}: ok")
    assert probes.ready() == (503, "no partitions assigned")
    probes.probe = worker_probe(running(assigned=frozenset({("raw", 0)})))
    assert probes.healthz() == (200, f"{RUNNING}: ok")
    assert probes.ready() == (200, "model loaded, 1 partition(s) assigned")


def test_a_stopping_worker_is_alive_and_not_ready_even_with_its_timers_stopped() -> None:
    probes = Probes()
    probes.probe = worker_probe(HotPathState(), stopping=True, beat=FaustBeat(at=0.0))
    assert probes.healthz() == (200, f"{STOPPING}: hot path not running")
    assert probes.ready()[0] == 503


def test_a_worker_whose_event_loop_is_blocked_is_unhealthy() -> None:
    probes = Probes()
    probes.probe = worker_probe(running(assigned=frozenset({("raw", 0)})), beat=FaustBeat(at=0.0))
    status, text = probes.healthz()
    assert status == 503 and "event loop blocked" in text


@pytest.fixture
def server() -> Iterator[WebServer]:
    registry = CollectorRegistry()
    Counter("demo_things", "Things.", registry=registry).inc()
    web = WebServer("127.0.0.1", 0, registry, Probes(WAITING_FOR_BROKER)).start()
    yield web
    web.stop()


def get(web: WebServer, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{web.port}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read().decode()


def test_the_server_answers_the_probes_and_metrics(server: WebServer) -> None:
    assert get(server, "/healthz") == (200, "text/plain; charset=utf-8", "waiting for broker: alive")
    assert get(server, "/ready")[::2] == (503, "not ready: waiting for broker")
    status, content_type, body = get(server, "/metrics")
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    assert "demo_things_total 1.0" in body
    server.probes.phase = JOINING  # read at each request
    assert get(server, "/healthz?verbose=1")[2] == "joining: alive"


@pytest.mark.parametrize("path", ["/", "/table", "/router", "/graph", "/metrics/x"])
def test_the_server_serves_nothing_else(server: WebServer, path: str) -> None:
    assert get(server, path)[0] == 404


def test_a_busy_port_fails_at_start(server: WebServer) -> None:
    with pytest.raises(OSError):
        WebServer("127.0.0.1", server.port, CollectorRegistry(), Probes()).start()
